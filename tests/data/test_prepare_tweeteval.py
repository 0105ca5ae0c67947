"""TweetEval reader: mapping without a final newline, bad label lines, the official split."""

import json
from pathlib import Path

import pytest

from bimer_tf.data.corpora.tweeteval import read_tweeteval
from bimer_tf.data.manifest import read_manifest
from bimer_tf.data.prepare import prepare
from bimer_tf.errors import InputError

MAPPING = "0\tanger\n1\tjoy\n2\toptimism\n3\tsadness"  # no final newline, as upstream


def _write_task(folder: Path, splits: dict[str, tuple[list[str], list[str]]]) -> Path:
    folder.mkdir(parents=True)
    (folder / "mapping.txt").write_text(MAPPING, encoding="utf-8")
    for split, (texts, labels) in splits.items():
        (folder / f"{split}_text.txt").write_text("".join(t + "\n" for t in texts), encoding="utf-8")
        (folder / f"{split}_labels.txt").write_text("".join(l + "\n" for l in labels), encoding="utf-8")
    return folder


@pytest.fixture
def datasets(tmp_path) -> Path:
    """A `datasets/` folder with an emotion task holding one of each kind of bad line."""
    _write_task(
        tmp_path / "datasets" / "emotion",
        {
            "train": (
                [
                    "“Worry is a down payment on a problem you may never have'.  #motivation ",
                    "@user why would you do that?! #angry",
                    "so tired\u2028of everything",  # a line separator inside a tweet
                    "label seven",
                    "label x",
                    "   ",
                    "more text than labels",
                ],
                ["2", "0", "3", "7", "x", "1"],
            ),
            "val": (["Best day ever #blessed"], ["1", "3"]),
            "test": (["I can't believe it", "Good morning!"], ["0", "1"]),
        },
    )
    return tmp_path / "datasets"


def test_counts_labels_texts_and_ids(datasets, tmp_path):
    report = prepare("tweeteval", datasets, tmp_path / "out", progress=False)
    assert (report["seen"], report["kept"], report["skipped"]) == (11, 6, 5)
    rows = {row["id"]: row for row in read_manifest(tmp_path / "out" / "manifest.jsonl")}
    assert sorted(rows) == [
        "tweeteval-emotion-test-000000", "tweeteval-emotion-test-000001",
        "tweeteval-emotion-train-000000", "tweeteval-emotion-train-000001",
        "tweeteval-emotion-train-000002", "tweeteval-emotion-val-000000",
    ]
    first = rows["tweeteval-emotion-train-000000"]
    assert first["text"] == "“Worry is a down payment on a problem you may never have'.  #motivation"
    assert (first["label"], first["speaker"], first["session"], first["audio"]) == ("optimism", None, None, None)
    assert rows["tweeteval-emotion-train-000002"]["text"] == "so tired\u2028of everything"
    assert rows["tweeteval-emotion-test-000001"]["label"] == "joy"
    assert first["corpus"] == "tweeteval" and first["origin"] == first["id"]


def test_bad_lines_are_reported(datasets):
    listing = read_tweeteval(datasets)
    reasons = {s.id: s.reason for s in listing.skipped}
    assert reasons == {
        "tweeteval-emotion-train-000003": "label not in class map",  # 7
        "tweeteval-emotion-train-000004": "malformed line",  # x
        "tweeteval-emotion-train-000005": "no transcript",  # blank tweet
        "tweeteval-emotion-train-000006": "no label",  # more texts than labels
        "tweeteval-emotion-val-000001": "no transcript",  # more labels than texts
    }


def test_official_split(datasets, tmp_path):
    prepare("tweeteval", datasets, tmp_path, progress=False)
    split = json.loads((tmp_path / "official_split.json").read_text())
    assert split == {
        "train": [f"tweeteval-emotion-train-{i:06d}" for i in range(3)],
        "val": ["tweeteval-emotion-val-000000"],
        "test": ["tweeteval-emotion-test-000000", "tweeteval-emotion-test-000001"],
    }


def test_root_may_be_the_task_folder(datasets):
    from_parent = read_tweeteval(datasets, task="emotion")
    from_task = read_tweeteval(datasets / "emotion")
    assert [u.id for u in from_task.utterances] == [u.id for u in from_parent.utterances]
    assert from_task.options == {"task": "emotion"}


def test_root_errors(datasets, tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_tweeteval(tmp_path / "absent")
    with pytest.raises(InputError, match=r"does not look like TweetEval.*sentiment/mapping.txt"):
        read_tweeteval(datasets, task="sentiment")
    (datasets / "emotion" / "val_text.txt").unlink()
    with pytest.raises(InputError, match="val_text.txt is missing"):
        read_tweeteval(datasets)
    (datasets / "emotion" / "mapping.txt").write_text("0 anger\n")
    with pytest.raises(InputError, match=r"mapping.txt:1: expected '<id><TAB><name>'"):
        read_tweeteval(datasets)


@pytest.mark.corpora
def test_real_tweeteval_emotion(corpora_root, tmp_path):
    report = prepare("tweeteval", corpora_root / "tweeteval", tmp_path, progress=False)
    assert (report["seen"], report["kept"], report["skipped"]) == (5052, 5052, 0)
    kept = {label: counts["kept"] for label, counts in report["per_class"].items()}
    assert kept == {
        "anger": 1400 + 160 + 558, "joy": 708 + 97 + 358,
        "optimism": 294 + 28 + 123, "sadness": 855 + 89 + 382,
    }
    split = json.loads((tmp_path / "official_split.json").read_text())
    assert {name: len(ids) for name, ids in split.items()} == {"train": 3257, "val": 374, "test": 1421}
    rows = read_manifest(tmp_path / "manifest.jsonl")
    assert rows[0]["id"] == "tweeteval-emotion-train-000000" and rows[0]["label"] == "optimism"
