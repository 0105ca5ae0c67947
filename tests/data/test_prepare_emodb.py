"""Emo-DB reader: labels decoded from the official file-name code, bad names reported, the real copy."""

import csv
from pathlib import Path

import pytest
import soundfile
from conftest import synth_tone

from bimer_tf.data.corpora import emodb, ravdess
from bimer_tf.data.corpora.emodb import read_emodb
from bimer_tf.data.manifest import read_manifest
from bimer_tf.data.prepare import prepare
from bimer_tf.data.split import split_manifest
from bimer_tf.errors import InputError

# name -> sample rate; the copy used here is 16 kHz, the original distribution 16 kHz too,
# one 22.05 kHz file (like the GitHub copy this one was made from) is converted.
GOOD = {
    "03a01Wa.wav": 16000,  # angry
    "03a01Nc.wav": 16000,  # neutral
    "08b10Fd.wav": 22050,  # happy, converted
    "08a02Tb.wav": 16000,  # sad
    "09a04La.wav": 16000,  # bored
    "09a05Ea.wav": 16000,  # disgust
    "10a07Aa.wav": 16000,  # fearful
}
BAD = {
    "03a01Xa.wav": "unknown emotion code X",
    "99a01Wa.wav": "unknown speaker 99",
    "03c01Wa.wav": "unknown sentence code c01",
    "take2.wav": "not an Emo-DB name",
}
EMPTY = "10b01Wa.wav"  # coded, but 0 bytes: left out by the audio stage


def write_metadata(root: Path, rows: list[dict]) -> None:
    columns = ["file", "speaker", "text_code", "emotion_code", "text", "cut_at_2s"]
    with open(root / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def emodb_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("emodb")
    (root / "wav").mkdir()
    for number, (name, rate) in enumerate({**GOOD, **dict.fromkeys(BAD, 16000)}.items()):
        tone = synth_tone(0.3, rate, freq=150.0 + 20 * number)
        soundfile.write(root / "wav" / name, tone, rate, subtype="PCM_16")
    (root / "wav" / EMPTY).write_bytes(b"")
    (root / "README.txt").write_text("not audio")
    rows = [
        {
            "file": f"wav/{name}", "speaker": name[:2], "text_code": name[2:5],
            "emotion_code": name[5], "text": emodb.SENTENCES[name[2:5]],
            "cut_at_2s": "yes" if name.startswith("03") else "no",
        }
        for name in GOOD
    ]
    rows[1]["emotion_code"] = "W"  # metadata says anger, the file name says neutral
    write_metadata(root, rows)
    return root


@pytest.fixture(scope="module")
def prepared(emodb_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    return out, prepare("emodb", emodb_root, out, workers=1, progress=False)


def test_labels_from_the_file_names(prepared):
    out, report = prepared
    assert (report["seen"], report["kept"], report["skipped"]) == (12, 7, 5)
    assert report["kept"] + report["skipped"] == report["seen"]
    kept = {label: counts["kept"] for label, counts in report["per_class"].items() if counts["kept"]}
    assert kept == {
        "neutral": 1, "angry": 1, "happy": 1, "sad": 1, "bored": 1, "disgust": 1, "fearful": 1,
    }
    rows = {row["id"]: row for row in read_manifest(out / "manifest.jsonl")}
    angry = rows["emodb-03a01Wa"]
    assert (angry["label"], angry["speaker"], angry["session"], angry["corpus"]) == (
        "angry", "emodb-03", None, "emodb",
    )
    assert angry["text"] == "Der Lappen liegt auf dem Eisschrank."
    assert rows["emodb-08b10Fd"]["text"] == "Die wird auf dem Platz sein, wo wir sie immer hinlegen."
    # The file name wins over a metadata.csv that disagrees.
    assert rows["emodb-03a01Nc"]["label"] == "neutral"
    # 16 kHz files stay in place, the 22.05 kHz one is converted.
    assert report["audio"] == {"in_place": 6, "converted": 1, "reused": 0}
    info = soundfile.info(rows["emodb-08b10Fd"]["audio"])
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert Path(rows["emodb-08b10Fd"]["audio"]) == (out / "audio" / "emodb-08" / "08b10Fd.wav").resolve()


def test_bad_names_are_reported_with_reasons(prepared):
    _, report = prepared
    items = {item["id"]: item for item in report["skipped_items"]}
    assert {i: item["reason"] for i, item in items.items()} == {
        "emodb-03a01Xa": "malformed file name",
        "emodb-99a01Wa": "malformed file name",
        "emodb-03c01Wa": "malformed file name",
        "wav/take2.wav": "malformed file name",
        "emodb-10b01Wa": "audio empty",
    }
    for name, reason in BAD.items():
        item_id = "wav/take2.wav" if name == "take2.wav" else f"emodb-{Path(name).stem}"
        assert reason in items[item_id]["detail"]
    assert report["skipped_by_reason"] == {"malformed file name": 4, "audio empty": 1}
    for table in ("per_class", "per_speaker", "per_session"):
        assert sum(counts["seen"] for counts in report[table].values()) == report["seen"]
        for counts in report[table].values():
            assert counts["kept"] + counts["skipped"] == counts["seen"]
    assert report["per_speaker"]["emodb-03"] == {"seen": 4, "kept": 2, "skipped": 2}


def test_metadata_is_only_cross_checked(emodb_root, prepared, tmp_path):
    _, report = prepared
    assert len(report["warnings"]) == 1
    assert "03a01Nc.wav" in report["warnings"][0] and "follow the file names" in report["warnings"][0]
    assert any(note.startswith("2 of the 8 validly named recordings") for note in report["notes"])
    # Without metadata.csv the same labels come out, with no note or warning.
    root = tmp_path / "plain"
    (root / "wav").mkdir(parents=True)
    for name in GOOD:
        (root / "wav" / name).symlink_to(emodb_root / "wav" / name)
    listing = read_emodb(root)
    assert sorted(u.label for u in listing.utterances) == sorted(emodb.EMOTIONS.values())
    assert (listing.warnings, listing.notes, listing.skipped) == ([], [], [])


def test_four_classes_are_spelled_as_the_other_corpora():
    # A 4-class model (RAVDESS, the default data.labels) scores these rows with
    # no --label-map; evaluation counts and leaves out the other three labels.
    assert set(emodb.FOUR_CLASSES) == set(ravdess.CLASS_SETS[4])
    assert set(emodb.EMOTIONS.values()) - set(ravdess.EMOTIONS.values()) == {"bored"}


def test_leave_one_speaker_out(prepared, tmp_path):
    out, _ = prepared
    # speaker-folds with one fold per speaker and one validation speaker.
    _, folds, _ = split_manifest(
        out / "manifest.jsonl", "speaker-folds", tmp_path, folds=4, val_speakers=1
    )
    speaker = {row["id"]: row["speaker"] for row in read_manifest(out / "manifest.jsonl")}
    tested = [{speaker[i] for i in fold.test} for fold in folds]
    assert tested == [{"emodb-03"}, {"emodb-08"}, {"emodb-09"}, {"emodb-10"}]
    assert all(len({speaker[i] for i in fold.val}) == 1 for fold in folds)


def test_root_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_emodb(tmp_path / "absent")
    (tmp_path / "wav").mkdir()
    (tmp_path / "wav" / "clip.wav").write_bytes(b"")
    with pytest.raises(InputError, match="does not look like Emo-DB"):
        read_emodb(tmp_path)


@pytest.mark.corpora
def test_real_emodb(corpora_root, tmp_path):
    root = corpora_root / "emodb"
    if not root.is_dir():
        pytest.skip(f"Emo-DB not found at {root}")
    report = prepare("emodb", root, tmp_path, workers=1, progress=False)
    assert (report["seen"], report["kept"], report["skipped"]) == (535, 535, 0)
    kept = {label: counts["kept"] for label, counts in report["per_class"].items()}
    assert kept == {
        "angry": 127, "bored": 81, "neutral": 79, "happy": 71, "fearful": 69, "sad": 62, "disgust": 46,
    }
    assert sum(kept[label] for label in emodb.FOUR_CLASSES) == 339
    assert len(report["per_speaker"]) == 10
    assert report["warnings"] == []
    assert any(note.startswith("410 of the 535 validly named recordings") for note in report["notes"])
    # The copy is already 16 kHz mono PCM16: nothing is converted.
    assert report["audio"] == {"in_place": 535, "converted": 0, "reused": 0}
