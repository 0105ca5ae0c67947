"""Does the timeline find each utterance, and score it as the model scores that utterance alone?

    python benchmarks/timeline_accuracy.py --saved-model export/bimer/1 [--clips 20] [--segment asr|vad]
        [--asr whisper-tiny-offline] [--seed 0] [--output DIR]

Joins `--clips` whole RAVDESS clips of known emotion end to end (their own
room tone makes 1-2.5 s pauses; `timeline_recordings.py`; espeak-ng
sentences where the corpora are absent),
runs `emotion_timeline` on the joined recording, and for each clip:

- the segment overlapping it most: how far its start and end are from the
  clip's speech (boundary error; the speech is what the front end's trim
  keeps of the clip);
- `Recognizer.predict` on the clip alone (same export; for a model that takes
  text, with the words the same Whisper model hears in the clip alone):
  whether the label is the same, and the largest difference of any
  probability; and the tolerance it is held to: how far the model's own
  probabilities move when that clip alone starts 2.5-15 ms later
  (`shift_band`; the timeline's edges are within the 16 ms hop of its trim
  rule, so a difference up to that band, plus 0.02, is agreement);
- `Recognizer.predict` on the segment's own audio and words: must be equal
  (float32 round-off), which checks the batching and window averaging.

Prints one JSON line; with `--output` the timeline's files are written there
too (docs/timeline.png is made this way).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS.parent))
sys.path.insert(0, str(BENCHMARKS))

from bimer_tf.cli import quiet_startup  # noqa: E402

quiet_startup()

import numpy as np  # noqa: E402
from timeline_recordings import SAMPLE_RATE, join_clips, match, pick_clips  # noqa: E402


def words(text: str | None) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", (text or "").lower()).split()


def vector(prediction, recognizer) -> np.ndarray:
    return np.array([prediction.probabilities[label] for label in recognizer.labels])


def compare(recognizer, samples, clips, truth, timeline, asr: str) -> dict:
    """Per clip: the matched segment, boundary errors, and the clip-alone prediction."""
    from bimer_tf.audio.asr import NO_ASR, load_recognizer

    whisper = load_recognizer(asr) if asr != NO_ASR else None
    found = [(s.segment.start_s, s.segment.end_s) for s in timeline.segments]
    matched = match(truth, found)
    rows = []
    for clip, (start, end), index in zip(clips, truth, matched):
        row = {"origin": clip.origin, "emotion": clip.emotion, "start_s": round(start, 3), "end_s": round(end, 3)}
        if index is None:
            rows.append({**row, "found": False})
            continue
        scored = timeline.segments[index]
        text = whisper.transcribe(clip.samples).text if (whisper and recognizer.takes_text) else None
        alone = recognizer.predict(audio=clip.samples, text=text, sample_rate=SAMPLE_RATE)
        reference = np.array([alone.probabilities[label] for label in recognizer.labels])
        # How much the model moves on its own when the same clip starts 2.5-15 ms later (its own room
        # tone first; the timeline's edges are within 16 ms of the speech): the tolerance.
        band = max(
            float(np.max(np.abs(vector(recognizer.predict(
                audio=np.concatenate([clip.samples[:k], clip.samples]), text=text, sample_rate=SAMPLE_RATE), recognizer)
                - reference)))
            for k in (40, 80, 120, 160, 200, 240)
        )
        # The segment's own audio and words alone: the timeline's batching and averaging, checked.
        first, last = (int(round(t * SAMPLE_RATE)) for t in (scored.segment.start_s, scored.segment.end_s))
        own = recognizer.predict(
            audio=samples[first:last], text=scored.segment.transcript if recognizer.takes_text else None, sample_rate=SAMPLE_RATE
        )
        rows.append(
            {
                **row,
                "found": True,
                "segment": [round(scored.segment.start_s, 3), round(scored.segment.end_s, 3)],
                "boundary_error_s": round(max(abs(scored.segment.start_s - start), abs(scored.segment.end_s - end)), 3),
                "label": scored.label,
                "label_alone": alone.label,
                "max_abs_difference": float(np.max(np.abs(scored.probabilities - reference))),
                "shift_band": band,
                "own_audio_difference": float(np.max(np.abs(scored.probabilities - vector(own, recognizer))))
                if scored.windows == 1
                else None,
                "transcript": scored.segment.transcript,
                "transcript_alone": text,
                "same_words": words(scored.segment.transcript) == words(text) if text is not None else None,
            }
        )
    return {"rows": rows, "segments": len(found)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--saved-model", "--model", dest="saved_model", required=True)
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--segment", choices=("asr", "vad"), default=None)
    parser.add_argument("--asr", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="also write the timeline's files here")
    parser.add_argument("--details", action="store_true", help="print one JSON line per clip too")
    args = parser.parse_args(argv)

    from bimer_tf.inference.recognizer import Recognizer
    from bimer_tf.inference.timeline import emotion_timeline

    clips = pick_clips(args.clips, args.seed)
    if not clips:
        print(json.dumps({"skipped": "neither ../shared/corpora/ravdess4 nor espeak-ng is available"}))
        return 0
    samples, truth = join_clips(clips)
    recognizer = Recognizer.from_saved_model(args.saved_model)
    started = time.perf_counter()
    timeline = emotion_timeline(
        recognizer, samples, sample_rate=SAMPLE_RATE, segment=args.segment, asr=args.asr
    )
    seconds = time.perf_counter() - started
    if args.output:  # name the recording in the chart's title
        timeline.source = f"{len(clips)} RAVDESS clips" if clips[0].emotion else f"{len(clips)} espeak-ng sentences"
        timeline.write(args.output)
    result = compare(recognizer, samples, clips, truth, timeline, timeline.plan.asr)
    rows = [r for r in result["rows"] if r["found"]]
    errors = np.array([r["boundary_error_s"] for r in rows]) if rows else np.zeros(0)
    differences = np.array([r["max_abs_difference"] for r in rows]) if rows else np.zeros(0)
    same_words = [r["same_words"] for r in rows if r["same_words"] is not None]
    summary = {
        "model": args.saved_model,
        "mode": timeline.plan.segment,
        "asr": timeline.plan.asr,
        "source": "ravdess" if clips[0].emotion else "espeak-ng",
        "clips": len(clips),
        "recording_s": round(samples.size / SAMPLE_RATE, 1),
        "segments": result["segments"],
        "clips_found": len(rows),
        "dropped": len(timeline.dropped),
        "merged": len(timeline.merged),
        "boundary_error_s": {
            "mean": round(float(errors.mean()), 3) if errors.size else None,
            "max": round(float(errors.max()), 3) if errors.size else None,
            "within_0.3": int((errors <= 0.3).sum()),
            "within_0.5": int((errors <= 0.5).sum()),
        },
        "same_label_as_alone": sum(r["label"] == r["label_alone"] for r in rows),
        "max_abs_difference": {
            "max": round(float(differences.max()), 5) if differences.size else None,
            "median": round(float(np.median(differences)), 5) if differences.size else None,
        },
        "shift_band": {
            "max": round(float(max(r["shift_band"] for r in rows)), 5) if rows else None,
            "median": round(float(np.median([r["shift_band"] for r in rows])), 5) if rows else None,
        },
        "within_band_plus_0.02": sum(r["max_abs_difference"] <= r["shift_band"] + 0.02 for r in rows),
        "within_band_plus_0.02_same_words": sum(
            r["max_abs_difference"] <= r["shift_band"] + 0.02 for r in rows if r["same_words"] is not False
        ),
        "own_audio_difference_max": max(
            (r["own_audio_difference"] for r in rows if r["own_audio_difference"] is not None), default=None
        ),
        "same_words_as_alone": f"{sum(same_words)}/{len(same_words)}" if same_words else None,
        "timeline_seconds": round(seconds, 2),
    }
    if args.details:
        for row in result["rows"]:
            print(json.dumps(row))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    from bimer_tf.cli import run_main

    raise SystemExit(run_main(main))
