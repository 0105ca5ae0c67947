"""Emotion over time: a long recording cut into segments, each scored by an export.

    from bimer_tf import Recognizer
    recognizer = Recognizer.from_saved_model("export/bimer/1")
    timeline = recognizer.timeline("call.mp3", output="out/call")   # or emotion_timeline(recognizer, ...)
    timeline.summary()["dominant"]

The command is `python -m bimer_tf.timeline` (`command.py`). The recording
may be of any length and format (`bimer_tf.audio.wav.load_audio`: decoded
once, mono, 16 kHz); the export of any kind.

Segmentation (`segment=`):

- `asr` (the default when the model takes text): a segment per sentence
  Whisper hears (faster-whisper, `asr=`, default `whisper-tiny-offline`).
  Voice activity detection (`bimer_tf.audio.vad`, Silero) finds the speech;
  Whisper transcribes it in parts of at most 15 s with their pauses, and
  its sentences are matched to the speech regions in order
  (`transcripts.py`), so a segment's edges at pauses are the speech's and
  only cuts inside continuous speech are Whisper's. A speech region left
  without words joins the nearer segment within `merge_gap_s` (the rest of
  a sentence said with a pause inside); one farther from any is transcribed
  again on its own, and dropped if Whisper still hears no words there.
- `vad` (the default for speech-only models): a segment per speech region
  (a pause of `min_silence_s`, 0.5 s, ends one). With ASR on (`asr=` a
  model name; models that take text need it) each region gets the words of
  its sentences.
- `fixed`: windows of `window_s` (default: what the model hears,
  `max_duration_s`) every `hop_s` (default: `window_s`), silence included;
  windows the model rejects as silent are dropped; each window gets the
  sentences that start in it.

Then, in every mode:

- Edges (`asr`, `vad`): each edge at a pause is moved out by up to 0.8 s
  (never past halfway to the next segment), then in to where the model's
  own front end finds sound (frames within `trim_top_db`, 30 dB, of the
  loudest, at a 1 ms hop: `segments.tighten`). The reported times are the
  speech's, and the model hears an utterance from the same sample wherever
  the VAD put the edge in the pause.
- Short segments: one shorter than `min_segment_s` (1 s) joins the nearer
  neighbour when the pause between them is at most `merge_gap_s` (1 s),
  else it is dropped; both are reported (`summary.json`: `merged`,
  `dropped`, each with its times and the reason).
- A model that takes text needs words: a segment without any is dropped
  ("no words recognised"); `asr="none"` with such a model is an InputError.
- Long segments: a segment longer than the model's `max_duration_s` (the
  front end hears no more) is scored on the fewest windows of exactly
  `max_duration_s`, evenly spaced from its start to its end, overlapping
  by at least half a window, and its probabilities are the plain mean of
  the windows'. All windows are equally long, so the plain mean is also the
  mean weighted by duration; each window hears the segment's whole
  transcript. The output row stays one segment (`windows`: how many).
- Every window of the recording goes through the model in batches of
  `batch_size`, one SavedModel call each (`Recognizer.iter_predict`);
  windows are views of the decoded recording, never copies of it. A window
  the model cannot take (silent, say) is left out of its segment's mean;
  a segment with none left is dropped with the model's reason.

`summary()` counts each instant once (`segments.owned_seconds`): the seconds
and share of speech per emotion (a segment's seconds go to its label), the
dominant emotion (the most seconds), the duration-weighted mean
probabilities, the segments, what was merged and dropped, and the timings.
`write(output)` writes `segments.jsonl`, `segments.csv`, `summary.json` and
`timeline.png` (`outputs.py`, `chart.py`; formats in docs/data-formats.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bimer_tf.errors import InputError
from bimer_tf.inference.timeline.segments import (
    SEGMENT_MODES,
    Merge,
    Segment,
    Skipped,
    fixed_windows,
    join_wordless,
    merge_short,
    model_windows,
    owned_seconds,
    tighten,
    widen,
)
from bimer_tf.inference.timeline.transcripts import (
    asr_segments,
    lonely_wordless,
    region_transcripts,
    sentences_by_region,
    window_transcripts,
)

__all__ = [
    "SEGMENT_MODES",
    "Plan",
    "ScoredSegment",
    "Segment",
    "Segmentation",
    "Timeline",
    "emotion_timeline",
    "plan_timeline",
    "score_segments",
    "segment_recording",
]

SAMPLE_RATE = 16000  # what the VAD and Whisper hear; the recognizer resamples for a model at another rate
MIN_SEGMENT_S = 1.0
MERGE_GAP_S = 1.0
MIN_SILENCE_S = 0.5
BATCH_SIZE = 32
# Silero's speech threshold. Emotional speech scores lower than calm speech: at 0.5 (Silero's and
# faster-whisper's default) a strong happy RAVDESS clip went unnoticed and the soft onsets of others
# started up to 0.9 s late; at 0.35 every clip of 4 x 20 was found (benchmarks/timeline_accuracy.py).
VAD_THRESHOLD = 0.35
# How far `widen` looks past a segment's edge for a soft onset or ending (a breath, a sigh) that the
# model's front end would keep: with 0.4 s, 73 of 80 RAVDESS clips had both edges within 0.3 s of
# their speech; with 0.8 s, 77 (benchmarks/timeline_accuracy.py, seeds 2-5).
EDGE_REACH_S = 0.8
# Whisper hears speech in parts of at most this long (padded to its 30 s window): with 30 s parts
# holding ~8 short sentences tiny.en's times drifted by up to 3 s and 1 clip of 20 lost its words
# in 2 of 4 recordings; with 15 s, none did, for about twice the encoder time.
ASR_SPAN_S = 15.0


@dataclass(frozen=True)
class Plan:
    """The checked options of one timeline (see `plan_timeline`)."""

    segment: str
    asr: str  # a model name, or "none"
    window_s: float | None = None  # fixed mode
    hop_s: float | None = None  # fixed mode
    min_segment_s: float = MIN_SEGMENT_S
    merge_gap_s: float = MERGE_GAP_S
    min_silence_s: float = MIN_SILENCE_S
    batch_size: int = BATCH_SIZE
    vad_threshold: float = VAD_THRESHOLD

    def as_json(self) -> dict:
        out = {
            "mode": self.segment,
            "asr": self.asr,
            "min_segment_s": self.min_segment_s,
            "merge_gap_s": self.merge_gap_s,
        }
        if self.segment == "fixed":
            out.update(window_s=self.window_s, hop_s=self.hop_s)
        else:
            out.update(min_silence_s=self.min_silence_s, vad_threshold=self.vad_threshold)
        return out


def plan_timeline(
    info,
    segment: str | None = None,
    asr: str | None = None,
    window_s: float | None = None,
    hop_s: float | None = None,
    min_segment_s: float = MIN_SEGMENT_S,
    merge_gap_s: float = MERGE_GAP_S,
    min_silence_s: float = MIN_SILENCE_S,
    batch_size: int = BATCH_SIZE,
    vad_threshold: float = VAD_THRESHOLD,
) -> Plan:
    """Checks timeline options against an export (`ExportInfo`); InputError names the fix.

    `segment` None: `asr` when the model takes text, else `vad`. `asr` None:
    `whisper-tiny-offline` when the model takes text or `segment` is `asr`,
    else `none` (transcripts are then null).
    """
    from bimer_tf.audio.asr import DEFAULT_ASR, NO_ASR

    if segment is None:
        segment = "asr" if info.takes_text else "vad"
    if segment not in SEGMENT_MODES:
        raise InputError(f"--segment must be one of {', '.join(SEGMENT_MODES)}, not {segment!r}")
    if asr is None:
        asr = DEFAULT_ASR if (info.takes_text or segment == "asr") else NO_ASR
    if asr == NO_ASR and info.takes_text:
        raise InputError(
            f"the model {info.path} takes text ({' and '.join(info.inputs)}), and --asr none leaves no "
            f"transcript: drop --asr none (Whisper, {DEFAULT_ASR}, transcribes each segment) or pass "
            "--asr whisper-base-offline"
        )
    if asr == NO_ASR and segment == "asr":
        raise InputError(
            "--segment asr cuts at the sentences Whisper hears and needs --asr; with --asr none use --segment vad or fixed"
        )
    if segment == "fixed":
        window_s = float(window_s) if window_s is not None else float(info.max_duration_s)
        hop_s = float(hop_s) if hop_s is not None else window_s
        if window_s <= 0 or hop_s <= 0:
            raise InputError(f"--window-s and --hop-s must be positive (got {window_s:g} and {hop_s:g})")
        if hop_s > window_s:
            raise InputError(f"--hop-s {hop_s:g} is longer than --window-s {window_s:g}: the windows would leave gaps")
    elif window_s is not None or hop_s is not None:
        raise InputError("--window-s and --hop-s are options of --segment fixed")
    if min_segment_s < 0 or merge_gap_s < 0:
        raise InputError("--min-segment-s and --merge-gap-s cannot be negative")
    if min_silence_s <= 0:
        raise InputError("--min-silence-s must be positive")
    if int(batch_size) < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    if not 0 < vad_threshold < 1:
        raise InputError(f"--vad-threshold is a speech probability between 0 and 1, not {vad_threshold:g}")
    return Plan(
        segment, asr, window_s, hop_s, float(min_segment_s), float(merge_gap_s), float(min_silence_s), int(batch_size),
        float(vad_threshold),
    )


@dataclass
class Segmentation:
    """A recording cut into segments, before any model runs."""

    segments: list[Segment]
    dropped: list[Skipped] = field(default_factory=list)
    merged: list[Merge] = field(default_factory=list)
    timings: dict = field(default_factory=dict)  # seconds: vad, asr


def segment_recording(samples: np.ndarray, info, plan: Plan) -> Segmentation:
    """Cuts 16 kHz mono `samples` into segments by `plan` (module docstring). Needs no TensorFlow."""
    from bimer_tf.audio.asr import NO_ASR, load_recognizer, speech_spans
    from bimer_tf.audio.vad import VadSettings, speech_regions

    timings = {}
    duration = samples.size / SAMPLE_RATE
    regions = None
    if plan.segment in ("asr", "vad") or plan.asr != NO_ASR:
        started = time.perf_counter()
        regions = speech_regions(
            samples, SAMPLE_RATE, VadSettings(threshold=plan.vad_threshold, min_silence_s=plan.min_silence_s)
        )
        timings["vad"] = time.perf_counter() - started
    pieces = spans = by_region = None
    if plan.asr != NO_ASR:
        started = time.perf_counter()
        whisper = load_recognizer(plan.asr)
        spans = speech_spans(regions, ASR_SPAN_S)
        pieces = whisper.segments(samples, spans) if spans else []
        if plan.segment != "fixed":
            by_region = sentences_by_region(pieces, regions, spans)
            # A region left without words, too far from any worded one to be the rest of its
            # sentence, is heard again on its own (Whisper now and then drops the end of a part).
            empty = lonely_wordless(regions, by_region, plan.merge_gap_s)
            if empty:
                again = sentences_by_region(whisper.segments(samples, empty), empty, empty)
                lookup = dict(zip(empty, again))
                by_region = [sentences or lookup.get(region, []) for region, sentences in zip(regions, by_region)]
        timings["asr"] = time.perf_counter() - started
    dropped: list[Skipped] = []
    merged: list[Merge] = []
    if plan.segment == "fixed":
        segments = fixed_windows(duration, plan.window_s, plan.hop_s)
        if pieces is not None:
            segments = window_transcripts(segments, pieces)
    elif pieces is None:
        segments = [Segment(start, end) for start, end in regions]
    else:
        if plan.segment == "vad":
            segments = region_transcripts(regions, by_region)
        else:
            segments, wordless = asr_segments(regions, by_region)
            segments, merged, dropped = join_wordless(segments, wordless, plan.merge_gap_s)
    if plan.segment != "fixed":
        audio = info.audio
        segments = widen(segments, EDGE_REACH_S, duration)
        segments = [
            tighten(samples, s, SAMPLE_RATE, float(audio["trim_top_db"]), int(audio["trim_frame_length"]), info.max_duration_s)
            for s in segments
        ]
    segments, short_merged, short = merge_short(segments, plan.min_segment_s, plan.merge_gap_s)
    merged += short_merged
    dropped += short
    if info.takes_text:
        wordless = [s for s in segments if not (s.transcript or "").strip()]
        dropped += [Skipped(s.start_s, s.end_s, "no words recognised, and the model takes text") for s in wordless]
        segments = [s for s in segments if (s.transcript or "").strip()]
    return Segmentation(segments, sorted(dropped, key=lambda d: d.start_s), merged, timings)


@dataclass(frozen=True)
class ScoredSegment:
    """A segment and the model's answer for it."""

    segment: Segment
    label: str
    probabilities: np.ndarray  # [C], in the model's label order
    windows: int  # model windows averaged (1 unless the segment is longer than the model hears)


def score_segments(
    recognizer, samples: np.ndarray, segments: list[Segment], batch_size: int = BATCH_SIZE, sample_rate: int = SAMPLE_RATE
) -> tuple[list[ScoredSegment], list[Skipped]]:
    """Runs every segment's windows through the model in batches (one SavedModel call each).

    Returns the scored segments and those the model could not take (every
    window rejected, e.g. silent), with the reason.
    """
    info = recognizer.info
    plans = []
    for segment in segments:
        if info.takes_audio:
            plans.append(model_windows(segment.start_s, segment.end_s, info.max_duration_s))
        else:
            plans.append([(segment.start_s, segment.end_s)])

    def items():
        for segment, windows in zip(segments, plans):
            text = segment.transcript if info.takes_text else None
            for start, end in windows:
                item = {"text": text}
                if info.takes_audio:
                    first = max(0, int(round(start * sample_rate)))
                    item.update(audio=samples[first : int(round(end * sample_rate))], sample_rate=sample_rate)
                yield item

    results = recognizer.iter_predict(items(), batch_size)
    labels = list(recognizer.labels)
    scored, dropped = [], []
    for segment, windows in zip(segments, plans):
        rows, errors = [], []
        for _ in windows:
            result = next(results)
            if result.error is not None:
                errors.append(result.error)
            else:
                rows.append([result.prediction.probabilities[label] for label in labels])
        if not rows:
            dropped.append(Skipped(segment.start_s, segment.end_s, f"the model cannot take it: {errors[0]}"))
            continue
        probabilities = np.mean(np.asarray(rows, dtype=np.float64), axis=0)
        scored.append(ScoredSegment(segment, labels[int(np.argmax(probabilities))], probabilities, len(windows)))
    return scored, dropped


@dataclass
class Timeline:
    """A recording's scored segments, what was left out, and how long each step took."""

    source: str
    model: str
    labels: tuple[str, ...]
    duration_s: float
    plan: Plan
    segments: list[ScoredSegment]
    dropped: list[Skipped] = field(default_factory=list)
    merged: list[Merge] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)  # what `write` wrote: name -> path
    started_at: float | None = None  # time.perf_counter() when the work began: gives timings' `total`

    def summary(self) -> dict:
        owned = owned_seconds([s.segment for s in self.segments])
        seconds = {label: 0.0 for label in self.labels}
        for scored, own in zip(self.segments, owned):
            seconds[scored.label] += own
        total = sum(owned)
        mean = np.zeros(len(self.labels))
        if total > 0:
            mean = sum(own * s.probabilities for s, own in zip(self.segments, owned)) / total
        dominant = max(self.labels, key=lambda label: seconds[label]) if total > 0 else None
        return {
            "audio": self.source,
            "model": self.model,
            "duration_s": round(self.duration_s, 3),
            "segmentation": self.plan.as_json(),
            "segment_count": len(self.segments),
            "speech_s": round(total, 3),
            "dominant": dominant,
            "emotions": {
                label: {"seconds": round(seconds[label], 3), "share": round(seconds[label] / total, 4) if total else 0.0}
                for label in self.labels
            },
            "mean_probabilities": {label: round(float(p), 6) for label, p in zip(self.labels, mean)},
            "merged": [m.as_json() for m in self.merged],
            "dropped": [d.as_json() for d in self.dropped],
            "timings_s": {name: round(value, 3) for name, value in self.timings.items()},
            "files": dict(self.files),
        }

    def write(self, output: str | Path, chart: bool = True) -> dict:
        """Writes the output files into `output` (created); returns name -> path."""
        from bimer_tf.inference.timeline.outputs import write_outputs

        return write_outputs(self, Path(output), chart=chart)


def emotion_timeline(
    recognizer,
    audio,
    *,
    output: str | Path | None = None,
    sample_rate: int | None = None,
    chart: bool = True,
    **options,
) -> Timeline:
    """The emotions of a long recording over time (module docstring).

    `recognizer`: a loaded `Recognizer`. `audio`: a path or a file's bytes
    (any format), or a waveform with `sample_rate`. `options`: those of
    `plan_timeline` (`segment`, `asr`, `window_s`, `hop_s`, `min_segment_s`,
    `merge_gap_s`, `min_silence_s`, `batch_size`). With `output`, the files
    are written there (`Timeline.write`).
    """
    plan = plan_timeline(recognizer.info, **options)
    started = time.perf_counter()
    samples, source = decode_recording(audio, sample_rate)
    timings = {"decode": time.perf_counter() - started}
    return build_timeline(recognizer, samples, source, plan, timings, output=output, chart=chart, started_at=started)


def decode_recording(audio, sample_rate: int | None = None) -> tuple[np.ndarray, str]:
    """(16 kHz mono float32 samples, a name for the source) of a path, file bytes or waveform."""
    from bimer_tf.audio.wav import load_audio

    if isinstance(audio, (str, Path)):
        if not Path(audio).is_file():
            raise InputError(f"audio file not found: {audio}")
        return load_audio(audio, SAMPLE_RATE), str(audio)
    if isinstance(audio, (bytes, bytearray, memoryview)):
        return load_audio(bytes(audio), SAMPLE_RATE), "the audio bytes"
    if isinstance(audio, np.ndarray):
        if sample_rate is None:
            raise InputError("a waveform needs its sample rate: pass sample_rate=")
        samples = np.asarray(audio, dtype=np.float32)
        if samples.ndim == 2:
            samples = samples.mean(axis=0 if samples.shape[0] < samples.shape[1] else 1)
        if int(sample_rate) != SAMPLE_RATE:
            import soxr

            samples = soxr.resample(samples, int(sample_rate), SAMPLE_RATE, quality="HQ").astype(np.float32)
        return samples, "the waveform"
    raise InputError(f"audio must be a file path, the file's bytes or a waveform, not {type(audio).__name__}")


def build_timeline(
    recognizer, samples, source: str, plan: Plan, timings: dict, *, output=None, chart=True, cut=None, started_at=None
) -> Timeline:
    """Segments (unless `cut` is given) and scores decoded samples; writes the files when `output` is given."""
    info = recognizer.info
    if samples.size == 0:
        raise InputError(f"{source} has no samples; record or export the audio again")
    if cut is None:
        cut = segment_recording(samples, info, plan)
    timings.update(cut.timings)
    started = time.perf_counter()
    scored, rejected = score_segments(recognizer, samples, cut.segments, plan.batch_size)
    timings["model"] = time.perf_counter() - started
    timeline = Timeline(
        source,
        info.path,
        tuple(recognizer.labels),
        samples.size / SAMPLE_RATE,
        plan,
        scored,
        sorted(cut.dropped + rejected, key=lambda d: d.start_s),
        cut.merged,
        timings,
        started_at=started_at,
    )
    if output is not None:
        timeline.write(output, chart=chart)
    return timeline
