"""Whisper's words on the timeline: which words belong to which segment.

Whisper (tiny.en most of all) starts a sentence within about half a second
of where it is said, but stretches a sentence's last words over the pause
after it, and over a 30 s part holding many short sentences its times can
drift by seconds. So the words are placed by sentences and by order, not by
their end times:

1. Whisper's segments are split into sentences (after `.`, `!`, `?`), each
   timed by its first word's start (`split_sentences`); a sentence whose
   words Whisper squeezed into less than 0.1 s a word has no time.
2. In each part Whisper heard (`bimer_tf.audio.asr.speech_spans`), the
   sentences are matched to the voice activity regions in order, by dynamic
   programming: a sentence costs the seconds its start lies outside its
   region (an untimed one nothing), and each region left without a sentence costs
   `EMPTY_REGION_COST` seconds (`align`). One sentence per utterance thus
   lands on its utterance even where the times drift; two sentences said
   without a pause share a region.
3. `asr_segments` makes a segment of each sentence: a region's first one
   starts where the region starts, its last ends where the region ends, and
   inside a region a sentence starts where its first word does.
   `region_transcripts` (`vad` mode) gives each region its sentences' words,
   `window_transcripts` (`fixed` mode) each window the sentences that start
   in it.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, replace

from bimer_tf.inference.timeline.segments import Segment

SENTENCE_END = (".", "!", "?", "\u2026", "\u3002", "\uff01", "\uff1f")
# A region left without words costs as much as a sentence start misplaced by this many seconds.
EMPTY_REGION_COST = 2.0


# Words said faster than this (seconds a word) are a failed alignment, not speech.
MIN_WORD_S = 0.1


@dataclass(frozen=True)
class Sentence:
    start_s: float  # its first word's start
    end_s: float
    text: str
    timed: bool = True  # False: Whisper squeezed its words into no time, so its start says nothing


def _sentence(words) -> Sentence:
    start, end = words[0].start_s, words[-1].end_s
    return Sentence(start, end, " ".join(w.text for w in words), end - start >= MIN_WORD_S * len(words))


def split_sentences(pieces) -> list[Sentence]:
    """Whisper's segments (`TimedText`) cut after each sentence end, in time order.

    With word times a sentence starts at its first word; without them a
    segment's time is shared among its sentences by their length in characters.
    """
    sentences: list[Sentence] = []
    for piece in pieces:
        if piece.words:
            words: list = []
            for word in piece.words:
                words.append(word)
                if word.text.endswith(SENTENCE_END):
                    sentences.append(_sentence(words))
                    words = []
            if words:
                sentences.append(_sentence(words))
            continue
        parts = [p for p in re.split(r"(?<=[.!?\u2026\u3002\uff01\uff1f])\s+", piece.text.strip()) if p]
        total = sum(len(p) for p in parts) or 1
        cursor, length = piece.start_s, piece.end_s - piece.start_s
        for part in parts:
            share = length * len(part) / total
            sentences.append(Sentence(cursor, cursor + share, part))
            cursor += share
    return sorted(sentences, key=lambda s: s.start_s)


def align(starts: list[float | None], regions: list[tuple[float, float]], empty_cost: float = EMPTY_REGION_COST) -> list[int]:
    """The region of each sentence start: in order (never going back), the least total cost.

    Cost: for each sentence, the seconds its start lies outside its region
    (none for a start of None: an untimed sentence goes where it fills a
    gap); for each region no sentence goes to, `empty_cost`.
    O(sentences x regions).
    """
    n, m = len(starts), len(regions)
    if n == 0 or m == 0:
        return [0] * n if m else []

    def cost(i: int, j: int) -> float:
        if starts[i] is None:
            return 0.0
        return max(regions[j][0] - starts[i], starts[i] - regions[j][1], 0.0)

    previous = [cost(0, j) + empty_cost * j for j in range(m)]  # regions before j left empty
    pointers: list[list[int]] = []
    for i in range(1, n):
        current, pointer = [], []
        best, best_k = float("inf"), -1  # min over k < j of previous[k] - empty_cost * k
        for j in range(m):
            stay = previous[j]
            move = best + empty_cost * (j - 1) if best_k >= 0 else float("inf")
            if stay <= move:
                current.append(stay + cost(i, j))
                pointer.append(j)
            else:
                current.append(move + cost(i, j))
                pointer.append(best_k)
            if previous[j] - empty_cost * j < best:
                best, best_k = previous[j] - empty_cost * j, j
        pointers.append(pointer)
        previous = current
    j = min(range(m), key=lambda k: previous[k] + empty_cost * (m - 1 - k))
    path = [j]
    for pointer in reversed(pointers):
        j = pointer[j]
        path.append(j)
    return path[::-1]


def sentences_by_region(pieces, regions, spans) -> list[list[Sentence]]:
    """The sentences of each region (`regions` sorted), aligned part by part (`spans`: Whisper's parts)."""
    sentences = split_sentences(pieces)
    by_region: list[list[Sentence]] = [[] for _ in regions]
    if not regions:
        return by_region
    spans = sorted(spans)
    span_starts = [a for a, _ in spans]
    region_starts = [a for a, _ in regions]
    groups: dict[int, list[Sentence]] = {}
    for sentence in sentences:
        groups.setdefault(max(0, bisect.bisect_right(span_starts, sentence.start_s) - 1), []).append(sentence)
    for k, group in groups.items():
        low, high = spans[k]
        first = bisect.bisect_left(region_starts, low - 1e-6)
        last = bisect.bisect_right(region_starts, high - 1e-6)
        inside = list(range(first, max(first + 1, last)))
        inside = [i for i in inside if i < len(regions)] or [len(regions) - 1]
        path = align([s.start_s if s.timed else None for s in group], [regions[i] for i in inside])
        for sentence, j in zip(group, path):
            by_region[inside[j]].append(sentence)
    return by_region


def lonely_wordless(regions, by_region, max_gap_s: float) -> list[tuple[float, float]]:
    """The regions without sentences that lie more than `max_gap_s` from every region with some."""
    lonely = []
    previous_end = float("-inf")
    next_start = [float("inf")] * len(regions)
    upcoming = float("inf")
    for i in range(len(regions) - 1, -1, -1):
        next_start[i] = upcoming
        if by_region[i]:
            upcoming = regions[i][0]
    for i, (start, end) in enumerate(regions):
        if by_region[i]:
            previous_end = end
        elif start - previous_end > max_gap_s and next_start[i] - end > max_gap_s:
            lonely.append((start, end))
    return lonely


def asr_segments(regions, by_region) -> tuple[list[Segment], list[tuple[float, float]]]:
    """A segment per sentence on its region (module docstring, 3.); also the regions without words."""
    segments: list[Segment] = []
    wordless = []
    for (start, end), sentences in zip(regions, by_region):
        if not sentences:
            wordless.append((start, end))
            continue
        sentences = sorted(sentences, key=lambda s: s.start_s)
        cuts = [start]
        for sentence in sentences[1:]:
            cuts.append(min(max(sentence.start_s, cuts[-1]), end))
        cuts.append(end)
        texts: list[list[str]] = []
        spans: list[tuple[float, float]] = []
        carry: list[str] = []  # a sentence left with no time gives its words to the next (or the last)
        for k, sentence in enumerate(sentences):
            if cuts[k + 1] - cuts[k] <= 0:
                carry.append(sentence.text)
                continue
            spans.append((cuts[k], cuts[k + 1]))
            texts.append(carry + [sentence.text])
            carry = []
        if carry and texts:
            texts[-1] += carry
        segments += [Segment(a, b, " ".join(t)) for (a, b), t in zip(spans, texts)]
    return segments, wordless


def region_transcripts(regions, by_region) -> list[Segment]:
    """A segment per region holding its sentences' words ("" without any)."""
    return [Segment(a, b, " ".join(s.text for s in sentences)) for (a, b), sentences in zip(regions, by_region)]


def window_transcripts(windows: list[Segment], pieces) -> list[Segment]:
    """Each window with the words of the sentences that start in it (a sentence in a pause: the nearest window)."""
    if not windows:
        return []
    texts: list[list[str]] = [[] for _ in windows]
    for sentence in split_sentences(pieces):
        t = sentence.start_s
        holding = [i for i, w in enumerate(windows) if w.start_s <= t < w.end_s]
        if not holding:
            holding = [min(range(len(windows)), key=lambda i: max(windows[i].start_s - t, t - windows[i].end_s))]
        for i in holding:
            texts[i].append(sentence.text)
    return [replace(w, transcript=" ".join(t)) for w, t in zip(windows, texts)]
