"""`python -m bimer_tf.data.shard`: a manifest (and its splits) as sharded TFRecords.

    python -m bimer_tf.data.shard --manifest M [--splits S [--fold F | --all-folds]] --out DIR
        [--shard-mb 128] [--min-shards 1] [--workers N]

With `--splits` (a splits.json) each split of the fold (`--fold`, default
the first) becomes `<split>-NNNNN-of-MMMMM.tfrecord` files and
`<split>.index.json` in DIR, rows in the fold's order; augmented copies
that `split --aug-manifest` added are found in the fold's own manifests, as
training finds them. Without `--splits` every row of the manifest goes to
one split named `all`. `--all-folds` writes every fold of the splits file,
each into DIR/<fold>/ (what crossval reads with `data.shards: DIR/{fold}`).
The format: `bimer_tf.data.shards`.

Each clip is decoded and resampled to 16 kHz mono (`load_audio`), on
`--workers` processes. A clip that cannot be used (missing, unreadable,
silent, a row without id/label/corpus) is reported with its reason and left
out; text-only rows (audio null) are kept with empty audio. Per split:
read = written + skipped, printed and written with every skipped item to
DIR/shard_report.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bimer_tf.data import shards
from bimer_tf.data.manifest import SPLIT_NAMES, read_manifest, read_splits, select_fold
from bimer_tf.data.process_pool import available_cpus, map_in_processes
from bimer_tf.errors import InputError

SILENCE_FLOOR_DBFS = -60.0  # AudioConfig.silence_floor_dbfs, the front end's default


def fold_rows(manifest: str | Path, splits_file: str | Path | None, fold_name: str | None):
    """(protocol, fold name, {split: rows}) of a manifest and its splits, or of the
    manifest alone (one split `all`, protocol and fold null)."""
    rows = read_manifest(manifest)
    if splits_file is None:
        return None, None, {shards.ALL_SPLIT: rows}
    splits_file = Path(splits_file)
    protocol, folds = read_splits(splits_file)
    fold = select_fold(folds, fold_name)
    by_id = {row["id"]: row for row in rows}
    result = {}
    for split in SPLIT_NAMES:
        ids = getattr(fold, split)
        fold_manifest = splits_file.parent / fold.name / f"{split}.jsonl"
        if any(i not in by_id for i in ids) and fold_manifest.is_file():
            for row in read_manifest(fold_manifest):
                by_id.setdefault(row["id"], row)
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise InputError(
                f"{splits_file}: fold '{fold.name}' {split} names ids missing from {manifest}: {missing[:3]}"
            )
        result[split] = [by_id[i] for i in ids]
    return protocol, fold.name, result


def decode_clip(task: tuple[int, str | None, float]) -> tuple[int, np.ndarray | None, str | None]:
    """(position, path, silence floor) -> (position, int16 samples or None, reason to skip or None).

    Runs in a worker process: no TensorFlow here.
    """
    from bimer_tf.audio.wav import load_audio

    position, path, floor = task
    if path is None:
        return position, None, None  # a text-only row
    if not os.path.isfile(path):
        return position, None, f"audio file not found: {path}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            samples = load_audio(path, shards.SAMPLE_RATE)
    except InputError as error:
        return position, None, str(error)
    pcm = shards.to_pcm16(samples)
    peak = int(np.max(np.abs(pcm.astype(np.int32)))) if pcm.size else 0
    peak_dbfs = 20 * np.log10(peak / 32768) if peak else -np.inf
    if peak_dbfs < floor:
        return position, None, f"{path} is silent (peak {peak_dbfs:.1f} dBFS, below {floor:.0f} dBFS)"
    return position, pcm, None


def _estimate_bytes(row: dict) -> int:
    """A row's record size from its audio header (no decoding)."""
    import soundfile

    path = row["audio"]
    if path is None:
        return shards.example_bytes_estimate(0, row)
    try:
        info = soundfile.info(path)
        samples = info.frames * shards.SAMPLE_RATE / max(1, info.samplerate)
    except Exception:  # unreadable here: decoding reports it; count its file size
        samples = os.path.getsize(path) / 2 if os.path.isfile(path) else 0
    return shards.example_bytes_estimate(int(samples), row)


def shard_split(
    rows: list[dict],
    split: str,
    out_dir: str | Path,
    *,
    shard_mb: float = shards.DEFAULT_SHARD_MB,
    min_shards: int = 1,
    workers: int = 1,
    silence_floor_dbfs: float = SILENCE_FLOOR_DBFS,
    source_manifest: str | None = None,
    progress: bool = True,
) -> dict:
    """Writes one split's shards and index; returns {"read", "written", "skipped",
    "skipped_reasons", "skipped_items", "shards", "index"}."""
    total = sum(_estimate_bytes(row) for row in rows)
    count = shards.plan_shards(total, len(rows), shard_mb, min_shards)
    shard_of = {}
    for shard, positions in enumerate(shards.shard_ranges(len(rows), count)):
        shard_of.update(dict.fromkeys(positions, shard))
    writer = shards.SplitWriter(out_dir, split, count, source_manifest)
    skipped = []
    tasks = [(position, row["audio"], silence_floor_dbfs) for position, row in enumerate(rows)]
    workers = max(1, min(workers, len(tasks)))
    chunk = max(1, min(16, len(tasks) // (4 * workers) or 1))
    with tqdm(total=len(rows), unit="clip", desc=split, disable=not progress) as bar:
        for position, samples, reason in map_in_processes(decode_clip, tasks, workers, chunksize=chunk):
            row = rows[position]
            if reason is None:
                try:
                    record = shards.encode_example(row, samples)
                except InputError as error:
                    reason = str(error)
            if reason is None:
                writer.write(shard_of[position], record, shards.canonical_row(row, samples))
            else:
                skipped.append({"id": row.get("id"), "reason": reason})
            bar.update(1)
    index = writer.close()
    written = index["rows"]
    if written + len(skipped) != len(rows):  # a broken invariant, not bad input
        raise AssertionError(f"{split}: {written} written + {len(skipped)} skipped != {len(rows)} read")
    return {
        "read": len(rows),
        "written": written,
        "skipped": len(skipped),
        "skipped_reasons": dict(Counter(_reason_kind(item["reason"]) for item in skipped)),
        "shards": count,
        "per_class": index["per_class"],
        "skipped_items": skipped,
    }


def _reason_kind(reason: str) -> str:
    for kind in ("not found", "silent", "no samples", "NaN", "cannot decode", "is empty"):
        if kind in reason:
            return kind
    return "other"


def shard_manifest(
    manifest: str | Path,
    out_dir: str | Path,
    *,
    splits: str | Path | None = None,
    fold: str | None = None,
    shard_mb: float = shards.DEFAULT_SHARD_MB,
    min_shards: int = 1,
    workers: int | None = None,
    silence_floor_dbfs: float = SILENCE_FLOOR_DBFS,
    progress: bool = True,
    fold_order: list[str] | None = None,
) -> dict:
    """Shards every split; writes and returns the report (`shard_report.json`).
    `fold_order` (the folds of the splits file, recorded in the report) is
    for one fold of `--all-folds`."""
    started = time.perf_counter()
    workers = available_cpus() if workers is None else workers
    if workers < 1:
        raise InputError(f"--workers {workers}: must be 1 or more")
    shards.plan_shards(0, 1, shard_mb, min_shards)  # checks the two options
    protocol, fold_name, split_rows = fold_rows(manifest, splits, fold)
    source = str(Path(manifest).resolve())
    report = {
        "manifest": source,
        "splits_file": str(Path(splits).resolve()) if splits else None,
        "protocol": protocol,
        "fold": fold_name,
        "fold_order": fold_order,
        "shard_mb": shard_mb,
        "min_shards": min_shards,
        "sample_rate": shards.SAMPLE_RATE,
        "silence_floor_dbfs": silence_floor_dbfs,
        "workers": workers,
        "splits": {},
    }
    for split, rows in split_rows.items():
        report["splits"][split] = shard_split(
            rows,
            split,
            out_dir,
            shard_mb=shard_mb,
            min_shards=min_shards,
            workers=workers,
            silence_floor_dbfs=silence_floor_dbfs,
            source_manifest=source,
            progress=progress,
        )
    report["seconds"] = round(time.perf_counter() - started, 3)
    shards.write_report(out_dir, report)
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bimer_tf.data.shard",
        description="Write a manifest (and the splits of one fold) as sharded TFRecords "
        "of 16 kHz mono PCM16 audio, with an index per split (docs/data-formats.md).",
    )
    parser.add_argument("--manifest", required=True, help="manifest.jsonl")
    parser.add_argument(
        "--splits",
        help="splits.json: shard the fold's train/val/test; without it the whole manifest "
        f"becomes one split named '{shards.ALL_SPLIT}'",
    )
    folds = parser.add_mutually_exclusive_group()
    folds.add_argument("--fold", help="fold name in --splits (default: the first)")
    folds.add_argument(
        "--all-folds",
        action="store_true",
        help="every fold of --splits, each into OUT/<fold>/ (for crossval: data.shards=OUT/{fold})",
    )
    parser.add_argument("--out", required=True, help="output folder (or gs://... URL)")
    parser.add_argument(
        "--shard-mb",
        type=float,
        default=shards.DEFAULT_SHARD_MB,
        help=f"target shard size in MiB (default {shards.DEFAULT_SHARD_MB:g})",
    )
    parser.add_argument(
        "--min-shards",
        type=int,
        default=1,
        help="at least this many shards per split (e.g. a multiple of the workers that read them)",
    )
    parser.add_argument("--workers", type=int, help="decoding processes (default: the CPUs available)")
    parser.add_argument(
        "--silence-floor-dbfs",
        type=float,
        default=SILENCE_FLOOR_DBFS,
        help=f"clips whose peak is below this are skipped as silent (default {SILENCE_FLOOR_DBFS:g})",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if (args.fold or args.all_folds) and not args.splits:
        raise InputError("--fold and --all-folds need --splits (the splits.json that names the folds)")
    folds = [args.fold]
    if args.all_folds:
        folds = [fold.name for fold in read_splits(args.splits)[1]]
    for fold in folds:
        out = shards.join(args.out, fold) if args.all_folds else args.out
        if args.all_folds:
            print(f"fold {fold} -> {out}")
        report = shard_manifest(
            args.manifest,
            out,
            splits=args.splits,
            fold=fold,
            shard_mb=args.shard_mb,
            min_shards=args.min_shards,
            workers=args.workers,
            silence_floor_dbfs=args.silence_floor_dbfs,
            progress=not args.no_progress,
            fold_order=folds if args.all_folds else None,
        )
        print_report(report, out)
    return 0


def print_report(report: dict, out: str) -> None:
    for split, counts in report["splits"].items():
        print(
            f"{split}: read {counts['read']} = written {counts['written']} + skipped {counts['skipped']} "
            f"in {counts['shards']} shard(s); per class {counts['per_class']}"
        )
        for item in counts["skipped_items"][:5]:
            print(f"  skipped {item['id']}: {item['reason']}")
        if counts["skipped"] > 5:
            print(f"  ... {counts['skipped'] - 5} more in {shards.join(out, shards.REPORT_NAME)}")
    print(f"shards and indexes in {out} ({report['seconds']:.1f} s)")


if __name__ == "__main__":
    from bimer_tf.cli import quiet_startup, run_main

    quiet_startup()
    raise SystemExit(run_main(main))
