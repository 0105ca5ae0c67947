"""Long recordings with known segments, for the timeline's benchmarks and tests.

Whole clips of known emotion joined end to end: real RAVDESS recordings
(../shared/corpora/ravdess4, 16 kHz) where the corpora are there, else
sentences spoken by espeak-ng (no emotion: `emotion` is None). A RAVDESS file
keeps its own room tone before and after the sentence, so the pauses between
sentences are real silence of about 1-2.5 s; an espeak-ng sentence gets
0.5-1 s of faint noise (-80 dBFS RMS) on each side. A clip's speech is the
part the model's own front end keeps (frames of 1024 samples, hop 256, not
quieter than 30 dB below the loudest: `trim_silence` in
`bimer_tf.pipeline.frontend`), so each clip's true span in the recording is
known to the sample, and `Recognizer.predict` on the clip alone hears the
same speech.

    from timeline_recordings import pick_clips, join_clips
    clips = pick_clips(4)                  # [Clip(samples, speech, emotion, sentence, origin), ...]
    samples, truth = join_clips(clips)     # truth: [(start_s, end_s), ...] of each clip's speech
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
RAVDESS = REPO_ROOT.parent / "shared" / "corpora" / "ravdess4"
SAMPLE_RATE = 16000
EMOTIONS = ("neutral", "angry", "sad", "happy")
ESPEAK_SENTENCES = (
    "The train leaves at seven tomorrow morning.",
    "I cannot believe you did that again.",
    "Please put the books back on the shelf.",
    "We walked along the river until sunset.",
    "Nobody told me the meeting was cancelled.",
    "This is the best day of my whole life.",
)


@dataclass(frozen=True)
class Clip:
    samples: np.ndarray  # the whole clip, 16 kHz mono float32, pauses included
    speech: tuple[int, int]  # the samples the front end keeps: [start, end)
    emotion: str | None
    sentence: str
    origin: str

    @property
    def speech_s(self) -> float:
        return (self.speech[1] - self.speech[0]) / SAMPLE_RATE


def speech_span(samples: np.ndarray, top_db: float = 30.0, frame: int = 1024, hop: int = 256) -> tuple[int, int]:
    """[start, end) the model front end's silence trim keeps (frame RMS, `top_db` below the loudest), in numpy."""
    count = max(1, -(-samples.size // hop))  # tf.signal.frame(..., pad_end=True)
    padded = np.pad(samples, (0, max(0, (count - 1) * hop + frame - samples.size)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame)[::hop][:count]
    db = 20 * np.log10(np.maximum(np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1)), 1e-10))
    loud = np.nonzero(db >= db.max() - top_db)[0]
    return int(loud[0] * hop), int(min(samples.size, loud[-1] * hop + frame))


def ravdess_clips(count: int, seed: int = 0, min_s: float = 1.3, max_s: float = 4.8) -> list[Clip]:
    """`count` RAVDESS clips, emotions in turn, speakers and sentences drawn at random."""
    import soundfile

    with open(RAVDESS / "metadata.csv", newline="", encoding="utf-8") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: row["path"])
    rng = np.random.default_rng(seed)
    clips: list[Clip] = []
    by_emotion = {e: [r for r in rows if r["emotion"] == e] for e in EMOTIONS}
    attempts = 0
    while len(clips) < count and attempts < 50 * count:
        emotion = EMOTIONS[len(clips) % len(EMOTIONS)]
        row = by_emotion[emotion][int(rng.integers(len(by_emotion[emotion])))]
        attempts += 1
        samples, rate = soundfile.read(RAVDESS / row["path"], dtype="float32", always_2d=True)
        assert rate == SAMPLE_RATE, f"{row['path']} is {rate} Hz"
        samples = samples.mean(axis=1)
        speech = speech_span(samples)
        if not min_s <= (speech[1] - speech[0]) / SAMPLE_RATE <= max_s or any(c.origin == row["path"] for c in clips):
            continue
        clips.append(Clip(samples, speech, emotion, row["statement_text"], row["path"]))
    return clips


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def espeak_clips(count: int, seed: int = 0) -> list[Clip]:
    """`count` sentences spoken by espeak-ng at varied speeds and pitches (no emotion)."""
    from bimer_tf.audio.wav import load_audio

    rng = np.random.default_rng(seed)
    clips = []
    with tempfile.TemporaryDirectory(prefix="timeline_espeak_") as folder:
        for k in range(count):
            sentence = ESPEAK_SENTENCES[k % len(ESPEAK_SENTENCES)]
            path = Path(folder) / f"{k}.wav"
            speed, pitch = int(rng.integers(140, 180)), int(rng.integers(30, 70))
            subprocess.run(
                ["espeak-ng", "-v", "en-us", "-s", str(speed), "-p", str(pitch), "-w", str(path), sentence],
                check=True,
                capture_output=True,
            )
            spoken = load_audio(path, SAMPLE_RATE)
            lead, tail = (rng.standard_normal(int(rng.uniform(0.5, 1.0) * SAMPLE_RATE)) for _ in range(2))
            samples = np.concatenate([lead * 1e-4, spoken, tail * 1e-4]).astype(np.float32)
            start, end = speech_span(samples)
            clips.append(Clip(samples, (start, end), None, sentence, f"espeak-ng: {sentence}"))
    return clips


def pick_clips(count: int, seed: int = 0) -> list[Clip]:
    """RAVDESS clips where the corpora are there, else espeak-ng sentences; [] when neither is."""
    if (RAVDESS / "metadata.csv").is_file():
        return ravdess_clips(count, seed)
    if espeak_available():
        return espeak_clips(count, seed)
    return []


def join_clips(clips: list[Clip], lead_s: float = 0.5) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The whole clips end to end after `lead_s` of faint noise; (samples, each clip's speech span in s)."""
    lead = (np.random.default_rng(0).standard_normal(int(lead_s * SAMPLE_RATE)) * 1e-4).astype(np.float32)
    parts, truth, cursor = [lead], [], lead.size
    for clip in clips:
        truth.append(((cursor + clip.speech[0]) / SAMPLE_RATE, (cursor + clip.speech[1]) / SAMPLE_RATE))
        parts.append(clip.samples.astype(np.float32))
        cursor += clip.samples.size
    return np.concatenate(parts), truth


def long_recording(seconds: float, seed: int = 0, pool: int = 40) -> tuple[np.ndarray, int]:
    """About `seconds` of whole clips (a pool of `pool`, repeated) end to end; (samples, clip count)."""
    clips = pick_clips(pool, seed)
    if not clips:
        raise RuntimeError("neither ../shared/corpora/ravdess4 nor espeak-ng is available")
    mean_s = np.mean([c.samples.size for c in clips]) / SAMPLE_RATE
    count = int(np.ceil(seconds / mean_s))
    samples, truth = join_clips([clips[k % len(clips)] for k in range(count)])
    return samples, len(truth)


def match(truth, found) -> list[int | None]:
    """For each truth span, the index of the found (start_s, end_s) span overlapping it most (None: none)."""
    matches = []
    for start, end in truth:
        overlaps = [max(0.0, min(end, e) - max(start, s)) for s, e in found]
        best = int(np.argmax(overlaps)) if overlaps else None
        matches.append(best if best is not None and overlaps[best] > 0 else None)
    return matches
