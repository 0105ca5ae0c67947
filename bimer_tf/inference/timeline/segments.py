"""Cutting a recording into the segments the timeline scores.

Pure arithmetic on (start_s, end_s) spans: no model, no TensorFlow. The
rules are the ones `bimer_tf.inference.timeline` documents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

SEGMENT_MODES = ("asr", "vad", "fixed")


@dataclass(frozen=True)
class Segment:
    """A stretch of the recording the model judges as one utterance."""

    start_s: float
    end_s: float
    transcript: str | None = None

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def joined(self, other: Segment) -> Segment:
        """This segment and `other` as one (transcripts joined in time order)."""
        first, second = (self, other) if self.start_s <= other.start_s else (other, self)
        texts = [t for t in (first.transcript, second.transcript) if t]
        transcript = " ".join(texts) if texts else (first.transcript if first.transcript is not None else second.transcript)
        return Segment(min(self.start_s, other.start_s), max(self.end_s, other.end_s), transcript)


@dataclass(frozen=True)
class Skipped:
    """A stretch left out of the timeline, and why."""

    start_s: float
    end_s: float
    reason: str

    def as_json(self) -> dict:
        return {"start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3), "reason": self.reason}


@dataclass(frozen=True)
class Merge:
    """A short segment that became part of a neighbour."""

    start_s: float
    end_s: float
    into: Segment  # the segment it became part of (as first merged; later merges may widen it)
    reason: str = "shorter than the minimum"

    def as_json(self) -> dict:
        return {
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "merged_with": [round(self.into.start_s, 3), round(self.into.end_s, 3)],
            "reason": self.reason,
        }


def fixed_windows(duration_s: float, window_s: float, hop_s: float) -> list[Segment]:
    """Windows of `window_s` every `hop_s` from 0; the last one ends with the recording."""
    if window_s <= 0 or hop_s <= 0:
        raise ValueError("window and hop must be positive")
    windows, start = [], 0.0
    while start < duration_s:
        windows.append(Segment(round(start, 6), round(min(start + window_s, duration_s), 6)))
        if start + window_s >= duration_s:
            break
        start += hop_s
    return windows


def join_wordless(
    segments: list[Segment], wordless, max_gap_s: float
) -> tuple[list[Segment], list[Merge], list[Skipped]]:
    """Joins each speech region Whisper gave no words of its own to the nearer segment within `max_gap_s`.

    Whisper often gives the words of a sentence said with a pause inside to
    the part before the pause; the part after it then joins that sentence.
    A region with no segment that near is dropped, with the reason.
    """
    segments = sorted(segments, key=lambda s: s.start_s)
    merges: list[Merge] = []
    dropped: list[Skipped] = []
    for start, end in sorted(wordless):
        gaps = [(max(start - s.end_s, s.start_s - end, 0.0), i) for i, s in enumerate(segments)]
        gap, nearest = min(gaps, default=(math.inf, -1))
        if gap > max_gap_s:
            dropped.append(Skipped(start, end, "speech in which Whisper recognised no words"))
            continue
        segments[nearest] = segments[nearest].joined(Segment(start, end))
        merges.append(Merge(start, end, segments[nearest], "no words of its own"))
    return segments, merges, dropped


def merge_short(segments: list[Segment], min_s: float, max_gap_s: float) -> tuple[list[Segment], list[Merge], list[Skipped]]:
    """Joins each segment shorter than `min_s` to its nearer neighbour, or drops it.

    Segments are taken in time order. A short one joins the neighbour (the
    kept segment before it or the next one) with the smaller pause between
    them, when that pause is at most `max_gap_s`; the joined segment is
    judged again (joined into the next, it may still be short). A short
    segment with no neighbour that near is dropped, with the reason.
    """
    kept: list[Segment] = []
    merges: list[Merge] = []
    dropped: list[Skipped] = []
    pending = sorted(segments, key=lambda s: (s.start_s, s.end_s))
    i = 0
    while i < len(pending):
        segment = pending[i]
        if segment.duration_s >= min_s:
            kept.append(segment)
            i += 1
            continue
        before = kept[-1] if kept else None
        after = pending[i + 1] if i + 1 < len(pending) else None
        gap_before = segment.start_s - before.end_s if before else math.inf
        gap_after = after.start_s - segment.end_s if after else math.inf
        if min(gap_before, gap_after) > max_gap_s:
            dropped.append(
                Skipped(
                    segment.start_s,
                    segment.end_s,
                    f"{segment.duration_s:.2f} s long, shorter than the minimum {min_s:g} s, "
                    f"and no segment within {max_gap_s:g} s to join",
                )
            )
        elif gap_before <= gap_after:
            kept[-1] = before.joined(segment)
            merges.append(Merge(segment.start_s, segment.end_s, kept[-1]))
        else:
            pending[i + 1] = segment.joined(after)
            merges.append(Merge(segment.start_s, segment.end_s, pending[i + 1]))
        i += 1
    return kept, merges, dropped


def model_windows(start_s: float, end_s: float, max_s: float, max_hop_fraction: float = 0.5) -> list[tuple[float, float]]:
    """The windows a segment is scored on: itself, or overlapping windows of `max_s` covering it.

    A segment longer than `max_s` (what the model hears) gets the fewest
    windows of exactly `max_s`, evenly spaced from its start to its end, whose
    hop is at most `max_hop_fraction * max_s` (so neighbours overlap by at
    least half a window).
    """
    length = end_s - start_s
    if length <= max_s:
        return [(start_s, end_s)]
    count = math.ceil((length - max_s) / (max_s * max_hop_fraction)) + 1
    hop = (length - max_s) / (count - 1)
    return [(start_s + k * hop, start_s + k * hop + max_s) for k in range(count)]


def owned_seconds(segments) -> list[float]:
    """Each segment's own share of time: to its end, or to the next segment's start if that is sooner.

    The same as each segment's duration when segments do not overlap; with
    overlapping fixed windows every instant is counted once.
    """
    ordered = sorted(range(len(segments)), key=lambda i: segments[i].start_s)
    owned = [0.0] * len(segments)
    for rank, i in enumerate(ordered):
        end = segments[i].end_s
        if rank + 1 < len(ordered):
            end = min(end, segments[ordered[rank + 1]].start_s)
        owned[i] = max(0.0, end - segments[i].start_s)
    return owned


def widen(segments: list[Segment], reach_s: float, duration_s: float) -> list[Segment]:
    """Each edge moved out by up to `reach_s`, never past halfway to the neighbouring segment.

    Voice activity detection starts a little late on soft onsets (a breath,
    a quiet consonant); `tighten` then finds where the sound really starts.
    Edges shared with a neighbour (a cut inside continuous speech) stay.
    """
    ordered = sorted(segments, key=lambda s: (s.start_s, s.end_s))
    wide = []
    for i, segment in enumerate(ordered):
        low = 0.0 if i == 0 else max(ordered[i - 1].end_s, (ordered[i - 1].end_s + segment.start_s) / 2)
        high = duration_s if i + 1 == len(ordered) else min(ordered[i + 1].start_s, (segment.end_s + ordered[i + 1].start_s) / 2)
        start = max(min(segment.start_s, max(low, segment.start_s - reach_s)), 0.0)
        end = min(max(segment.end_s, min(high, segment.end_s + reach_s)), duration_s)
        wide.append(replace(segment, start_s=start, end_s=end))
    return wide


def tighten(
    samples: np.ndarray,
    segment: Segment,
    sample_rate: int,
    top_db: float,
    frame: int,
    reach_s: float,
    hop: int = 16,
) -> Segment:
    """`segment` with its edges moved in to where its speech starts and ends, by the model's own rule.

    The serving front end trims frames quieter than `top_db` below the
    loudest (frames of `frame` samples, hop 256); here the same rule runs at
    a hop of `hop` samples (1 ms at 16 kHz), the loudest frame taken within
    `reach_s` (what the model hears) of each edge. The model then hears the
    utterance from the same sample wherever in the pause the segment began,
    and the reported times are the speech's.
    """
    first = max(0, int(round(segment.start_s * sample_rate)))
    last = min(samples.size, int(round(segment.end_s * sample_rate)))
    if last - first <= frame:
        return segment
    energy = np.concatenate([[0.0], np.cumsum(np.square(samples[first:last], dtype=np.float64))])
    starts = np.arange(0, last - first - frame + 1, hop)
    db = 10.0 * np.log10(np.maximum((energy[starts + frame] - energy[starts]) / frame, 1e-20))
    count = starts.size
    reach = min(count, max(1, int(reach_s * sample_rate) // hop))
    head, tail = db[:reach], db[count - reach :]
    first_loud = int(np.nonzero(head >= head.max() - top_db)[0][0])
    last_loud = count - reach + int(np.nonzero(tail >= tail.max() - top_db)[0][-1])
    new_first = first + int(starts[first_loud])
    new_last = first + min(last - first, int(starts[last_loud]) + frame)
    if new_last - new_first < frame:
        return segment
    return replace(segment, start_s=new_first / sample_rate, end_s=new_last / sample_rate)
