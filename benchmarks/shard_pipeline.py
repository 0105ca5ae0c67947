"""Input pipeline throughput from sharded TFRecords against from WAV files.

    python benchmarks/shard_pipeline.py [--manifest M ...] [--work DIR] [--batch-size 16]
        [--shard-mb 128] [--limit N]

Reads the manifests (default: RAVDESS and its augmented copies,
data/ravdess/manifest.jsonl + data/ravdess_aug/ + data/ravdess_pitch/ when
present), writes their usable speech rows as one manifest and as shards
(`python -m bimer_tf.data.shard`, timed on its own: a one-off cost), then
times two training passes of each input pipeline, alternating (the faster
of each counts), with the same front end (the default `audio` config:
decode, trim, crop/pad to 6 s, 128-band log-mel, SpecAugment, shuffle,
batch) and caching off, so every utterance is read and decoded in a pass:

    WAV:    manifest rows -> read file -> decode_wav -> front end
    shards: shard files -> interleave of TFRecordDatasets -> parse -> PCM16 -> front end

Prints utterances/s of each, and one JSON line. Build the augmented copies
first if they are missing:

    python -m bimer_tf.data.augment --manifest data/ravdess/manifest.jsonl \\
        --out data/ravdess_aug --methods speed,noise
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bimer_tf.cli import quiet_startup  # noqa: E402

quiet_startup()  # before anything imports TensorFlow

DEFAULT_MANIFESTS = ("data/ravdess/manifest.jsonl", "data/ravdess_aug/manifest.jsonl", "data/ravdess_pitch/manifest.jsonl")


def one_pass(dataset) -> tuple[int, float]:
    start = time.perf_counter()
    count = 0
    for _, labels in dataset:
        count += int(labels.shape[0])
    return count, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", action="append", help="manifest to read (repeatable)")
    parser.add_argument("--work", default="data/shard_bench", help="folder for the joined manifest and the shards")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--shard-mb", type=float, default=128.0)
    parser.add_argument("--limit", type=int, help="only the first N rows (a quick check)")
    parser.add_argument("--workers", type=int, default=1, help="processes of the shard command")
    args = parser.parse_args()

    from bimer_tf.config import ExperimentConfig
    from bimer_tf.data import shards
    from bimer_tf.data.manifest import read_manifest, write_manifest
    from bimer_tf.data.shard import shard_manifest
    from bimer_tf.pipeline.dataset import (
        build_dataset,
        build_shard_dataset,
        check_shard_split,
        make_spec_augment,
        validate_rows,
    )
    from bimer_tf.pipeline.frontend import AudioFrontend

    manifests = args.manifest or [m for m in DEFAULT_MANIFESTS if (REPO / m).is_file()]
    config = ExperimentConfig()
    labels = config.data.labels
    frontend = AudioFrontend(config.audio)
    rows = [row for manifest in manifests for row in read_manifest(REPO / manifest if not os.path.isabs(manifest) else manifest)]
    rows = rows[: args.limit] if args.limit else rows
    kept = validate_rows(rows, labels, frontend, needs_text=False).kept
    work = REPO / args.work if not os.path.isabs(args.work) else Path(args.work)
    joined = write_manifest(kept, work / "manifest.jsonl")
    load = os.getloadavg()

    start = time.perf_counter()
    report = shard_manifest(joined, work / "shards", shard_mb=args.shard_mb, workers=args.workers, progress=False)
    shard_seconds = time.perf_counter() - start
    index = shards.read_index(work / "shards", shards.ALL_SPLIT)
    check = check_shard_split(work / "shards", index, labels, frontend, needs_text=False)
    shard_bytes = sum(os.path.getsize(path) for path in check.files)

    common = dict(
        batch_size=args.batch_size,
        training=True,
        spec_augment=make_spec_augment(config.spec_augment, seed=0),
        shuffle_buffer=config.data.shuffle_buffer,
        seed=0,
    )
    wav_dataset = build_dataset(kept, labels, frontend, None, cache=False, **common)
    shard_dataset = build_shard_dataset(check.files, labels, frontend, None, count=check.kept, cache=None, **common)
    # Build both graphs (and warm the op kernels) on one batch each before timing.
    for dataset in (wav_dataset.take(1), shard_dataset.take(1)):
        one_pass(dataset)
    # Two passes of each, alternating, so a burst of load from other work on
    # the machine does not decide the comparison; the faster pass counts.
    passes = {"wav": [], "shards": []}
    for name, dataset in (("wav", wav_dataset), ("shards", shard_dataset)) * 2:
        passes[name].append(one_pass(dataset))
    wav_count, wav_seconds = min(passes["wav"], key=lambda p: p[1])
    shard_count, shard_pass_seconds = min(passes["shards"], key=lambda p: p[1])

    result = {
        "benchmark": "shard_pipeline",
        "manifests": manifests,
        "utterances": len(kept),
        "shards": len(check.files),
        "shard_mb_total": round(shard_bytes / shards.MB, 1),
        "shard_command_seconds": round(shard_seconds, 1),
        "shard_command_written": report["splits"][shards.ALL_SPLIT]["written"],
        "batch_size": args.batch_size,
        "wav": {"utterances": wav_count, "seconds": round(wav_seconds, 2), "utterances_per_s": round(wav_count / wav_seconds, 1)},
        "shards_pass": {
            "utterances": shard_count,
            "seconds": round(shard_pass_seconds, 2),
            "utterances_per_s": round(shard_count / shard_pass_seconds, 1),
        },
        "pass_seconds": {name: [round(p[1], 2) for p in runs] for name, runs in passes.items()},
        "speedup": round((shard_count / shard_pass_seconds) / (wav_count / wav_seconds), 3),
        "cpu_cores": len(os.sched_getaffinity(0)),
        "load_average_before": [round(x, 2) for x in load],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(
        f"{len(kept)} utterances, batch {args.batch_size}, training passes (best of 2 each), caching off:\n"
        f"  WAV files: {result['wav']['utterances_per_s']} utterances/s ({wav_seconds:.1f} s)\n"
        f"  shards:    {result['shards_pass']['utterances_per_s']} utterances/s ({shard_pass_seconds:.1f} s, "
        f"{len(check.files)} shards, {result['shard_mb_total']} MiB; writing them took {shard_seconds:.0f} s once)\n"
        f"  shards / WAV: {result['speedup']}x; load average {load[0]:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
