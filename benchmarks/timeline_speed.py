"""How long `python -m bimer_tf.timeline` takes on a long recording, and its peak memory.

    python benchmarks/timeline_speed.py --saved-model export/bimer/1 [--minutes 10] [--segment asr]
        [--asr whisper-tiny-offline] [--keep DIR]

Writes a recording of `--minutes` of whole RAVDESS clips end to end
(`timeline_recordings.long_recording`; espeak-ng sentences where the corpora
are absent) as a 16 kHz 16-bit WAV, then times the whole command in a fresh
process, from start to its files written: wall seconds, the real-time
factor (wall / recording length), the child's peak resident memory
(`ru_maxrss`), its CPU seconds, the timings it reports in summary.json and
the machine's load average before and after (the cores may be shared).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
REPO_ROOT = BENCHMARKS.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(BENCHMARKS))

from timeline_recordings import SAMPLE_RATE, long_recording  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--saved-model", "--model", dest="saved_model", required=True)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--segment", choices=("asr", "vad", "fixed"))
    parser.add_argument("--asr")
    parser.add_argument("--keep", help="keep the recording and the outputs in this folder")
    args = parser.parse_args(argv)

    import soundfile

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="timeline_speed_"))
    folder.mkdir(parents=True, exist_ok=True)
    recording = folder / f"recording_{args.minutes:g}min.wav"
    if not recording.is_file():
        samples, clips = long_recording(args.minutes * 60)
        soundfile.write(recording, samples, SAMPLE_RATE, subtype="PCM_16")
        del samples
    duration = soundfile.info(recording).duration
    command = [
        sys.executable, "-m", "bimer_tf.timeline", "--saved-model", args.saved_model,
        "--audio", str(recording), "--output", str(folder / "out"),
    ]
    if args.segment:
        command += ["--segment", args.segment]
    if args.asr:
        command += ["--asr", args.asr]
    load_before = os.getloadavg()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        return done.returncode
    summary = json.loads((folder / "out" / "summary.json").read_text())
    print(
        json.dumps(
            {
                "model": args.saved_model,
                "mode": summary["segmentation"]["mode"],
                "asr": summary["segmentation"]["asr"],
                "recording_s": round(duration, 1),
                "segments": summary["segment_count"],
                "dropped": len(summary["dropped"]),
                "wall_s": round(wall, 1),
                "real_time_factor": round(wall / duration, 4),
                "cpu_s": round((usage.ru_utime - before.ru_utime) + (usage.ru_stime - before.ru_stime), 1),
                "peak_rss_mb": round(usage.ru_maxrss / 1024, 0),  # the largest child so far (KiB on Linux)
                "timings_s": summary["timings_s"],
                "load_average": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
                "cores": os.cpu_count(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
