"""The manifest and splits contract."""

import json
import os

import pytest

from bimer_tf.data.manifest import (
    MANIFEST_FIELDS,
    Fold,
    make_row,
    read_manifest,
    read_splits,
    select_fold,
    write_manifest,
    write_splits,
)
from bimer_tf.errors import InputError


def test_audio_paths_are_stored_relative_to_the_manifest(tmp_path, monkeypatch):
    (tmp_path / "corpus").mkdir()
    wav = tmp_path / "corpus" / "a.wav"
    wav.write_bytes(b"RIFF")
    monkeypatch.chdir(tmp_path)
    rows = [
        make_row("cwd-relative", "sad", audio="corpus/a.wav", corpus="t"),
        make_row("absolute", "sad", audio=str(wav), corpus="t"),
        make_row("text-only", "sad", text="hi", corpus="t"),
    ]
    manifest = write_manifest(rows, tmp_path / "out" / "deep" / "manifest.jsonl")
    stored = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert stored[0]["audio"] == stored[1]["audio"] == os.path.join("..", "..", "corpus", "a.wav")
    assert stored[2]["audio"] is None
    assert list(stored[0]) == list(MANIFEST_FIELDS)
    monkeypatch.chdir("/")
    back = read_manifest(manifest)
    assert back[0]["audio"] == back[1]["audio"] == str(wav.resolve())
    assert back[0]["origin"] == "cwd-relative" and back[0]["augmentation"] is None


def test_rewriting_a_read_manifest_elsewhere_keeps_paths_valid(tmp_path):
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"RIFF")
    first = write_manifest([make_row("x", "sad", audio=str(wav), corpus="t")], tmp_path / "m1" / "manifest.jsonl")
    second = write_manifest(read_manifest(first), tmp_path / "m2" / "sub" / "manifest.jsonl")
    assert read_manifest(second)[0]["audio"] == str(wav.resolve())


def test_bad_manifests_name_the_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "a"}\n')
    with pytest.raises(InputError, match=r"m.jsonl:1: missing manifest fields"):
        read_manifest(path)
    path.write_text("not json\n")
    with pytest.raises(InputError, match=r"m.jsonl:1: not valid JSON"):
        read_manifest(path)
    row = json.dumps(make_row("dup", "sad", corpus="t"))
    path.write_text(row + "\n" + row + "\n")
    with pytest.raises(InputError, match="duplicate ids"):
        read_manifest(path)
    with pytest.raises(InputError, match="manifest not found"):
        read_manifest(tmp_path / "missing.jsonl")


def test_splits_round_trip_and_fold_manifests(tmp_path):
    rows = [make_row(f"r{i}", "sad", text="t", corpus="t") for i in range(5)]
    fold = Fold("f1", ["r0", "r1", "r2"], ["r3"], ["r4"])
    path = write_splits(rows, "speaker-folds", [fold], tmp_path)
    protocol, folds = read_splits(path)
    assert protocol == "speaker-folds" and folds == [fold]
    assert [r["id"] for r in read_manifest(tmp_path / "f1" / "train.jsonl")] == ["r0", "r1", "r2"]
    assert select_fold(folds, None) == fold
    with pytest.raises(InputError, match="fold 'f9' not found; available: f1"):
        select_fold(folds, "f9")
    with pytest.raises(InputError, match="ids not in the manifest"):
        write_splits(rows, "x", [Fold("bad", ["nope"], [], [])], tmp_path / "bad")
