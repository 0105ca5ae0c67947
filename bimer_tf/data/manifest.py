"""The manifest and splits format: what corpus readers, augmentation, splitting
and the input pipeline exchange.

A manifest is JSON Lines, one utterance per line, with exactly the fields of
`MANIFEST_FIELDS`. `audio` is a path relative to the manifest's folder (or
null for text-only rows). Splits live beside the manifest in `splits.json`
plus per-fold `<fold>/{train,val,test}.jsonl` manifests whose audio paths are
rewritten relative to their own folder, so every manifest stands alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from bimer_tf.errors import InputError

MANIFEST_FIELDS = (
    "id",
    "audio",
    "text",
    "label",
    "speaker",
    "session",
    "corpus",
    "origin",
    "augmentation",
)
SPLIT_NAMES = ("train", "val", "test")


def make_row(
    id: str,
    label: str,
    *,
    audio: str | None = None,
    text: str | None = None,
    speaker: str | None = None,
    session: str | int | None = None,
    corpus: str,
    origin: str | None = None,
    augmentation: str | None = None,
) -> dict:
    """A manifest row with every field present, in contract order."""
    return {
        "id": id,
        "audio": audio,
        "text": text,
        "label": label,
        "speaker": speaker,
        "session": session,
        "corpus": corpus,
        "origin": origin if origin is not None else id,
        "augmentation": augmentation,
    }


def read_manifest(path: str | Path) -> list[dict]:
    """Reads a manifest; `audio` paths are resolved to absolute paths."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"manifest not found: {path} (create one with `python -m bimer_tf.data.prepare` "
            "or `python -m bimer_tf.data.demo`)"
        )
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise InputError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            missing = [f for f in MANIFEST_FIELDS if f not in row]
            if missing:
                raise InputError(f"{path}:{number}: missing manifest fields {missing}")
            if row["audio"] is not None:
                row["audio"] = str((path.parent / row["audio"]).resolve())
            rows.append(row)
    ids = [row["id"] for row in rows]
    if len(set(ids)) != len(ids):
        duplicates = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise InputError(f"{path}: duplicate ids {duplicates}")
    return rows


def write_manifest(rows: list[dict], path: str | Path) -> Path:
    """Writes rows; `audio` paths (absolute, or relative to the working
    directory) are stored relative to the manifest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = os.path.abspath(path.parent)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            row = {key: row.get(key) for key in MANIFEST_FIELDS}
            if row["audio"] is not None:
                row["audio"] = os.path.relpath(os.path.abspath(row["audio"]), base)
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


@dataclass
class Fold:
    name: str
    train: list[str]
    val: list[str]
    test: list[str]


def write_splits(rows: list[dict], protocol: str, folds: list[Fold], out_dir: str | Path) -> Path:
    """Writes splits.json and each fold's train/val/test manifests."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_id = {row["id"]: row for row in rows}
    for fold in folds:
        for split in SPLIT_NAMES:
            ids = getattr(fold, split)
            unknown = [i for i in ids if i not in by_id]
            if unknown:
                raise InputError(f"fold {fold.name}/{split}: ids not in the manifest: {unknown[:5]}")
            write_manifest([by_id[i] for i in ids], out_dir / fold.name / f"{split}.jsonl")
    splits_path = out_dir / "splits.json"
    document = {
        "protocol": protocol,
        "folds": [
            {"name": f.name, "train": f.train, "val": f.val, "test": f.test} for f in folds
        ],
    }
    splits_path.write_text(json.dumps(document, indent=1), encoding="utf-8")
    return splits_path


def read_splits(path: str | Path) -> tuple[str, list[Fold]]:
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"splits file not found: {path} (create one with `python -m bimer_tf.data.split`)"
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        folds = [
            Fold(f["name"], list(f["train"]), list(f["val"]), list(f["test"]))
            for f in document["folds"]
        ]
        return document["protocol"], folds
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise InputError(f"{path} is not a valid splits file ({error})") from None


def select_fold(folds: list[Fold], name: str | None) -> Fold:
    if name is None:
        return folds[0]
    for fold in folds:
        if fold.name == name:
            return fold
    raise InputError(f"fold '{name}' not found; available: {', '.join(f.name for f in folds)}")
