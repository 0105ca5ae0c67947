"""RAVDESS reader: names decoded into labels, 48 kHz originals converted, the real 16 kHz copy."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import synth_tone

from bimer_tf.data.corpora.ravdess import parse_actors, read_ravdess
from bimer_tf.data.manifest import read_manifest
from bimer_tf.data.prepare import prepare
from bimer_tf.errors import InputError

# name -> (sample rate, channels): a small original-style tree (48 kHz) with a
# few files already at 16 kHz and one stereo take.
FILES = {
    "Actor_01/03-01-01-01-01-01-01.wav": (48000, 1),  # neutral
    "Actor_01/03-01-02-01-01-01-01.wav": (48000, 1),  # calm
    "Actor_01/03-01-03-02-02-01-01.wav": (48000, 1),  # happy, strong, statement 02
    "Actor_01/03-01-04-01-02-01-01.wav": (48000, 2),  # sad, stereo
    "Actor_01/03-01-05-01-01-02-01.wav": (48000, 1),  # angry
    "Actor_01/03-01-06-01-01-01-01.wav": (48000, 1),  # fearful
    "Actor_02/03-01-04-01-01-01-02.wav": (16000, 1),  # sad, already 16 kHz
    "Actor_02/03-01-05-02-02-02-02.wav": (16000, 1),  # angry
    "Actor_02/03-01-08-01-01-01-02.wav": (16000, 1),  # surprised
    "Actor_02/03-02-03-01-01-01-02.wav": (16000, 1),  # song, not speech
    "Actor_02/03-01-09-01-01-01-02.wav": (16000, 1),  # emotion code 09 does not exist
    "Actor_02/take2.wav": (16000, 1),  # not a coded name
}


@pytest.fixture(scope="module")
def ravdess_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ravdess") / "Audio_Speech_Actors_01-24"
    for number, (name, (rate, channels)) in enumerate(FILES.items()):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tone = synth_tone(0.3, rate, freq=150.0 + 20 * number)
        samples = np.stack([tone, 0.5 * tone], axis=1) if channels == 2 else tone
        soundfile.write(path, samples, rate, subtype="PCM_16")
    (root / "README.txt").write_text("not audio")
    return root


@pytest.fixture(scope="module")
def prepared(ravdess_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    return out, prepare("ravdess", ravdess_root, out, workers=1, progress=False)


def test_four_classes(ravdess_root, prepared):
    tmp_path, report = prepared
    assert (report["seen"], report["kept"], report["skipped"]) == (12, 6, 6)
    kept = {label: counts["kept"] for label, counts in report["per_class"].items() if counts["kept"]}
    assert kept == {"neutral": 1, "happy": 1, "sad": 2, "angry": 2}
    reasons = {item["id"]: item["reason"] for item in report["skipped_items"]}
    assert reasons == {
        "Actor_02/take2.wav": "malformed file name",
        "ravdess-03-01-02-01-01-01-01": "label not in class map",
        "ravdess-03-01-06-01-01-01-01": "label not in class map",
        "ravdess-03-01-08-01-01-01-02": "label not in class map",
        "ravdess-03-02-03-01-01-01-02": "not speech audio",
        "ravdess-03-01-09-01-01-01-02": "malformed file name",
    }
    assert report["per_speaker"]["Actor_01"] == {"seen": 6, "kept": 4, "skipped": 2}
    assert report["audio"] == {"in_place": 2, "converted": 4, "reused": 0}

    rows = {row["id"]: row for row in read_manifest(tmp_path / "manifest.jsonl")}
    happy = rows["ravdess-03-01-03-02-02-01-01"]
    assert (happy["label"], happy["speaker"], happy["session"]) == ("happy", "Actor_01", None)
    assert happy["text"] == "Dogs are sitting by the door"
    assert rows["ravdess-03-01-01-01-01-01-01"]["text"] == "Kids are talking by the door"
    # 48 kHz originals are converted into out/audio/, 16 kHz files stay in place.
    copy = Path(rows["ravdess-03-01-04-01-02-01-01"]["audio"])
    assert copy == (tmp_path / "audio" / "Actor_01" / "03-01-04-01-02-01-01.wav").resolve()
    info = soundfile.info(copy)
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert info.duration == pytest.approx(0.3, abs=0.01)
    in_place = Path(rows["ravdess-03-01-04-01-01-01-02"]["audio"])
    assert in_place == (ravdess_root / "Actor_02" / "03-01-04-01-01-01-02.wav").resolve()
    # The manifest stores paths relative to itself.
    line = (tmp_path / "manifest.jsonl").read_text().splitlines()[0]
    assert '"audio": "audio/Actor_01/03-01-01-01-01-01-01.wav"' in line


def test_eight_classes_and_actor_filter(ravdess_root):
    listing = read_ravdess(ravdess_root, classes=8)
    assert sorted(u.label for u in listing.utterances) == [
        "angry", "angry", "calm", "fearful", "happy", "neutral", "sad", "sad", "surprised",
    ]
    only_two = read_ravdess(ravdess_root, classes=8, actors=[2])
    assert {u.speaker for u in only_two.utterances} == {"Actor_02"}
    assert parse_actors("1-3,7") == [1, 2, 3, 7]


def test_rerun_reuses_the_converted_copies(ravdess_root, prepared):
    out, report = prepared
    manifest = (out / "manifest.jsonl").read_text()
    copies = {path: path.stat().st_mtime_ns for path in (out / "audio").rglob("*.wav")}
    again = prepare("ravdess", ravdess_root, out, workers=1, progress=False)
    assert again["audio"] == {"in_place": 2, "converted": 0, "reused": 4}
    assert (out / "manifest.jsonl").read_text() == manifest
    assert {path: path.stat().st_mtime_ns for path in copies} == copies
    assert again["kept"] == report["kept"] == 6


def test_duplicate_ids_are_reported(ravdess_root, tmp_path):
    root = shutil.copytree(ravdess_root, tmp_path / "root")
    shutil.copytree(root / "Actor_02", root / "backup" / "Actor_02")
    report = prepare("ravdess", root, tmp_path / "out", workers=1, progress=False)
    duplicates = [item for item in report["skipped_items"] if item["reason"] == "duplicate id"]
    assert sorted(item["id"] for item in duplicates) == [
        "ravdess-03-01-04-01-01-01-02", "ravdess-03-01-05-02-02-02-02",
    ]


def test_changed_source_is_converted_again(ravdess_root, tmp_path):
    root = shutil.copytree(ravdess_root, tmp_path / "root")
    prepare("ravdess", root, tmp_path / "out", workers=1, progress=False)
    source = root / "Actor_01" / "03-01-05-01-01-02-01.wav"
    later = source.stat().st_mtime + 60
    os.utime(source, (later, later))
    report = prepare("ravdess", root, tmp_path / "out", workers=1, progress=False)
    assert report["audio"] == {"in_place": 2, "converted": 1, "reused": 3}


def test_root_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_ravdess(tmp_path / "absent")
    (tmp_path / "Actor_01").mkdir()
    (tmp_path / "Actor_01" / "clip.wav").write_bytes(b"")
    with pytest.raises(InputError, match="does not look like RAVDESS"):
        read_ravdess(tmp_path)


@pytest.mark.corpora
def test_real_ravdess4(corpora_root, tmp_path):
    report = prepare("ravdess", corpora_root / "ravdess4", tmp_path, progress=False)
    assert (report["seen"], report["kept"], report["skipped"]) == (672, 672, 0)
    kept = {label: counts["kept"] for label, counts in report["per_class"].items()}
    assert kept == {"neutral": 96, "happy": 192, "sad": 192, "angry": 192}
    assert len(report["per_speaker"]) == 24
    assert all(counts["kept"] == 28 for counts in report["per_speaker"].values())
    # The copy is already 16 kHz mono PCM16: nothing is converted.
    assert report["audio"] == {"in_place": 672, "converted": 0, "reused": 0}
    assert not (tmp_path / "audio").exists()
