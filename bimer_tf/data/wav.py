"""WAV checks and conversion on the Python side.

The model's front end decodes audio in-graph with `tf.audio.decode_wav`, which
reads only 16-bit PCM RIFF WAV. These checks run before audio reaches the
graph (CLIs, manifest validation) so that bad audio gets a message that names
the file and the remedy instead of an op error. `convert_audio` turns any
format that libsndfile or librosa reads into the accepted form.

    python -m bimer_tf.data.wav IN.(wav|flac|mp3|...) OUT.wav [--sample-rate 16000]
"""

from __future__ import annotations

import argparse
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from bimer_tf.errors import InputError

CONVERT_HINT = "convert it with `python -m bimer_tf.data.wav IN OUT.wav`"


@dataclass
class WavInfo:
    sample_rate: int
    channels: int
    frames: int
    peak_dbfs: float

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def _describe(source) -> str:
    return str(source) if isinstance(source, (str, Path)) else "the uploaded audio"


def check_wav(
    source: str | Path | bytes,
    sample_rate: int = 16000,
    silence_floor_dbfs: float = -60.0,
) -> WavInfo:
    """Raises InputError unless `source` is a non-silent 16-bit PCM WAV at `sample_rate`.

    Stereo (any channel count) is accepted: the front end averages channels.
    """
    name = _describe(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"audio file not found: {path}; check the path (or the manifest's audio field)")
        if path.stat().st_size == 0:
            raise InputError(f"{name} is empty (0 bytes); record or export the audio again")
        handle = path
    else:
        if len(source) == 0:
            raise InputError(f"{name} is empty (0 bytes); record or upload the audio again")
        handle = io.BytesIO(source)
    try:
        info = soundfile.info(handle)
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        raise InputError(f"{name} is not a readable audio file; {CONVERT_HINT}") from None
    if info.format != "WAV":
        raise InputError(f"{name} is {info.format}, not WAV; {CONVERT_HINT}")
    if info.subtype != "PCM_16":
        raise InputError(
            f"{name} is {info.subtype} WAV, but the model reads 16-bit PCM; {CONVERT_HINT}"
        )
    if info.samplerate != sample_rate:
        raise InputError(
            f"{name} is sampled at {info.samplerate} Hz, expected {sample_rate} Hz; "
            f"resample it with `python -m bimer_tf.data.wav IN OUT.wav --sample-rate {sample_rate}`"
        )
    if info.frames == 0:
        raise InputError(f"{name} has no samples (zero-length WAV); record the audio again")
    if isinstance(handle, io.BytesIO):
        handle.seek(0)
    samples, _ = soundfile.read(handle, dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)  # what the front end hears
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    peak_dbfs = 20.0 * np.log10(peak) if peak > 0 else -np.inf
    if peak_dbfs < silence_floor_dbfs:
        raise InputError(
            f"{name} is silent (peak {peak_dbfs:.1f} dBFS, below {silence_floor_dbfs:.0f} dBFS); "
            "check the microphone or the recording"
        )
    return WavInfo(info.samplerate, info.channels, info.frames, peak_dbfs)


def load_audio(source: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Decodes any format libsndfile/librosa read into mono float32 at `sample_rate`."""
    name = _describe(source)
    try:
        samples, rate = soundfile.read(source, dtype="float32", always_2d=True)
        samples = samples.mean(axis=1)
    except (soundfile.LibsndfileError, RuntimeError):
        import librosa

        try:  # mp3/mp4 and friends through audioread/ffmpeg
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # backend fallbacks warn before failing
                samples, rate = librosa.load(source, sr=None, mono=True)
        except Exception:  # librosa raises many backend-specific types
            raise InputError(
                f"cannot decode {name}: not an audio format libsndfile or ffmpeg reads; "
                "check the file or export it as WAV"
            ) from None
    if samples.size == 0:
        raise InputError(f"{name} has no samples")
    if not np.all(np.isfinite(samples)):
        raise InputError(f"{name} contains NaN or infinite samples; the recording is corrupt")
    if rate != sample_rate:
        import soxr  # librosa's resampler (res_type="soxr_hq"), without librosa's import cost

        samples = soxr.resample(samples, rate, sample_rate, quality="HQ")
    return samples.astype(np.float32)


def write_pcm16(path: str | Path, samples: np.ndarray, sample_rate: int = 16000) -> Path:
    """Writes mono float samples as 16-bit PCM WAV, scaling down only if they clip."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if peak > 1.0:
        samples = samples * (0.999 / peak)
    tmp = path.with_name(path.name + ".part")
    soundfile.write(tmp, samples, sample_rate, subtype="PCM_16", format="WAV")
    tmp.replace(path)
    return path


def convert_audio(src: str | Path, dst: str | Path, sample_rate: int = 16000) -> Path:
    return write_pcm16(dst, load_audio(src, sample_rate), sample_rate)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bimer_tf.data.wav",
        description="Convert audio to the 16-bit PCM mono WAV the models read.",
    )
    parser.add_argument("src", help="input audio (WAV of any subtype, FLAC, OGG, MP3, ...)")
    parser.add_argument("dst", help="output .wav path")
    parser.add_argument("--sample-rate", type=int, default=16000)
    args = parser.parse_args(argv)
    out = convert_audio(args.src, args.dst, args.sample_rate)
    print(out)
    return 0


if __name__ == "__main__":
    from bimer_tf.cli import run_main

    raise SystemExit(run_main(main))
