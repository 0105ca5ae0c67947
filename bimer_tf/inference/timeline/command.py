"""`python -m bimer_tf.timeline`: the emotions of one long recording over time.

    python -m bimer_tf.timeline --saved-model export/bimer/1 --audio call.mp3 --output out/call
        [--segment asr|vad|fixed] [--asr whisper-tiny-offline|whisper-base-offline|NAME|none]

Writes segments.jsonl, segments.csv, summary.json and timeline.png into
--output and prints a short summary. The options are checked against the
export before TensorFlow loads; the model then loads in a second thread while
the recording is decoded and cut into segments. Bad input: one line on
stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bimer_tf.cli import add_saved_model_argument
from bimer_tf.errors import InputError
from bimer_tf.inference.timeline import (
    BATCH_SIZE,
    MERGE_GAP_S,
    MIN_SEGMENT_S,
    MIN_SILENCE_S,
    SEGMENT_MODES,
    VAD_THRESHOLD,
    build_timeline,
    decode_recording,
    plan_timeline,
    segment_recording,
)
from bimer_tf.inference.timeline.chart import clock
from bimer_tf.serving.export_dir import read_export_info


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bimer_tf.timeline",
        description="Emotion over time: cut a recording into segments and score each with an exported model.",
    )
    add_saved_model_argument(p)
    p.add_argument(
        "--audio", required=True, metavar="FILE", help="the recording: any length, any format (WAV, MP3, FLAC, M4A, ...)"
    )
    p.add_argument(
        "--output", required=True, metavar="DIR", help="folder for segments.jsonl, segments.csv, summary.json, timeline.png"
    )
    p.add_argument(
        "--segment",
        choices=SEGMENT_MODES,
        help="asr: a segment per sentence Whisper hears (default when the model takes text); vad: speech regions "
        "(default for speech-only models); fixed: windows of --window-s every --hop-s",
    )
    p.add_argument(
        "--asr",
        metavar="NAME",
        help="speech recognition: whisper-tiny-offline (default when needed), whisper-base-offline, "
        "a faster-whisper model name or CTranslate2 folder, or none",
    )
    p.add_argument("--window-s", type=float, help="fixed: window length (default: what the model hears, max_duration_s)")
    p.add_argument("--hop-s", type=float, help="fixed: step between window starts (default: the window length)")
    p.add_argument(
        "--min-segment-s", type=float, default=MIN_SEGMENT_S,
        help=f"shorter segments join a neighbour or are dropped (default {MIN_SEGMENT_S:g})",
    )
    p.add_argument(
        "--merge-gap-s", type=float, default=MERGE_GAP_S,
        help=f"the longest pause across which a short segment joins a neighbour (default {MERGE_GAP_S:g})",
    )
    p.add_argument(
        "--min-silence-s", type=float, default=MIN_SILENCE_S,
        help=f"asr/vad: a pause this long ends a speech region (default {MIN_SILENCE_S:g})",
    )
    p.add_argument(
        "--vad-threshold", type=float, default=VAD_THRESHOLD,
        help=f"asr/vad: Silero's speech probability above which a frame is speech (default {VAD_THRESHOLD:g})",
    )
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE, help=f"model windows per SavedModel call (default {BATCH_SIZE})")
    p.add_argument("--no-chart", action="store_true", help="skip timeline.png")
    return p


def load_recognizer_timed(path: str):
    from bimer_tf.inference.recognizer import Recognizer

    started = time.perf_counter()
    recognizer = Recognizer.from_saved_model(path)
    return recognizer, time.perf_counter() - started


def report(summary: dict) -> str:
    """The few lines printed for one recording."""
    lines = [
        f"{summary['audio']}: {clock(summary['duration_s'])} long, {clock(summary['speech_s'])} in "
        f"{summary['segment_count']} segments ({len(summary['merged'])} merged, {len(summary['dropped'])} dropped)"
    ]
    if summary["dominant"] is None:
        lines.append("no segment could be scored (no speech found?); see summary.json")
    else:
        lines.append(f"dominant emotion: {summary['dominant']}")
        width = max(len(label) for label in summary["emotions"])
        for label, value in summary["emotions"].items():
            lines.append(f"  {label:<{width}}  {value['share']:6.1%}  {clock(value['seconds'])}")
    files = summary["files"]
    folder = Path(files["summary_json"]).parent
    lines.append(f"files in {folder}/: " + ", ".join(Path(p).name for p in files.values()))
    return "\n".join(lines)


def main(argv=None) -> int:
    started = time.perf_counter()
    args = parser().parse_args(argv)
    info = read_export_info(args.saved_model)
    plan = plan_timeline(
        info,
        segment=args.segment,
        asr=args.asr,
        window_s=args.window_s,
        hop_s=args.hop_s,
        min_segment_s=args.min_segment_s,
        merge_gap_s=args.merge_gap_s,
        min_silence_s=args.min_silence_s,
        batch_size=args.batch_size,
        vad_threshold=args.vad_threshold,
    )
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise InputError(f"--output {output} is a file; pass a folder")
    if not Path(args.audio).is_file():
        raise InputError(f"audio file not found: {args.audio}")
    timings = {}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bimer-load") as pool:
        loading = pool.submit(load_recognizer_timed, args.saved_model)  # TensorFlow loads meanwhile
        try:
            step = time.perf_counter()
            samples, source = decode_recording(args.audio)
            timings["decode"] = time.perf_counter() - step
            cut = segment_recording(samples, info, plan)
        except BaseException:
            loading.cancel()
            raise
        recognizer, timings["model_load"] = loading.result()
    timeline = build_timeline(
        recognizer, samples, source, plan, timings, cut=cut, output=output, chart=not args.no_chart, started_at=started
    )
    print(report(timeline.summary()))
    return 0
