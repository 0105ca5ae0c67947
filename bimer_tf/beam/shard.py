"""`python -m bimer_tf.beam.shard`: a manifest as sharded TFRecords, with augmented copies, on Beam.

    python -m bimer_tf.beam.shard --manifest data/ravdess/manifest.jsonl \\
        --splits data/ravdess/splits.json --methods speed,rir,noise,pitch --out data/ravdess_shards
    python -m bimer_tf.beam.shard ... --runner DataflowRunner --project P --region R \\
        --temp_location gs://B/tmp --requirements_file bimer_tf/beam/requirements.txt --out gs://B/shards

The output is that of `python -m bimer_tf.data.shard` (the format of
`bimer_tf.data.shards`: `<split>-NNNNN-of-MMMMM.tfrecord`, `<split>.index.json`,
`shard_report.json`), plus `--methods`: BiMER's offline augmentation, made
by the code of `python -m bimer_tf.data.augment` with the same clip ids and
per-clip seeds, so a copy holds the samples of the WAV that tool writes for
the same clip. Copies go to the training split only: the fold's `train`
with `--splits`, or, without it, a manifest whose split is named `train`
with `--split train` (a fold's train.jsonl). Inputs may be local or on any
filesystem Beam knows (gs://, s3://, hdfs://).

A record that cannot be made (missing, unreadable or silent audio, a row
without id/label/corpus, an augmentation that fails, an unexpected error)
is written to OUT/dead_letter-*.jsonl with its `id` and `reason`; the
pipeline goes on. Per split, written + dead-lettered = rows read + copies
planned: printed at the end and kept in OUT/shard_report.json.

Runs on the DirectRunner (multi_processing, one worker per CPU) unless
Beam options say otherwise: docs/beam.md.
"""

from __future__ import annotations

import argparse

from bimer_tf.beam.runner import RUNNER_HELP, pipeline_options
from bimer_tf.data import shards
from bimer_tf.data.augment_audio import METHODS, add_settings_arguments, settings_from_args
from bimer_tf.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bimer_tf.beam.shard",
        description="Write a manifest (and the splits of one fold) as sharded TFRecords on Apache Beam, "
        "with BiMER's augmented copies in the training split.",
        epilog=RUNNER_HELP,
        allow_abbrev=False,
    )
    parser.add_argument("--manifest", required=True, help="manifest.jsonl (local, gs://, ...)")
    parser.add_argument(
        "--splits",
        help="splits.json: shard the fold's train/val/test; without it the whole manifest is one split",
    )
    parser.add_argument("--fold", help="fold name in --splits (default: the first)")
    parser.add_argument(
        "--split",
        default=shards.ALL_SPLIT,
        help="without --splits, the split's name (default %(default)s; 'train' for a training manifest "
        "that --methods augments)",
    )
    parser.add_argument("--out", required=True, help="output folder (local, gs://, ...)")
    parser.add_argument(
        "--methods",
        default="",
        help=f"augmentation of the training split: comma-separated subset of {','.join(METHODS)} (default: none)",
    )
    add_settings_arguments(parser.add_argument_group("augmentation (as python -m bimer_tf.data.augment)"))
    sizes = parser.add_argument_group("shards")
    sizes.add_argument(
        "--shard-mb",
        type=float,
        default=shards.DEFAULT_SHARD_MB,
        help=f"target shard size in MiB (default {shards.DEFAULT_SHARD_MB:g})",
    )
    sizes.add_argument("--min-shards", type=int, default=1, help="at least this many shards per split")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args, beam_flags = parser.parse_known_args(argv)
    if args.fold and not args.splits:
        raise InputError("--fold needs --splits (the splits.json that names the fold)")
    options = pipeline_options(beam_flags)
    settings = settings_from_args(args)
    from bimer_tf.beam.sharding import shard_with_beam

    report = shard_with_beam(
        args.manifest,
        args.out,
        options,
        splits=args.splits,
        fold=args.fold,
        split=args.split,
        methods=[m.strip() for m in args.methods.split(",") if m.strip()],
        settings=settings,
        shard_mb=args.shard_mb,
        min_shards=args.min_shards,
    )
    for split, counts in report["splits"].items():
        print(
            f"{split}: read {counts['read']} rows + {counts['copies_planned']} copies planned = "
            f"written {counts['written']} + dead-lettered {counts['skipped']} "
            f"in {counts['shards']} shard(s); per class {counts['per_class']}"
        )
        for item in counts["skipped_items"][:5]:
            print(f"  dead letter {item['id']}: {item['reason']}")
        if counts["skipped"] > 5:
            print(f"  ... {counts['skipped'] - 5} more in the dead-letter files")
    beam = report["beam"]
    workers = f", {beam['direct_num_workers']} workers ({beam['direct_running_mode']})" if "direct_num_workers" in beam else ""
    print(f"shards and indexes in {args.out} ({report['seconds']:.1f} s on {beam['runner']}{workers})")
    print(f"dead letters: {', '.join(report['dead_letter_files']) or 'none'}")
    return 0


if __name__ == "__main__":
    from bimer_tf.cli import quiet_startup, run_main

    quiet_startup()
    raise SystemExit(run_main(main))
