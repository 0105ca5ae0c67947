"""Preparing and augmenting RAVDESS: the Beam pipeline against the single-machine tools.

    .venv/bin/python benchmarks/beam_shard.py [--manifest data/ravdess/manifest.jsonl]
        [--workers 2] [--methods speed,rir,noise,pitch] [--sample 24] [--keep DIR]

The same work both ways, on `--workers` processes each, with the manifest's
clips taken as one training split (`--split train`):

  (a) Beam: `python -m bimer_tf.beam.shard --split train --methods M` on the
      DirectRunner, multi_processing, `--direct_num_workers W`: decode,
      augment, write shards and index in one pipeline
  (b) single machine: `python -m bimer_tf.data.augment --workers W` (the
      copies as WAVs), then `python -m bimer_tf.data.shard --workers W` on the
      originals plus the copies (the same shards' content); each step timed

The two outputs hold the same rows (the indexes' `rows_sha256` must agree),
which the script checks. Before, it measures per-clip costs in this process
(one thread, CPU and wall seconds) on `--sample` clips: decoding, each
method, and encoding a record; they feed the scale plan in docs/beam.md.
`data/ravdess` is prepared from ../shared/corpora/ravdess4 when missing.
Prints one JSON document, with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bimer_tf.cli import quiet_startup  # noqa: E402

quiet_startup()

DEFAULT_MANIFEST = REPO_ROOT / "data/ravdess/manifest.jsonl"
CORPUS = REPO_ROOT.parent / "shared/corpora/ravdess4"


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run(command: list[str]) -> float:
    """Runs a command from the repository root; returns its wall seconds (fails loudly)."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return round(seconds, 1)


def per_clip_costs(rows: list[dict], methods: list[str], sample: int) -> dict:
    """CPU and wall seconds per clip (one thread, this process) and bytes per record."""
    from bimer_tf.data import shards
    from bimer_tf.data.augment_audio import AugmentSettings, augmented_wav, load_recording, plan_clips
    from bimer_tf.beam.sharding import wav_pcm16

    settings = AugmentSettings()
    step = max(1, len(rows) // sample)
    chosen = rows[::step][:sample]
    costs: dict[str, list[float]] = {}
    original_bytes, copy_bytes, audio_seconds = [], [], 0.0

    def timed(name, function, *args):
        cpu, wall = time.process_time(), time.perf_counter()
        result = function(*args)
        costs.setdefault(name, []).append((time.process_time() - cpu, time.perf_counter() - wall))
        return result

    shards.encode_example(chosen[0], None)  # imports the protobuf classes outside the timing
    for row in chosen:
        samples, problem = timed("decode", load_recording, row["audio"], settings.sample_rate)
        if problem:
            continue
        audio_seconds += len(samples) / settings.sample_rate
        record = timed("encode", shards.encode_example, row, shards.to_pcm16(samples))
        original_bytes.append(len(record))
        for clip in plan_clips(row["id"], methods, settings, None):
            name = clip.method if clip.speed_factor is None else f"speed{clip.speed_factor:g}"
            wav = timed(name, augmented_wav, samples, clip, settings)
            copy_bytes.append(len(shards.encode_example({**row, "id": clip.id}, wav_pcm16(wav))))
    return {
        "clips": len(chosen),
        "mean_clip_s": round(audio_seconds / max(1, len(chosen)), 3),
        "seconds_per_clip": {
            name: {"cpu": round(sum(c for c, _ in v) / len(v), 4), "wall": round(sum(w for _, w in v) / len(v), 4)}
            for name, v in costs.items()
        },
        "mean_record_bytes": {
            "original": round(sum(original_bytes) / max(1, len(original_bytes))),
            "copy": round(sum(copy_bytes) / max(1, len(copy_bytes))),
        },
        "record_bytes_per_audio_s": round(sum(original_bytes) / max(audio_seconds, 1e-9)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--methods", default="speed,rir,noise,pitch")
    parser.add_argument("--sample", type=int, default=24, help="clips for the per-clip costs")
    parser.add_argument("--keep", type=Path, help="keep the outputs in this folder (default: a temporary one, removed)")
    args = parser.parse_args()

    if not args.manifest.is_file():
        if args.manifest != DEFAULT_MANIFEST or not CORPUS.is_dir():
            print(f"skipped: {args.manifest} not found (and no corpus at {CORPUS} to prepare it from)")
            return 0
        run([sys.executable, "-m", "bimer_tf.data.prepare", "ravdess", "--root", str(CORPUS), "--out", "data/ravdess"])

    from bimer_tf.data import shards
    from bimer_tf.data.manifest import read_manifest, write_manifest

    rows = read_manifest(args.manifest)
    methods = [m for m in args.methods.split(",") if m]
    result = {
        "manifest": str(args.manifest),
        "clips": len(rows),
        "methods": methods,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "load_before": load(),
    }
    result["per_clip"] = per_clip_costs(rows, methods, args.sample)

    folder = Path(tempfile.mkdtemp(prefix="beam_shard_bench_")) if args.keep is None else args.keep
    folder.mkdir(parents=True, exist_ok=True)
    try:
        beam_out = folder / "beam"
        result["beam_seconds"] = run(
            [sys.executable, "-m", "bimer_tf.beam.shard", "--manifest", str(args.manifest), "--split", "train",
             "--methods", ",".join(methods), "--out", str(beam_out), "--direct_num_workers", str(args.workers)]
        )
        result["load_after_beam"] = load()
        augment_seconds = run(
            [sys.executable, "-m", "bimer_tf.data.augment", "--manifest", str(args.manifest), "--out",
             str(folder / "aug"), "--methods", ",".join(methods), "--workers", str(args.workers), "--no-progress"]
        )
        combined = write_manifest(rows + read_manifest(folder / "aug" / "manifest.jsonl"), folder / "combined.jsonl")
        shard_seconds = run(
            [sys.executable, "-m", "bimer_tf.data.shard", "--manifest", str(combined), "--out", str(folder / "single"),
             "--workers", str(args.workers), "--no-progress"]
        )
        result["single_machine_seconds"] = {
            "augment": augment_seconds, "shard": shard_seconds, "total": round(augment_seconds + shard_seconds, 1)
        }
        result["load_after"] = load()
        beam_index = shards.read_index(beam_out, "train")
        single_index = shards.read_index(folder / "single", shards.ALL_SPLIT)
        report = json.loads((beam_out / shards.REPORT_NAME).read_text())["splits"]["train"]
        result["records"] = {"beam": beam_index["rows"], "single_machine": single_index["rows"], "dead_lettered": report["skipped"]}
        result["same_rows"] = beam_index["rows_sha256"] == single_index["rows_sha256"]
        result["shards"] = len(beam_index["shards"])
        result["shard_bytes"] = sum((beam_out / s["file"]).stat().st_size for s in beam_index["shards"])
        result["records_per_s"] = {
            "beam": round(beam_index["rows"] / result["beam_seconds"], 2),
            "single_machine": round(single_index["rows"] / result["single_machine_seconds"]["total"], 2),
        }
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(result, indent=1))
    return 0 if result.get("same_rows") else 1


if __name__ == "__main__":
    raise SystemExit(main())
