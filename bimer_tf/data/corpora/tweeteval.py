"""TweetEval (cardiffnlp/tweeteval `datasets/`), text only, with its official split.

A task folder holds `mapping.txt` (label id TAB name, possibly without a
final newline) and, per split (train, val, test), `<split>_text.txt` and
`<split>_labels.txt` aligned line by line. The root may be the `datasets`
folder holding task folders (the task is chosen with `task`, default
emotion) or a task folder itself (the task is then named after the folder
unless given).

Ids are `tweeteval-<task>-<split>-<line index, from 0, six digits>`; tweets
have no speaker and no session.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bimer_tf.data.corpora import (
    LABEL_NOT_IN_CLASSES,
    MALFORMED_LINE,
    NO_LABEL,
    NO_TEXT,
    CorpusListing,
    Utterance,
    read_lines,
)
from bimer_tf.errors import InputError

NAME = "tweeteval"
HAS_AUDIO = False
ROOT_HINT = "a TweetEval task folder (mapping.txt, <split>_text.txt, <split>_labels.txt) or its parent"
SPLITS = ("train", "val", "test")
DEFAULT_TASK = "emotion"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--task",
        default=None,
        help=f"task folder under --root (default: {DEFAULT_TASK}, or the name of --root "
        "when it is a task folder itself)",
    )


def read_tweeteval(root: str | Path, *, task: str | None = None) -> CorpusListing:
    """Lists the tweets of the three official splits with their mapped labels."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"TweetEval root not found: {root}; expected {ROOT_HINT}")
    if (root / "mapping.txt").is_file():
        task_dir, task = root, task or root.name
    else:
        task = task or DEFAULT_TASK
        task_dir = root / task
        if not (task_dir / "mapping.txt").is_file():
            raise InputError(
                f"{root} does not look like TweetEval: neither {root / 'mapping.txt'} nor "
                f"{task_dir / 'mapping.txt'} exists; expected {ROOT_HINT}"
            )
    mapping = _read_mapping(task_dir / "mapping.txt")
    listing = CorpusListing(NAME, task_dir, {"task": task})
    for split in SPLITS:
        texts = _split_file(task_dir, split, "text")
        labels = _split_file(task_dir, split, "labels")
        for index in range(max(len(texts), len(labels))):
            item_id = f"tweeteval-{task}-{split}-{index:06d}"
            line = f"{split}_labels.txt:{index + 1}"
            if index >= len(labels):
                listing.skip(item_id, NO_LABEL, f"{split}_labels.txt has only {len(labels)} lines")
                continue
            raw_label = labels[index].strip()
            label = mapping.get(raw_label)
            if label is None:
                reason = LABEL_NOT_IN_CLASSES if raw_label.isdigit() else MALFORMED_LINE
                listing.skip(
                    item_id, reason,
                    f"{line}: {raw_label!r} is not a label id of mapping.txt ({', '.join(mapping)})",
                    label=raw_label or None,
                )
                continue
            text = texts[index].strip() if index < len(texts) else None
            if not text:
                detail = f"{split}_text.txt line {index + 1} is empty" if text is not None else (
                    f"{split}_text.txt has only {len(texts)} lines"
                )
                listing.skip(item_id, NO_TEXT, detail, label=label)
                continue
            listing.utterances.append(
                Utterance(id=item_id, label=label, text=text, speaker=None, session=None, split=split)
            )
    return listing


def _read_mapping(path: Path) -> dict[str, str]:
    """'0<TAB>anger' lines -> {'0': 'anger'}; a bad mapping is fatal, not per-item."""
    mapping = {}
    for number, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        parts = line.strip().split("\t")
        if len(parts) != 2 or not parts[0].strip().isdigit() or not parts[1].strip():
            raise InputError(f"{path}:{number}: expected '<id><TAB><name>', got {line!r}")
        mapping[parts[0].strip()] = parts[1].strip()
    if not mapping:
        raise InputError(f"{path} holds no labels; expected lines '<id><TAB><name>'")
    return mapping


def _split_file(task_dir: Path, split: str, kind: str) -> list[str]:
    path = task_dir / f"{split}_{kind}.txt"
    if not path.is_file():
        raise InputError(
            f"{path} is missing; every TweetEval split needs {split}_text.txt and "
            f"{split}_labels.txt (copy it from cardiffnlp/tweeteval datasets/{task_dir.name}/)"
        )
    return read_lines(path)
