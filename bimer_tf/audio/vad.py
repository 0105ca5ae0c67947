"""Voice activity detection: where a recording holds speech.

The Silero VAD model that faster-whisper ships inside its wheel
(`faster_whisper/assets/silero_vad_v6.onnx`, run by onnxruntime on one
thread) through faster-whisper's own `get_speech_timestamps` and `VadOptions`;
nothing is downloaded. `speech_regions(samples)` returns the speech as
(start_s, end_s) pairs in the recording's seconds.

The defaults differ from faster-whisper's (which keeps 2 s of silence inside
a chunk and pads each side by 0.4 s, right for feeding Whisper): here a
region is one utterance, so a pause of `min_silence_s` (0.5 s) ends it and
the padding is `speech_pad_s` (0.1 s). The speech threshold is 0.35, not
Silero's 0.5: emotional speech (laughing, shouting, sighing) scores lower
than calm speech, and at 0.5 a strong happy RAVDESS clip went unnoticed
(`benchmarks/timeline_accuracy.py`). Soft onsets (a breath before the
words) still start a region late; the timeline widens and then tightens
each edge by the model's own rule (`bimer_tf.inference.timeline`). A region
longer than `max_region_s` is split at its last pause of 0.1 s or more
before that length (Silero's rule).

Long recordings are read in blocks of `BLOCK_S` seconds (each block's
speech probabilities cost about 1.2 times its samples in memory, so a
60-minute file never needs more than a few more copies of a block, not of
the file); a region that runs across a block's end is joined again.

    python -m bimer_tf.audio.vad recording.(wav|mp3|...)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from bimer_tf.errors import InputError

SAMPLE_RATE = 16000  # the Silero model's rate
BLOCK_S = 600.0  # 10 minutes


@dataclass(frozen=True)
class VadSettings:
    """What counts as one speech region (see the module docstring)."""

    threshold: float = 0.35  # Silero's speech probability above which a 32 ms frame is speech
    min_silence_s: float = 0.5  # a pause at least this long ends a region
    speech_pad_s: float = 0.1  # added before and after each region
    min_speech_s: float = 0.25  # shorter bursts (a click, a cough) are not speech
    max_region_s: float = 30.0  # longer regions are split at a pause

    def options(self):
        from faster_whisper.vad import VadOptions

        return VadOptions(
            threshold=self.threshold,
            min_speech_duration_ms=int(round(self.min_speech_s * 1000)),
            max_speech_duration_s=self.max_region_s,
            min_silence_duration_ms=int(round(self.min_silence_s * 1000)),
            speech_pad_ms=int(round(self.speech_pad_s * 1000)),
        )


def _silero():
    try:
        from faster_whisper.vad import get_speech_timestamps
    except ImportError:
        raise InputError(
            "voice activity detection needs faster-whisper and onnxruntime: run `make install` "
            "(or `pip install faster-whisper`)"
        ) from None
    return get_speech_timestamps


def speech_regions(
    samples: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    settings: VadSettings | None = None,
    block_s: float = BLOCK_S,
) -> list[tuple[float, float]]:
    """The speech in `samples` (mono float32 at 16 kHz) as sorted (start_s, end_s) pairs."""
    if sample_rate != SAMPLE_RATE:
        raise InputError(f"the VAD model hears {SAMPLE_RATE} Hz audio, not {sample_rate} Hz; resample it first")
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise InputError(f"the VAD takes a mono waveform, not shape {samples.shape}")
    settings = settings or VadSettings()
    get_speech_timestamps = _silero()
    options = settings.options()
    block = max(int(block_s * sample_rate), int(settings.max_region_s * sample_rate) * 2)
    regions: list[list[int]] = []
    for offset in range(0, samples.size, block):
        part = samples[offset : offset + block]
        if part.dtype != np.float32:
            part = part.astype(np.float32)
        for chunk in get_speech_timestamps(part, options, sampling_rate=sample_rate):
            start, end = offset + int(chunk["start"]), offset + int(chunk["end"])
            # A region cut by the block's end starts again at the next block's first sample.
            if regions and start <= offset and regions[-1][1] >= offset:
                regions[-1][1] = end
            else:
                regions.append([start, end])
    return [(start / sample_rate, end / sample_rate) for start, end in regions]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bimer_tf.audio.vad", description="Print the speech regions of recordings.")
    parser.add_argument("audio", nargs="+", help="audio files (any format bimer_tf.audio.wav reads)")
    parser.add_argument("--min-silence-s", type=float, default=VadSettings.min_silence_s)
    parser.add_argument("--speech-pad-s", type=float, default=VadSettings.speech_pad_s)
    parser.add_argument("--threshold", type=float, default=VadSettings.threshold)
    args = parser.parse_args(argv)
    from bimer_tf.audio.wav import load_audio

    settings = VadSettings(args.threshold, args.min_silence_s, args.speech_pad_s)
    for path in args.audio:
        for start, end in speech_regions(load_audio(path, SAMPLE_RATE), settings=settings):
            print(f"{path}\t{start:.2f}\t{end:.2f}")
    return 0


if __name__ == "__main__":
    from bimer_tf.cli import run_main

    raise SystemExit(run_main(main))
