"""The data of one run: the manifest rows of each split of the chosen fold, or
(`data.format: tfrecord`) the sharded TFRecords of each split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bimer_tf.config import ExperimentConfig
from bimer_tf.data import shards
from bimer_tf.data.manifest import SPLIT_NAMES, Fold, read_manifest, read_splits, select_fold
from bimer_tf.errors import InputError

DATA_FORMATS = ("manifest", "tfrecord")
FOLD_FIELD = "{fold}"


@dataclass
class ShardSplits:
    """Sharded TFRecords of a run: their folder and each split's checked index."""

    directory: str
    indexes: dict  # split name -> index (bimer_tf.data.shards)


@dataclass
class RunData:
    protocol: str
    fold: Fold
    splits: dict  # split name -> list of manifest rows (empty lists when reading shards)
    shards: ShardSplits | None = None


def data_format(config: ExperimentConfig) -> str:
    name = config.data.format
    if name not in DATA_FORMATS:
        raise InputError(f"unknown data.format '{name}'; choose {' or '.join(DATA_FORMATS)}")
    if name == "tfrecord" and not config.data.shards:
        raise InputError(
            "data.format=tfrecord needs data.shards: the folder `python -m bimer_tf.data.shard "
            "--splits ... --out DIR` wrote (a local path or gs://...)"
        )
    return name


def splits_path(config: ExperimentConfig) -> tuple[Path, Path]:
    """(manifest, splits.json) of a config, generating the demo corpus if none is named."""
    data = config.data
    if data.manifest is None:
        from bimer_tf.data.demo import ensure_demo_corpus

        manifest = Path(ensure_demo_corpus(data.demo_dir, labels=tuple(data.labels)))
    else:
        manifest = Path(data.manifest)
    return manifest, Path(data.splits) if data.splits else manifest.parent / "splits.json"


def resolve_data(config: ExperimentConfig) -> RunData:
    """Reads the manifest and its splits (generating the demo corpus if none is named),
    or the shards' indexes when `data.format` is tfrecord."""
    if data_format(config) == "tfrecord":
        return resolve_shards(config)
    manifest, splits_file = splits_path(config)
    protocol, folds = read_splits(splits_file)
    fold = select_fold(folds, config.data.fold)
    by_id = {row["id"]: row for row in read_manifest(manifest)}
    splits = {}
    for split in ("train", "val", "test"):
        # Augmented copies added by `split --aug-manifest` live in the fold's
        # own manifest beside splits.json, not in the corpus manifest.
        fold_manifest = splits_file.parent / fold.name / f"{split}.jsonl"
        if any(i not in by_id for i in getattr(fold, split)) and fold_manifest.is_file():
            for row in read_manifest(fold_manifest):
                by_id.setdefault(row["id"], row)
        missing = [i for i in getattr(fold, split) if i not in by_id]
        if missing:
            raise InputError(
                f"{splits_file}: fold '{fold.name}' {split} names ids missing from {manifest}: {missing[:3]}"
            )
        splits[split] = [by_id[i] for i in getattr(fold, split)]
    return RunData(config.data.protocol or protocol, fold, splits)


def shard_directory(config: ExperimentConfig, fold: str | None = None) -> str:
    """`data.shards`, with `{fold}` replaced by the fold (`data.fold` unless given)."""
    directory = config.data.shards
    if FOLD_FIELD in directory:
        fold = fold or config.data.fold
        if not fold:
            raise InputError(
                f"data.shards={directory} has a {FOLD_FIELD} field: set data.fold (or run "
                "`python -m bimer_tf.crossval`, which sets it for every fold)"
            )
        directory = directory.replace(FOLD_FIELD, fold)
    return directory


def shard_folds(config: ExperimentConfig) -> list[str]:
    """The folds of a `data.shards` that ends in `/{fold}` (for crossval): the
    folders `python -m bimer_tf.data.shard --all-folds` wrote, in the order of
    the splits file they came from."""
    pattern = config.data.shards.rstrip("/")
    root, _, last = pattern.rpartition("/")
    if last != FOLD_FIELD or FOLD_FIELD in root:
        raise InputError(
            f"data.shards={config.data.shards} names one fold; to cross-validate from shards, write "
            "every fold with `python -m bimer_tf.data.shard --splits S --all-folds --out ROOT` "
            f"and set data.shards=ROOT/{FOLD_FIELD}"
        )
    if shards.is_remote(root) or not Path(root).is_dir():
        raise InputError(f"cannot list the fold folders of data.shards={config.data.shards}: {root} is not a local folder")
    folds = [p.name for p in Path(root).iterdir() if (p / shards.index_name("train")).is_file()]
    if not folds:
        raise InputError(f"{root} has no fold folders holding shards; {shards.SHARD_HINT} --splits S --all-folds")
    order = (shards.read_report(Path(root) / folds[0]) or {}).get("fold_order") or []
    return sorted(folds, key=lambda name: (order.index(name) if name in order else len(order), name))


def resolve_shards(config: ExperimentConfig) -> RunData:
    """The shards' indexes of train/val/test (checked, and their files present)."""
    directory = shard_directory(config)
    report = shards.read_report(directory) or {}
    written_fold = report.get("fold")
    if config.data.fold and written_fold and config.data.fold != written_fold:
        raise InputError(
            f"{directory} holds the shards of fold '{written_fold}', not data.fold={config.data.fold}; "
            f"write that fold with `python -m bimer_tf.data.shard ... --fold {config.data.fold}` "
            "or drop data.fold"
        )
    indexes = {}
    for split in SPLIT_NAMES:
        try:
            indexes[split] = shards.read_index(directory, split)
        except InputError as error:
            if not shards.is_remote(directory) and shards.ALL_SPLIT in shards.list_splits(directory):
                raise InputError(
                    f"{error}; {directory} holds one split '{shards.ALL_SPLIT}' (sharded without "
                    "--splits): training needs train/val/test, so shard with --splits"
                ) from None
            raise
    protocol = config.data.protocol or report.get("protocol") or "shards"
    fold = Fold(written_fold or config.data.fold or "shards", [], [], [])
    return RunData(protocol, fold, {split: [] for split in SPLIT_NAMES}, ShardSplits(directory, indexes))
