"""The sharded TFRecord format (`bimer_tf.data.shards`) and the shard command."""

import json

import numpy as np
import pytest

from bimer_tf.data import shards
from bimer_tf.data.manifest import Fold, make_row, write_manifest, write_splits
from bimer_tf.errors import InputError
from conftest import synth_tone


def rows_and_samples(count=7):
    """Rows with every kind of field value, and their samples (None: text-only)."""
    items = []
    for i in range(count):
        row = make_row(
            f"utt-{i:02d}", ["neutral", "angry", "sad"][i % 3], audio=f"/x/{i}.wav",
            text=["plain text", "ünïcödé ✓", "", None][i % 4], speaker=None if i % 2 else f"spk{i}",
            session=[None, 3, "ses-a"][i % 3], corpus="unit", augmentation=None if i % 3 else "speed",
            origin="utt-00" if i % 3 == 0 and i else None,
        )
        samples = None if i == 5 else synth_tone(0.1 + 0.01 * i, amplitude=0.2)
        items.append((row, samples))
    return items


def test_names():
    assert shards.shard_name("train", 2, 16) == "train-00002-of-00016.tfrecord"
    assert shards.shard_names("val", 2) == ["val-00000-of-00002.tfrecord", "val-00001-of-00002.tfrecord"]
    assert shards.parse_shard_name("gs://bucket/x/test-00003-of-00004.tfrecord") == ("test", 3, 4)
    assert shards.parse_shard_name("train.index.json") is None
    assert shards.index_name("all") == "all.index.json"
    with pytest.raises(InputError, match="cannot name shard files"):
        shards.shard_name("train/../x", 0, 1)


def test_an_example_decodes_to_its_row_and_samples():
    for row, samples in rows_and_samples():
        decoded, pcm = shards.decode_example(shards.encode_example(row, samples))
        assert list(decoded) == list(row) + ["duration_s"]
        for name in ("id", "label", "speaker", "session", "corpus", "origin", "augmentation"):
            assert decoded[name] == row[name], name  # nulls, ints and strings survive
        assert decoded["text"] == (row["text"] or None)  # empty text reads back as null
        if samples is None:
            assert pcm is None and decoded["audio"] is None and decoded["duration_s"] == 0.0
        else:
            np.testing.assert_array_equal(shards.to_float(pcm), shards.to_float(shards.to_pcm16(samples)))
            assert decoded["duration_s"] == pytest.approx(len(samples) / 16000)
        assert decoded == shards.canonical_row(row, samples)


def test_pcm16_samples_are_stored_exactly():
    pcm = np.array([-32768, -1, 0, 1, 32767], dtype=np.int16)
    np.testing.assert_array_equal(shards.to_pcm16(shards.to_float(pcm)), pcm)  # what a PCM16 WAV decodes to
    loud = shards.to_pcm16(np.array([0.5, -2.0], dtype=np.float32))  # clipping audio is scaled down
    assert loud.tolist() == [round(0.5 * 0.999 / 2 * 32768), round(-0.999 * 32768)]
    wav = shards.pcm16_wav(pcm)
    assert wav[:4] == b"RIFF" and wav[44:] == pcm.astype("<i2").tobytes()


def test_required_fields_and_foreign_examples_are_refused():
    with pytest.raises(InputError, match="'label' is empty"):
        shards.encode_example(make_row("a", "", corpus="c"), None)
    from tensorflow.core.example import example_pb2

    with pytest.raises(InputError, match="not a bimer_tf shard example"):
        shards.decode_example(example_pb2.Example().SerializeToString())


def test_a_split_reads_back_as_written(tmp_path):
    items = rows_and_samples()
    index = shards.write_split(tmp_path, "train", items, count=3, source_manifest="m.jsonl")
    assert [s["file"] for s in index["shards"]] == shards.shard_names("train", 3)
    assert [s["rows"] for s in index["shards"]] == [2, 2, 3]
    assert index["per_class"] == {"angry": 2, "neutral": 3, "sad": 2}
    assert index["per_class_inputs"]["sad"] == {"audio_text": 0, "audio": 1, "text": 1, "none": 0}
    back = list(shards.read_split(tmp_path, "train"))
    assert [row["id"] for row, _ in back] == [row["id"] for row, _ in items]
    for (row, samples), (decoded, pcm) in zip(items, back):
        assert decoded == shards.canonical_row(row, samples)
        if samples is not None:
            np.testing.assert_array_equal(pcm, shards.to_pcm16(samples))
    assert shards.verify_split(tmp_path, "train") == index
    assert shards.read_index(tmp_path, "train") == index


def test_rows_sha256_does_not_depend_on_shard_boundaries_or_order(tmp_path):
    items = rows_and_samples()
    one = shards.write_split(tmp_path / "one", "train", items, count=1)
    three = shards.write_split(tmp_path / "three", "train", list(reversed(items)), count=3)
    assert one["rows_sha256"] == three["rows_sha256"]
    halves = [shards.SplitSummary(), shards.SplitSummary()]
    for position, (row, samples) in enumerate(items):
        halves[position % 2].add(shards.canonical_row(row, samples))
    merged = halves[1].merge(halves[0]).index("train", one["shards"], None)
    assert merged["rows_sha256"] == one["rows_sha256"] and merged["per_class_inputs"] == one["per_class_inputs"]
    changed = [(dict(items[0][0], text="other"), items[0][1])] + items[1:]
    assert shards.write_split(tmp_path / "changed", "train", changed, count=1)["rows_sha256"] != one["rows_sha256"]
    # The definition, spelled out: row digests in id order, one per line.
    lines = "".join(
        shards.row_sha256(shards.canonical_row(r, s)) + "\n" for r, s in sorted(items, key=lambda i: i[0]["id"])
    )
    import hashlib

    assert hashlib.sha256(lines.encode()).hexdigest() == one["rows_sha256"]


def test_index_checks_name_the_file_and_the_remedy(tmp_path):
    shards.write_split(tmp_path, "val", rows_and_samples(4), count=2)
    with pytest.raises(InputError, match=r"no shard index .*test\.index\.json.*python -m bimer_tf\.data\.shard"):
        shards.read_index(tmp_path, "test")
    (tmp_path / "val-00001-of-00002.tfrecord").unlink()
    with pytest.raises(InputError, match=r"val\.index\.json lists shard files that are missing: \['val-00001-of-00002"):
        shards.read_index(tmp_path, "val")
    index = shards.read_index(tmp_path, "val", check_files=False)
    for change, message in (
        ({"rows": 5}, "adds up to 4, not rows=5"),
        ({"shards": [{"file": "val-00000-of-00001.tfrecord", "rows": 4}, index["shards"][1]]}, "should be named"),
        ({"rows_sha256": "abc"}, "not a sha256"),
        ({"split": "../x"}, "not a split name"),
    ):
        broken = {**index, **change}
        (tmp_path / "val.index.json").write_text(json.dumps(broken))
        with pytest.raises(InputError, match=message) as error:
            shards.read_index(tmp_path, "val", check_files=False)
        assert "val.index.json" in str(error.value) and "python -m bimer_tf.data.shard" in str(error.value)
    (tmp_path / "val.index.json").write_text("{not json")
    with pytest.raises(InputError, match="val.index.json is not valid JSON"):
        shards.read_index(tmp_path, "val")


def test_plan_and_ranges():
    mb = shards.MB
    assert shards.plan_shards(300 * mb, 10_000) == 3  # ~128 MiB each by default
    assert shards.plan_shards(300 * mb, 10_000, shard_mb=64) == 5
    assert shards.plan_shards(1000, 10_000, min_shards=4) == 4
    assert shards.plan_shards(300 * mb, 2) == 2  # never more shards than rows
    assert shards.plan_shards(0, 0) == 1
    with pytest.raises(InputError, match="--shard-mb"):
        shards.plan_shards(1, 1, shard_mb=0)
    ranges = shards.shard_ranges(10, 3)
    assert [len(r) for r in ranges] == [3, 3, 4] and sum(map(list, ranges), []) == list(range(10))


@pytest.fixture
def messy_corpus(tmp_path):
    """Good clips, one at 8 kHz stereo (resampled), a text-only row and three bad clips."""
    import soundfile

    wav = tmp_path / "wav"
    wav.mkdir()
    rows = []
    for i, label in enumerate(["neutral", "angry", "sad", "happy"] * 2):
        path = wav / f"good{i}.wav"
        soundfile.write(path, synth_tone(0.5, freq=200 + 40 * i), 16000, subtype="PCM_16")
        rows.append(make_row(f"good{i}", label, audio=str(path), text="hello there", corpus="unit"))
    stereo = np.stack([synth_tone(0.5, 8000), synth_tone(0.5, 8000)], axis=1)
    soundfile.write(wav / "stereo8k.wav", stereo, 8000, subtype="PCM_16")
    rows.append(make_row("stereo8k", "sad", audio=str(wav / "stereo8k.wav"), text="hi", corpus="unit"))
    rows.append(make_row("textonly", "happy", text="only words", corpus="unit"))
    (wav / "corrupt.wav").write_bytes(b"RIFF\x00\x00not a wav")
    soundfile.write(wav / "silent.wav", np.zeros(8000, np.float32), 16000, subtype="PCM_16")
    rows += [
        make_row("corrupt", "sad", audio=str(wav / "corrupt.wav"), text="x", corpus="unit"),
        make_row("silent", "sad", audio=str(wav / "silent.wav"), text="x", corpus="unit"),
        make_row("missing", "sad", audio=str(wav / "missing.wav"), text="x", corpus="unit"),
    ]
    manifest = write_manifest(rows, tmp_path / "manifest.jsonl")
    ids = [row["id"] for row in rows]
    folds = [Fold("f1", ids[:9] + ids[10:], ids[:2], [ids[9]]), Fold("f2", ids[2:], ids[:2], ids[:2])]
    write_splits(rows, "unit", folds, tmp_path / "splits")
    return manifest, tmp_path / "splits" / "splits.json"


def test_the_command_reports_bad_clips_and_counts_add_up(messy_corpus, tmp_path, capsys):
    from bimer_tf.data.shard import main

    manifest, _ = messy_corpus
    assert main(["--manifest", str(manifest), "--out", str(tmp_path / "out"), "--workers", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "all: read 13 = written 10 + skipped 3 in 1 shard(s)" in out
    report = json.loads((tmp_path / "out" / shards.REPORT_NAME).read_text())
    counts = report["splits"]["all"]
    assert counts["read"] == counts["written"] + counts["skipped"] == 13
    reasons = {item["id"]: item["reason"] for item in counts["skipped_items"]}
    assert set(reasons) == {"corrupt", "silent", "missing"}
    assert "silent" in reasons["silent"] and "not found" in reasons["missing"]
    assert counts["skipped_reasons"] == {"cannot decode": 1, "silent": 1, "not found": 1}
    rows = {row["id"]: (row, pcm) for row, pcm in shards.read_split(tmp_path / "out", "all")}
    assert rows["textonly"][1] is None and rows["textonly"][0]["audio"] is None
    assert len(rows["stereo8k"][1]) == 8000  # 0.5 s resampled to 16 kHz mono
    assert report["protocol"] is None and report["fold"] is None


def test_every_fold_for_crossval(messy_corpus, tmp_path):
    from bimer_tf.config import load_config
    from bimer_tf.data.shard import main
    from bimer_tf.evaluation.crossval import shard_fold_list

    manifest, splits = messy_corpus
    out = tmp_path / "folds"
    main(["--manifest", str(manifest), "--splits", str(splits), "--all-folds", "--out", str(out),
          "--min-shards", "2", "--workers", "1", "--no-progress"])
    for fold in ("f1", "f2"):
        report = shards.read_report(out / fold)
        assert report["fold"] == fold and report["protocol"] == "unit"
        for split in ("train", "val", "test"):
            index = shards.read_index(out / fold, split)
            assert len(index["shards"]) == (2 if index["rows"] >= 2 else 1)
    assert shards.read_index(out / "f1", "test")["rows"] == 1
    config = load_config(overrides=["data.format=tfrecord", f"data.shards={out}/{{fold}}"])
    assert shard_fold_list(config) == (f"{out}/{{fold}}", "unit", [Fold("f1", [], [], []), Fold("f2", [], [], [])])
    single = load_config(overrides=["data.format=tfrecord", f"data.shards={out}/f1"])
    with pytest.raises(InputError, match="--all-folds"):
        shard_fold_list(single)
