"""Speech recognition accuracy and speed on real recorded speech (RAVDESS).

48 clips from ../shared/corpora/ravdess4 (skipped when absent): for each of
the 24 actors one clip of each sentence ("Kids are talking by the door",
"Dogs are sitting by the door"), emotions rotating over the 4 classes. A
sentence counts when it is word-for-word right after lower-casing and
removing punctuation.
"""

from __future__ import annotations

import csv
import json
import re
import time

import pytest

pytestmark = pytest.mark.corpora

SENTENCES = ("Kids are talking by the door", "Dogs are sitting by the door")
EMOTIONS = ("neutral", "happy", "sad", "angry")


def select_clips(corpora_root) -> list[tuple[str, str]]:
    """48 (path, sentence) pairs: per actor, each sentence once, emotions rotating."""
    root = corpora_root / "ravdess4"
    with open(root / "metadata.csv", newline="", encoding="utf-8") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: row["path"])
    chosen = []
    for actor in range(1, 25):
        for k, sentence in enumerate(SENTENCES):
            emotion = EMOTIONS[(actor + k) % len(EMOTIONS)]
            candidates = [
                r
                for r in rows
                if int(r["actor"]) == actor and r["statement_text"] == sentence and r["emotion"] == emotion
            ]
            row = candidates[(actor // 4) % len(candidates)]  # vary intensity and repetition
            chosen.append((str(root / row["path"]), sentence))
    return chosen


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", text.lower()).split()


def transcribe_all(source: str, clips):
    from bimer_tf.audio.asr import load_recognizer
    from bimer_tf.audio.wav import load_audio
    from bimer_tf.errors import InputError

    try:
        recognizer = load_recognizer(source)
    except InputError as error:
        pytest.skip(f"{source} not installed: {error}")
    audio = [load_audio(path) for path, _ in clips]
    recognizer.transcribe(audio[0])  # first call allocates buffers; not timed
    results = []
    for (path, sentence), samples in zip(clips, audio):
        start = time.perf_counter()
        transcript = recognizer.transcribe(samples).text
        results.append((path, sentence, transcript, time.perf_counter() - start, len(samples) / 16000))
    return results


def report(source: str, results) -> dict:
    exact = sum(words(t) == words(s) for _, s, t, _, _ in results)
    summary = {
        "asr": source,
        "clips": len(results),
        "exact": exact,
        "seconds_per_clip": round(sum(r[3] for r in results) / len(results), 3),
        "audio_seconds_per_clip": round(sum(r[4] for r in results) / len(results), 2),
        "wrong": [t for _, s, t, _, _ in results if words(t) != words(s)],
    }
    print(json.dumps(summary))
    return summary


def test_clip_selection_covers_every_actor_and_both_sentences(corpora_root):
    clips = select_clips(corpora_root)
    assert len(clips) == 48 and len(set(clips)) == 48
    assert sum(sentence == SENTENCES[0] for _, sentence in clips) == 24


def test_tiny_en_gets_at_least_40_of_48_sentences(corpora_root, record_property):
    summary = report("whisper-tiny-offline", transcribe_all("whisper-tiny-offline", select_clips(corpora_root)))
    record_property("asr_summary", summary)
    assert summary["exact"] >= 40, summary


@pytest.mark.slow
def test_base_gets_at_least_40_of_48_sentences(corpora_root, record_property):
    summary = report("whisper-base-offline", transcribe_all("whisper-base-offline", select_clips(corpora_root)))
    record_property("asr_summary", summary)
    assert summary["exact"] >= 40, summary
