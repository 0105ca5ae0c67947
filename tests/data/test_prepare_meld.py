"""MELD reader: fixture CSVs in the release format, clips made at test time with ffmpeg.

tests/fixtures/meld/*_sent_emo.csv copy the real files (CRLF, quoted commas,
doubled quotes, curly quotes, non-ASCII) and add bad rows: broken quoting,
an unquoted comma, an unknown emotion, an empty utterance, a non-numeric
Dialogue_ID.
"""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
from imageio_ffmpeg import get_ffmpeg_exe

from bimer_tf.data.corpora.meld import read_meld, repair_mojibake
from bimer_tf.data.manifest import read_manifest
from bimer_tf.data.prepare import prepare
from bimer_tf.errors import InputError

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "meld"
CSVS = ("train_sent_emo.csv", "dev_sent_emo.csv", "test_sent_emo.csv")
CLIP_FOLDERS = {"train": "train/train_splits", "dev": "dev/dev_splits_complete",
                "test": "test/output_repeated_splits_test"}


def _ffmpeg(*arguments: str) -> None:
    subprocess.run([get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", *arguments], check=True)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Real mp4 files: a 0.5 s 440 Hz tone (48 kHz stereo AAC) with video, and a video-only clip."""
    folder = tmp_path_factory.mktemp("clips")
    tone = folder / "tone.mp4"
    _ffmpeg(
        "-f", "lavfi", "-i", "color=c=black:s=32x32:d=0.5",
        "-f", "lavfi", "-i", "sine=frequency=440:duration=0.5:sample_rate=48000",
        "-ac", "2", "-c:v", "mpeg4", "-c:a", "aac", "-shortest", str(tone),
    )
    silent_video = folder / "video_only.mp4"
    _ffmpeg("-f", "lavfi", "-i", "color=c=black:s=32x32:d=0.5", "-c:v", "mpeg4", str(silent_video))
    return {"tone": tone, "video_only": silent_video}


@pytest.fixture
def meld_raw(tmp_path, clips) -> Path:
    """A MELD.Raw-like tree: the CSVs and the three clip folders, with some bad clips."""
    root = tmp_path / "MELD.Raw"
    root.mkdir()
    for name in CSVS:
        shutil.copy(FIXTURE / name, root / name)
    folders = {split: root / path for split, path in CLIP_FOLDERS.items()}
    for folder in folders.values():
        folder.mkdir(parents=True)
    for clip in ("dia0_utt0", "dia0_utt1", "dia0_utt2", "dia1_utt3", "dia1_utt4"):
        shutil.copy(clips["tone"], folders["train"] / f"{clip}.mp4")
    (folders["train"] / "dia1_utt0.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
    for clip in ("dia0_utt0", "dia0_utt1"):  # dev dia1_utt0 has no clip
        shutil.copy(clips["tone"], folders["dev"] / f"{clip}.mp4")
    shutil.copy(clips["tone"], folders["test"] / "dia0_utt0.mp4")
    shutil.copy(clips["video_only"], folders["test"] / "dia0_utt1.mp4")
    shutil.copy(clips["tone"], folders["test"] / "dia1_utt0.mp4")
    return root


def test_text_only_counts_labels_and_ids(tmp_path):
    report = prepare("meld", FIXTURE, tmp_path, progress=False)
    assert (report["seen"], report["kept"], report["skipped"]) == (17, 12, 5)
    assert report["audio"] is None
    rows = {row["id"]: row for row in read_manifest(tmp_path / "manifest.jsonl")}
    assert all(row["audio"] is None and row["session"] is None for row in rows.values())
    first = rows["meld-train-dia0_utt0"]
    assert first["text"].startswith("also I was the point person on my company’s transition")
    assert (first["label"], first["speaker"], first["corpus"]) == ("neutral", "Chandler", "meld")
    assert rows["meld-train-dia0_utt1"]["text"] == "Oh, wow, you must’ve had your hands full."
    assert rows["meld-train-dia0_utt2"]["text"] == 'He said, "No way!" and walked out.'
    assert rows["meld-train-dia1_utt3"]["text"] == "Ça va? Je ne sais pas… señor."
    assert rows["meld-dev-dia1_utt0"]["speaker"] == "Chandler"
    assert rows["meld-test-dia1_utt0"]["label"] == "joy"
    kept = {label: counts["kept"] for label, counts in report["per_class"].items() if counts["kept"]}
    assert kept == {"neutral": 2, "joy": 2, "surprise": 3, "anger": 1, "sadness": 2, "disgust": 1, "fear": 1}


def test_mojibake_is_repaired():
    listing = read_meld(FIXTURE)
    texts = {u.id: u.text for u in listing.utterances}
    assert texts["meld-train-dia1_utt0"] == "I’m fine. Really."
    assert repair_mojibake("pâté") == "pâté"
    assert repair_mojibake("Iâ€™m") == "I’m"
    assert any("mojibake" in note for note in listing.notes)


def test_bad_rows_are_reported_not_swallowed():
    listing = read_meld(FIXTURE)
    reasons = {s.id: s.reason for s in listing.skipped}
    assert reasons == {
        "meld-train-line6": "broken csv row",  # an opening quote that never closes
        "meld-train-dia1_utt2": "label not in class map",  # contempt
        "meld-dev-line5": "broken csv row",  # unquoted commas: too many fields
        "meld-test-dia0_utt2": "no transcript",
        "meld-test-line5": "broken csv row",  # Dialogue_ID x7
    }
    # The row after the broken one is still read.
    assert "meld-train-dia1_utt2" in reasons and "meld-train-dia1_utt3" in {u.id for u in listing.utterances}


def test_official_split(tmp_path):
    prepare("meld", FIXTURE, tmp_path, progress=False)
    split = json.loads((tmp_path / "official_split.json").read_text())
    assert {name: len(ids) for name, ids in split.items()} == {"train": 6, "val": 3, "test": 3}
    assert split["val"][0] == "meld-dev-dia0_utt0"
    assert not (tmp_path / "splits.json").exists()


def test_audio_is_extracted_from_the_clips(meld_raw, tmp_path):
    out = tmp_path / "out"
    # Two workers: the clips are decoded on the process pool.
    report = prepare("meld", meld_raw, out, workers=2, progress=False)
    assert report["audio"] == {"in_place": 0, "converted": 9, "reused": 0}
    reasons = {item["id"]: item["reason"] for item in report["skipped_items"]}
    assert reasons["meld-train-dia1_utt0"] == "audio unreadable"  # corrupt mp4
    assert reasons["meld-dev-dia1_utt0"] == "audio missing"
    assert reasons["meld-test-dia0_utt1"] == "audio unreadable"  # no audio stream
    assert (report["kept"], report["skipped"]) == (9, 8)

    rows = {row["id"]: row for row in read_manifest(out / "manifest.jsonl")}
    wav = Path(rows["meld-train-dia0_utt0"]["audio"])
    assert wav == (out / "audio" / "train" / "dia0_utt0.wav").resolve()
    samples, rate = soundfile.read(wav)
    info = soundfile.info(wav)
    assert (rate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert len(samples) / rate == pytest.approx(0.5, abs=0.05)
    spectrum = np.abs(np.fft.rfft(samples))
    assert np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()] == pytest.approx(440, abs=5)

    again = prepare("meld", meld_raw, out, workers=1, progress=False)
    assert again["audio"] == {"in_place": 0, "converted": 0, "reused": 9}


def test_audio_root_option_and_text_only(meld_raw, tmp_path):
    csv_only = tmp_path / "csv_only"
    csv_only.mkdir()
    for name in CSVS:
        shutil.copy(FIXTURE / name, csv_only / name)
    listing = read_meld(csv_only, audio_root=meld_raw)
    audio = {u.id: u.audio for u in listing.utterances}
    assert audio["meld-test-dia0_utt0"] == meld_raw / CLIP_FOLDERS["test"] / "dia0_utt0.mp4"
    assert all(u.audio is None for u in read_meld(meld_raw, text_only=True).utterances)
    with pytest.raises(InputError, match="no MELD clip folders"):
        read_meld(csv_only, audio_root=tmp_path / "csv_only")


def test_partial_clip_folders_are_an_error(meld_raw):
    shutil.rmtree(meld_raw / CLIP_FOLDERS["dev"])
    with pytest.raises(InputError, match="dev_splits_complete not found.*--text-only"):
        read_meld(meld_raw)


def test_root_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_meld(tmp_path / "absent")
    with pytest.raises(InputError, match="train_sent_emo.csv, dev_sent_emo.csv, test_sent_emo.csv missing"):
        read_meld(tmp_path)
    for name in CSVS:
        (tmp_path / name).write_text("id,text,label\n1,hello,joy\n")
    with pytest.raises(InputError, match="header lacks the MELD columns"):
        read_meld(tmp_path)


@pytest.mark.corpora
def test_real_meld_text(corpora_root, tmp_path):
    report = prepare("meld", corpora_root / "meld_text", tmp_path, progress=False)
    assert (report["seen"], report["kept"], report["skipped"]) == (13708, 13708, 0)
    kept = {label: counts["kept"] for label, counts in report["per_class"].items()}
    assert kept == {
        "neutral": 4710 + 470 + 1256, "joy": 1743 + 163 + 402, "surprise": 1205 + 150 + 281,
        "anger": 1109 + 153 + 345, "sadness": 683 + 111 + 208, "disgust": 271 + 22 + 68,
        "fear": 268 + 40 + 50,
    }
    split = json.loads((tmp_path / "official_split.json").read_text())
    assert {name: len(ids) for name, ids in split.items()} == {"train": 9989, "val": 1109, "test": 2610}
    rows = read_manifest(tmp_path / "manifest.jsonl")
    assert rows[0]["id"] == "meld-train-dia0_utt0" and rows[0]["speaker"] == "Chandler"
