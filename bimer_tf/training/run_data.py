"""The data of one run: the manifest rows of each split of the chosen fold."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bimer_tf.config import ExperimentConfig
from bimer_tf.data.manifest import Fold, read_manifest, read_splits, select_fold
from bimer_tf.errors import InputError


@dataclass
class RunData:
    protocol: str
    fold: Fold
    splits: dict  # split name -> list of manifest rows


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
    """Reads the manifest and its splits (generating the demo corpus if none is named)."""
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
