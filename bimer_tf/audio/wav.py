"""WAV checks and conversion on the Python side.

The model's front end decodes audio in-graph with `tf.audio.decode_wav`, which
reads only 16-bit PCM RIFF WAV. These checks run before audio reaches the
graph (CLIs, manifest validation, the web application) so that bad audio gets
a message that names the file and the remedy instead of an op error.
`load_audio` decodes any format that libsndfile reads, and everything else
(WebM, M4A, ...) with the ffmpeg binary that imageio-ffmpeg ships;
`convert_audio` and `encode_pcm16` turn the result into the accepted form.
`decode_for_model` (a file) and `waveform_for_model` (samples in memory) give
checked model input in one step, as the Python API (`bimer_tf.Recognizer`)
feeds it.

    python -m bimer_tf.audio.wav IN.(wav|flac|mp3|...) OUT.wav [--sample-rate 16000]
"""

from __future__ import annotations

import argparse
import io
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from bimer_tf.errors import InputError

CONVERT_HINT = "convert it with `python -m bimer_tf.audio.wav IN OUT.wav`"
FFMPEG_TIMEOUT_S = 120


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
    check_wav_complete(source)
    if info.subtype != "PCM_16":
        raise InputError(
            f"{name} is {info.subtype} WAV, but the model reads 16-bit PCM; {CONVERT_HINT}"
        )
    if info.samplerate != sample_rate:
        raise InputError(
            f"{name} is sampled at {info.samplerate} Hz, expected {sample_rate} Hz; "
            f"resample it with `python -m bimer_tf.audio.wav IN OUT.wav --sample-rate {sample_rate}`"
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


def check_wav_complete(source: str | Path | bytes, name: str | None = None) -> None:
    """Raises InputError when a RIFF WAV's chunks promise more bytes than it holds.

    libsndfile quietly reads what is there, but `tf.audio.decode_wav` fails on
    such a file (a header with no data, a copy or upload cut short), so it
    is caught here. Non-RIFF input is left to the other checks. `name` names
    the audio in messages (default: the path, or "the uploaded audio").
    """
    name = name or _describe(source)
    handle = open(source, "rb") if isinstance(source, (str, Path)) else io.BytesIO(source)
    with handle:
        size = handle.seek(0, io.SEEK_END)
        handle.seek(0)
        header = handle.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return
        offset = 12
        while offset + 8 <= size:
            handle.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
            available = size - offset - 8
            if chunk_size > available:
                what = "audio" if chunk_id == b"data" else f"its '{chunk_id.decode('latin-1')}' chunk"
                raise InputError(
                    f"{name} is cut short: its WAV header promises {chunk_size} bytes of {what} "
                    f"but the file holds {available}; the recording, copy or upload was "
                    "interrupted: record or copy it again (or keep the part that is there "
                    "with `python -m bimer_tf.audio.wav IN OUT.wav`)"
                )
            if chunk_id == b"data":
                return
            offset += 8 + chunk_size + (chunk_size & 1)  # chunks are padded to even sizes


def load_audio(source: str | Path | bytes, sample_rate: int = 16000, name: str | None = None) -> np.ndarray:
    """Decodes audio into mono float32 at `sample_rate`.

    libsndfile first (WAV of any subtype, FLAC, OGG, MP3, ...), then the
    ffmpeg binary of imageio-ffmpeg (WebM, M4A/MP4, ...). `source` is a path
    or the file's bytes; `name` names it in messages.
    """
    name = name or _describe(source)
    handle = source if isinstance(source, (str, Path)) else io.BytesIO(source)
    try:
        samples, rate = soundfile.read(handle, dtype="float32", always_2d=True)
        samples = samples.mean(axis=1)
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        samples, rate = _ffmpeg_decode(source, name, sample_rate), sample_rate
    if samples.size == 0:
        raise InputError(f"{name} has no samples; record or export the audio again")
    if not np.all(np.isfinite(samples)):
        raise InputError(
            f"{name} contains NaN or infinite samples; the recording is corrupt: record or export it again"
        )
    if rate != sample_rate:
        import soxr  # librosa's resampler (res_type="soxr_hq"), without librosa's import cost

        samples = soxr.resample(samples, rate, sample_rate, quality="HQ")
    return samples.astype(np.float32)


def _ffmpeg_decode(source: str | Path | bytes, name: str, sample_rate: int) -> np.ndarray:
    """Mono float32 samples at `sample_rate`, decoded and resampled (soxr) by ffmpeg.

    Bytes go through a file in a private temporary folder (mode 0700, removed
    on return): MP4/M4A may keep their index at the end, which a pipe cannot
    seek to. No part of the input ever becomes part of a path.
    """
    from imageio_ffmpeg import get_ffmpeg_exe

    def decode(path) -> np.ndarray:
        command = [
            get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error",
            "-i", str(path), "-vn", "-ac", "1", "-af", f"aresample={sample_rate}:resampler=soxr",
            "-f", "f32le", "-c:a", "pcm_f32le", "pipe:1",
        ]
        try:
            done = subprocess.run(command, capture_output=True, timeout=FFMPEG_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise InputError(f"decoding {name} took over {FFMPEG_TIMEOUT_S} s; export it as WAV") from None
        if done.returncode != 0:
            raise InputError(
                f"cannot decode {name}: not an audio format libsndfile or ffmpeg reads; "
                "check the file or export it as WAV"
            )
        return np.frombuffer(done.stdout, dtype="<f4").astype(np.float32)

    if isinstance(source, (str, Path)):
        return decode(Path(source).resolve())
    with tempfile.TemporaryDirectory(prefix="bimer_tf_audio_") as folder:
        path = Path(folder) / "input"
        path.write_bytes(source)
        return decode(path)


def _unclipped(samples: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    return samples * (0.999 / peak) if peak > 1.0 else samples


def write_pcm16(path: str | Path, samples: np.ndarray, sample_rate: int = 16000) -> Path:
    """Writes mono float samples as 16-bit PCM WAV, scaling down only if they clip."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    soundfile.write(tmp, _unclipped(samples), sample_rate, subtype="PCM_16", format="WAV")
    tmp.replace(path)
    return path


def encode_pcm16(samples: np.ndarray, sample_rate: int = 16000) -> bytes:
    """The bytes `write_pcm16` would write, in memory."""
    buffer = io.BytesIO()
    soundfile.write(buffer, _unclipped(samples), sample_rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


@dataclass(frozen=True)
class ModelAudio:
    """Audio as the serving graph takes it: `audio_wav`, 16-bit PCM WAV at the model's rate."""

    wav: bytes  # what the graph is fed
    samples: np.ndarray  # the mono float32 waveform the front end hears, at `sample_rate`
    sample_rate: int
    passthrough: bool  # `wav` is the input's own bytes (it already was 16-bit PCM WAV at the rate)

    @property
    def duration_s(self) -> float:
        return self.samples.size / self.sample_rate


def decode_for_model(
    source: str | Path | bytes,
    sample_rate: int = 16000,
    silence_floor_dbfs: float = -60.0,
    min_samples: int = 1,
    name: str | None = None,
) -> ModelAudio:
    """An audio file (a path or its bytes, any format) as checked model input.

    A RIFF WAV that already is 16-bit PCM at `sample_rate` (any channel count:
    the graph averages them) is fed as its own bytes, so it gives exactly what
    the graph gives that file. Anything else is decoded (`load_audio`:
    libsndfile, else ffmpeg), averaged to mono, resampled with soxr and
    encoded as 16-bit PCM WAV. Raises InputError, naming the audio (`name`,
    default the path) and the remedy, when it is missing, empty, cut short,
    undecodable, without samples, not finite, silent or shorter than
    `min_samples`.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        name = name or str(path)
        if not path.is_file():
            raise InputError(f"audio file not found: {path}; check the path (or the manifest's audio field)")
        data = path.read_bytes()
    else:
        data = bytes(source)
        name = name or _describe(source)
    if not data:
        raise InputError(f"{name} is empty (0 bytes); record or export the audio again")
    check_wav_complete(data, name)
    samples = _pcm16_wav_samples(data, sample_rate)
    if samples is not None:
        return check_model_waveform(samples, sample_rate, silence_floor_dbfs, min_samples, name, wav=data)
    samples = load_audio(source if isinstance(source, (str, Path)) else data, sample_rate, name)
    return check_model_waveform(samples, sample_rate, silence_floor_dbfs, min_samples, name)


def waveform_for_model(
    samples,
    rate: int,
    sample_rate: int = 16000,
    silence_floor_dbfs: float = -60.0,
    min_samples: int = 1,
    name: str = "the waveform",
) -> ModelAudio:
    """A waveform in memory (float in [-1, 1], or int16 PCM) at `rate` as checked model input.

    A 2-D array is averaged over its channel axis (the shorter one: both
    [samples, channels], as soundfile reads, and [channels, samples], as
    librosa reads, work); the result is resampled to `sample_rate` with soxr.
    """
    array = np.asarray(samples)
    if array.dtype.kind in "iu":
        scale = float(np.iinfo(array.dtype).max) + 1.0
        offset = scale / 2.0 if array.dtype.kind == "u" else 0.0
        array = (array.astype(np.float64) - offset) / (scale / 2.0 if offset else scale)
    elif array.dtype.kind != "f":
        raise InputError(f"{name} has dtype {array.dtype}; pass float samples in [-1, 1] (or int16 PCM)")
    if array.ndim == 2:
        array = array.mean(axis=0 if array.shape[0] < array.shape[1] else 1)
    elif array.ndim != 1:
        raise InputError(f"{name} has shape {array.shape}; pass a 1-D waveform (or [samples, channels])")
    array = array.astype(np.float32)
    if rate is None or int(rate) <= 0:
        raise InputError(f"{name} needs its sample rate: pass sample_rate=")
    if int(rate) != sample_rate and array.size and np.all(np.isfinite(array)):
        import soxr

        array = soxr.resample(array, int(rate), sample_rate, quality="HQ").astype(np.float32)
    return check_model_waveform(array, sample_rate, silence_floor_dbfs, min_samples, name)


def check_model_waveform(
    samples: np.ndarray,
    sample_rate: int,
    silence_floor_dbfs: float = -60.0,
    min_samples: int = 1,
    name: str = "the audio",
    wav: bytes | None = None,
) -> ModelAudio:
    """Mono samples at the model's rate -> ModelAudio (`wav` encoded unless given).

    The checks of the serving graph, made first so that the reason names the
    audio: no samples, NaN or infinite samples, silence (the peak below
    `silence_floor_dbfs`), and fewer than `min_samples` samples.
    """
    if samples.size == 0:
        raise InputError(f"{name} has no samples; record or export the audio again")
    if not np.all(np.isfinite(samples)):
        raise InputError(
            f"{name} contains NaN or infinite samples; the recording is corrupt: record or export it again"
        )
    peak = float(np.max(np.abs(samples)))
    peak_dbfs = 20.0 * np.log10(peak) if peak > 0 else -np.inf
    if peak_dbfs < silence_floor_dbfs:
        raise InputError(
            f"{name} is silent (peak {peak_dbfs:.1f} dBFS, below {silence_floor_dbfs:.0f} dBFS); "
            "check the microphone or the recording"
        )
    if samples.size < min_samples:
        raise InputError(
            f"{name} is too short ({1000 * samples.size / sample_rate:.0f} ms); the model needs at least "
            f"{1000 * min_samples / sample_rate:.0f} ms of audio"
        )
    return ModelAudio(wav if wav is not None else encode_pcm16(samples, sample_rate), samples, sample_rate, wav is not None)


def _pcm16_wav_samples(data: bytes, sample_rate: int) -> np.ndarray | None:
    """The mono samples of a RIFF WAV holding 16-bit PCM at `sample_rate`; None for anything else.

    What `tf.audio.decode_wav` reads (format tag 1, 16 bits), parsed here
    directly: at a few microseconds a file, checking a collection costs the
    model next to nothing. Other WAVs (WAVE_FORMAT_EXTENSIBLE, other widths
    or rates) return None and are converted.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    offset, fmt = 12, None
    while offset + 8 <= len(data):
        chunk_id, size = struct.unpack_from("<4sI", data, offset)
        body = offset + 8
        if chunk_id == b"fmt ":
            if size < 16 or body + 16 > len(data):
                return None
            fmt = struct.unpack_from("<HHIIHH", data, body)  # tag, channels, rate, byte rate, block align, bits
        elif chunk_id == b"data":
            if fmt is None:
                return None
            tag, channels, rate, _, block_align, bits = fmt
            if (tag, bits, rate) != (1, 16, sample_rate) or channels < 1 or block_align != 2 * channels:
                return None
            frames = (min(body + size, len(data)) - body) // block_align
            pcm = np.frombuffer(data, dtype="<i2", count=frames * channels, offset=body).reshape(frames, channels)
            mono = pcm[:, 0].astype(np.float32) if channels == 1 else pcm.mean(axis=1, dtype=np.float32)
            return mono / np.float32(32768.0)
        offset = body + size + (size & 1)
    return None


def convert_audio(src: str | Path, dst: str | Path, sample_rate: int = 16000) -> Path:
    return write_pcm16(dst, load_audio(src, sample_rate), sample_rate)


def synthetic_wav(sample_rate: int = 16000, seconds: float = 1.5) -> bytes:
    """A short windowed 180 Hz tone as PCM16 WAV bytes: a valid, non-silent model input."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    samples = 0.3 * np.sin(2 * np.pi * 180 * t) * np.hanning(t.size)
    return encode_pcm16(samples.astype(np.float32), sample_rate)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bimer_tf.audio.wav",
        description="Convert audio to the 16-bit PCM mono WAV the models read.",
    )
    parser.add_argument("src", help="input audio (WAV of any subtype, FLAC, OGG, MP3, WebM, M4A, ...)")
    parser.add_argument("dst", help="output .wav path")
    parser.add_argument("--sample-rate", type=int, default=16000)
    args = parser.parse_args(argv)
    out = convert_audio(args.src, args.dst, args.sample_rate)
    print(out)
    return 0


if __name__ == "__main__":
    from bimer_tf.cli import run_main

    raise SystemExit(run_main(main))
