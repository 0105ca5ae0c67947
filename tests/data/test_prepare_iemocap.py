"""IEMOCAP reader and preparation on a fixture tree that copies the release layout.

tests/fixtures/iemocap/IEMOCAP_full_release holds sessions 1-3 with short
generated WAVs. Session 1: an improvised dialog (annotator lines, the labels
neu/ang/sad/exc/fru/xxx, a 22.05 kHz stereo WAV, non-utterance transcript
lines) and a scripted one. Session 2: every kind of bad item (missing, empty,
corrupt, silent and 1 s long audio, an utterance without transcript, a
malformed label line, an id that tries to leave the root). Session 3:
a transcript with an `MXX0` id.
"""

import json
import shutil
from pathlib import Path

import pytest
import soundfile

from bimer_tf.config import AudioConfig
from bimer_tf.data.corpora import iemocap
from bimer_tf.data.corpora.iemocap import expected_counts, read_iemocap
from bimer_tf.data.manifest import read_manifest
from bimer_tf.data.prepare import AudioJob, prepare, prepare_audio
from bimer_tf.audio.wav import check_wav, convert_audio
from bimer_tf.errors import InputError

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "iemocap"
RELEASE = FIXTURE / "IEMOCAP_full_release"
S2_WAVS = RELEASE / "Session2" / "sentences" / "wav" / "Ses02M_impro02"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("iemocap")
    report = prepare("iemocap", FIXTURE, out, workers=1, progress=False)
    return out, report, {row["id"]: row for row in read_manifest(out / "manifest.jsonl")}


def test_counts_labels_speakers_sessions(prepared):
    out, report, rows = prepared
    assert (report["seen"], report["kept"], report["skipped"]) == (17, 7, 10)
    kept = {label: counts["kept"] for label, counts in report["per_class"].items()}
    assert kept == {
        "neutral": 3, "happy": 2, "angry": 1, "sad": 1,
        "excited": 0, "frustrated": 0, "no_agreement": 0, "<none>": 0,
    }
    assert sorted(rows) == [
        "Ses01F_impro01_F000", "Ses01F_impro01_F001", "Ses01F_impro01_F003", "Ses01F_impro01_M000",
        "Ses02M_impro02_M002", "Ses03M_impro03_F000", "Ses03M_impro03_M000",
    ]
    # The speaker's letter comes from the utterance suffix, not the dialog name.
    assert rows["Ses01F_impro01_M000"]["speaker"] == "Ses01M"
    assert rows["Ses03M_impro03_F000"]["speaker"] == "Ses03F"
    assert {row["session"] for row in rows.values()} == {1, 2, 3}
    assert rows["Ses01F_impro01_F001"]["label"] == "angry"
    assert rows["Ses01F_impro01_F001"]["text"] == "Yeah, I have them, I told you that already."
    row = rows["Ses01F_impro01_F000"]
    assert (row["corpus"], row["origin"], row["augmentation"]) == ("iemocap", row["id"], None)
    assert report["per_session"]["2"] == {"seen": 8, "kept": 1, "skipped": 7}
    assert report["per_speaker"]["Ses01M"] == {"seen": 3, "kept": 1, "skipped": 2}


def test_audio_in_place_and_converted(prepared):
    out, report, rows = prepared
    assert report["audio"] == {"in_place": 6, "converted": 1, "reused": 0}
    in_place = Path(rows["Ses01F_impro01_F000"]["audio"])
    assert in_place == (RELEASE / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav").resolve()
    # The 22.05 kHz stereo file became a 16 kHz mono PCM16 copy under out/audio/.
    copy = Path(rows["Ses01F_impro01_F003"]["audio"])
    assert copy == (out / "audio" / "Ses01F_impro01" / "Ses01F_impro01_F003.wav").resolve()
    info = soundfile.info(copy)
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert check_wav(copy).duration_s == pytest.approx(0.2, abs=0.01)


def test_odd_transcript_lines_are_ignored_and_noted(prepared):
    _, report, rows = prepared
    assert "Ses03M_impro03_MXX0" not in rows
    assert any("3 transcript lines are not utterances" in note for note in report["notes"])
    # Bracketed events inside an utterance are part of the transcript.
    assert rows["Ses01F_impro01_F003"]["text"] == "I waited all day. [BREATHING] For nothing."


def test_every_bad_item_is_reported_with_its_reason(prepared):
    _, report, _ = prepared
    reasons = {item["id"]: item["reason"] for item in report["skipped_items"]}
    assert reasons == {
        "Ses01F_impro01_M001": "label not in class map",  # fru
        "Ses01F_impro01_F002": "label not in class map",  # exc without --merge-excited
        "Ses01F_impro01_M002": "label not in class map",  # xxx
        "Ses02M_impro02_F002": "no transcript",
        "Session2/dialog/EmoEvaluation/Ses02M_impro02.txt:38": "malformed line",
        "../../../../etc/passwd": "unsafe path",
        "Ses02M_impro02_F000": "audio missing",
        "Ses02M_impro02_M000": "audio empty",
        "Ses02M_impro02_F001": "audio unreadable",
        "Ses02M_impro02_M001": "audio rejected",
    }
    details = {item["id"]: item["detail"] for item in report["skipped_items"]}
    assert "silent" in details["Ses02M_impro02_M001"]
    assert "--merge-excited" in details["Ses01F_impro01_F002"]
    assert report["skipped_by_reason"]["label not in class map"] == 3


def test_rerun_reuses_the_converted_copy(prepared):
    out, _, rows = prepared
    copy = Path(rows["Ses01F_impro01_F003"]["audio"])
    written = copy.stat().st_mtime_ns
    again = prepare("iemocap", FIXTURE, out, workers=1, progress=False)
    assert again["audio"] == {"in_place": 6, "converted": 0, "reused": 1}
    assert copy.stat().st_mtime_ns == written
    assert (again["seen"], again["kept"]) == (17, 7)


def test_invalid_copy_is_converted_again(tmp_path):
    source = RELEASE / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F003.wav"
    copy = tmp_path / "copy.wav"
    copy.write_bytes(b"RIFF partial")  # an interrupted earlier run
    job = AudioJob(source, copy, convert_audio, 16000, 30.0, AudioConfig().silence_floor_dbfs)
    assert prepare_audio(job).action == "converted"
    assert prepare_audio(job).action == "reused"


def test_over_long_audio_is_skipped():
    job = AudioJob(
        S2_WAVS / "Ses02M_impro02_M002.wav", Path("/nonexistent/copy.wav"), convert_audio,
        16000, 0.5, AudioConfig().silence_floor_dbfs,
    )
    outcome = prepare_audio(job)
    assert (outcome.path, outcome.reason) == (None, "audio too long")
    assert "1.0 s, over --max-duration 0.5 s" in outcome.detail


@pytest.mark.parametrize(
    "subset, merge, utterances, labels",
    [
        ("improvised", False, 11, {"neutral": 4, "angry": 2, "sad": 2, "happy": 3}),
        ("improvised", True, 12, {"neutral": 4, "angry": 2, "sad": 2, "happy": 4}),
        ("scripted", False, 3, {"neutral": 1, "sad": 1, "happy": 1}),
        ("all", True, 16, {"neutral": 5, "angry": 2, "sad": 3, "happy": 6}),
    ],
)
def test_subsets_and_merged_excited(subset, merge, utterances, labels):
    listing = read_iemocap(RELEASE, subset=subset, merge_excited=merge)
    assert len(listing.utterances) == utterances
    found = {}
    for utterance in listing.utterances:
        found[utterance.label] = found.get(utterance.label, 0) + 1
    assert found == labels
    if subset != "all":
        marker = "impro" if subset == "improvised" else "script"
        assert all(marker in u.id for u in listing.utterances)


def test_annotator_subfolders_are_not_label_files():
    listing = read_iemocap(RELEASE, subset="all")
    seen = {u.id for u in listing.utterances} | {s.id for s in listing.skipped}
    assert not any("_cat" in item for item in seen)


def test_missing_transcript_file(tmp_path):
    root = shutil.copytree(RELEASE, tmp_path / "IEMOCAP_full_release")
    (root / "Session3/dialog/transcriptions/Ses03M_impro03.txt").unlink()
    listing = read_iemocap(root)
    missing = [s for s in listing.skipped if s.id.startswith("Ses03M")]
    assert [s.reason for s in missing] == ["no transcript", "no transcript"]
    assert "is missing" in missing[0].detail


def test_expected_full_release_counts():
    improvised = expected_counts("improvised", merge_excited=False)
    assert improvised == {"neutral": 1099, "angry": 289, "sad": 608, "happy": 284}
    assert sum(improvised.values()) == 2280
    merged = expected_counts("improvised", merge_excited=True)
    assert (sum(merged.values()), merged["happy"]) == (2943, 947)
    everything = expected_counts("all", merge_excited=True)
    assert everything == {"neutral": 1708, "angry": 1103, "sad": 1084, "happy": 1636}
    assert sum(everything.values()) == 5531
    scripted = expected_counts("scripted", merge_excited=True)
    assert sum(scripted.values()) == 5531 - 2943


def _full_release_labels(root: Path, counts: dict[str, int]) -> None:
    """Five sessions whose label files hold `counts` improvised utterances per code."""
    for session in range(1, 6):
        (root / f"Session{session}" / "dialog" / "EmoEvaluation").mkdir(parents=True)
    lines, number = [], 0
    for code, count in counts.items():
        for _ in range(count):
            lines.append(f"[1.0 - 2.0]\tSes01F_impro01_F{number:03d}\t{code}\t[2.5, 2.5, 2.5]")
            number += 1
    (root / "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt").write_text("\n".join(lines) + "\n")


def test_full_release_count_check(tmp_path):
    full = {"neu": 1099, "ang": 289, "sad": 608, "hap": 284, "exc": 663, "fru": 10}
    _full_release_labels(tmp_path / "good", full)
    assert read_iemocap(tmp_path / "good").warnings == []
    assert read_iemocap(tmp_path / "good", merge_excited=True).warnings == []

    _full_release_labels(tmp_path / "short", {**full, "sad": 600})
    warnings = read_iemocap(tmp_path / "short").warnings
    assert len(warnings) == 1 and "'sad': 600" in warnings[0] and "'sad': 608" in warnings[0]


def test_partial_release_skips_the_count_check():
    listing = read_iemocap(RELEASE)
    assert listing.warnings == []
    assert any("not the full release" in note for note in listing.notes)


def test_root_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_iemocap(tmp_path / "absent")
    (tmp_path / "Session1").mkdir()
    with pytest.raises(InputError, match=r"does not look like IEMOCAP.*EmoEvaluation"):
        read_iemocap(tmp_path)
    with pytest.raises(InputError, match="subset"):
        read_iemocap(RELEASE, subset="impro")


def test_report_file_matches_returned_report(prepared):
    out, report, _ = prepared
    written = json.loads((out / "prep_report.json").read_text())
    assert written["corpus"] == iemocap.NAME
    assert written["options"] == {
        "subset": "improvised", "merge_excited": False, "max_duration_s": 30.0, "sample_rate": 16000,
    }
    assert not (out / "official_split.json").exists()
