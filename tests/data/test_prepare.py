"""What every corpus shares: report arithmetic, the CLI contract, path safety."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile
from conftest import REPO_ROOT, synth_tone

from bimer_tf.cli import run_main
from bimer_tf.data.corpora import path_inside, read_lines
from bimer_tf.data.prepare import READERS, format_summary, main, prepare
from bimer_tf.errors import InputError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture(scope="module")
def small_corpora(tmp_path_factory) -> dict[str, Path]:
    """A root per corpus, each with kept and skipped items."""
    base = tmp_path_factory.mktemp("corpora")
    ravdess = base / "ravdess" / "Actor_03"
    ravdess.mkdir(parents=True)
    for name in ("03-01-01-01-01-01-03", "03-01-02-01-01-01-03", "03-01-05-02-02-01-03"):
        soundfile.write(ravdess / f"{name}.wav", synth_tone(0.2), 16000, subtype="PCM_16")
    (ravdess / "03-01-04-01-01-01-03.wav").write_bytes(b"")
    emodb = base / "emodb" / "wav"
    emodb.mkdir(parents=True)
    for name in ("03a01Wa", "03a01Lb", "03a01Qa"):  # angry, bored, an unknown emotion code
        soundfile.write(emodb / f"{name}.wav", synth_tone(0.2), 16000, subtype="PCM_16")
    tweets = base / "tweeteval" / "emotion"
    tweets.mkdir(parents=True)
    (tweets / "mapping.txt").write_text("0\tanger\n1\tjoy")
    for split in ("train", "val", "test"):
        (tweets / f"{split}_text.txt").write_text("so happy today\nugh\n\n")
        (tweets / f"{split}_labels.txt").write_text("1\n0\n1\n")
    return {
        "emodb": base / "emodb",
        "iemocap": FIXTURES / "iemocap",
        "meld": FIXTURES / "meld",
        "ravdess": base / "ravdess",
        "tweeteval": base / "tweeteval",
    }


@pytest.mark.parametrize("corpus", sorted(READERS))
def test_report_counts_add_up(corpus, small_corpora, tmp_path):
    report = prepare(corpus, small_corpora[corpus], tmp_path, workers=1, progress=False)
    assert report["skipped"] > 0 and report["kept"] > 0
    assert report["kept"] + report["skipped"] == report["seen"]
    assert len(report["skipped_items"]) == report["skipped"]
    assert sum(report["skipped_by_reason"].values()) == report["skipped"]
    for table in ("per_class", "per_speaker", "per_session"):
        for counts in report[table].values():
            assert counts["kept"] + counts["skipped"] == counts["seen"]
        for total in ("seen", "kept", "skipped"):
            assert sum(counts[total] for counts in report[table].values()) == report[total]
    assert all(item["id"] and item["reason"] and item["detail"] for item in report["skipped_items"])
    manifest = (tmp_path / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(manifest) == report["kept"]
    assert json.loads((tmp_path / "prep_report.json").read_text(encoding="utf-8")) == report
    assert {json.loads(line)["corpus"] for line in manifest} == {corpus}


@pytest.mark.parametrize("corpus", sorted(READERS))
def test_cli_bad_root_exits_2(corpus, tmp_path, capsys):
    missing = tmp_path / "no_such_corpus"
    assert run_main(main, [corpus, "--root", str(missing), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and str(missing) in error and "expected" in error
    # A folder that exists but holds something else.
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("hello")
    assert run_main(main, [corpus, "--root", str(tmp_path / "other"), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert str(tmp_path / "other") in error and "Traceback" not in error


def test_module_entry_point_exit_code(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bimer_tf.data.prepare", "iemocap", "--root", str(tmp_path / "absent"),
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=REPO_ROOT,
    )
    assert result.returncode == 2
    assert "error: iemocap root not found" in result.stderr and "Traceback" not in result.stderr


def test_cli_prints_a_summary(tmp_path, capsys):
    argv = ["meld", "--root", str(FIXTURES / "meld"), "--out", str(tmp_path), "--no-progress"]
    assert run_main(main, argv) == 0
    summary = capsys.readouterr().out
    assert summary.startswith("meld: kept 12 of 17 seen, skipped 5")
    assert "3 broken csv row" in summary and "official_split.json" in summary


def test_summary_shows_warnings_and_audio():
    report = {
        "corpus": "iemocap", "seen": 3, "kept": 2, "skipped": 1, "seconds": 0.5,
        "per_class": {"neutral": {"seen": 3, "kept": 2, "skipped": 1}},
        "per_speaker": {"Ses01F": {"seen": 3, "kept": 2, "skipped": 1}},
        "per_session": {"1": {"seen": 3, "kept": 2, "skipped": 1}},
        "skipped_by_reason": {"audio missing": 1},
        "audio": {"in_place": 1, "converted": 1, "reused": 0},
        "warnings": ["counts differ"], "notes": [], "outputs": {"manifest": "m.jsonl"},
    }
    summary = format_summary(report)
    assert "WARNING: counts differ" in summary
    assert "1 used in place, 1 converted" in summary
    assert "speakers: 1, sessions: 1" in summary


@pytest.mark.parametrize(
    "extra, message",
    [(["--max-duration", "0"], "--max-duration"), (["--workers", "0"], "--workers")],
)
def test_cli_bad_options_exit_2(extra, message, tmp_path, capsys):
    argv = ["ravdess", "--root", str(tmp_path), "--out", str(tmp_path / "out"), *extra]
    assert run_main(main, argv) == 2
    assert message in capsys.readouterr().err


def test_cli_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["iemocap", "--out", "somewhere"])  # --root missing
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["timit", "--root", ".", "--out", "x"])
    assert exit_info.value.code == 2


def test_output_folder_that_is_a_file(tmp_path):
    blocker = tmp_path / "out"
    blocker.write_text("a file")
    with pytest.raises(InputError, match="cannot create the output folder"):
        prepare("meld", FIXTURES / "meld", blocker / "sub", progress=False)


def test_unknown_corpus():
    with pytest.raises(InputError, match="unknown corpus 'timit'"):
        prepare("timit", ".", "out")


def test_path_inside(tmp_path):
    assert path_inside(tmp_path, "Session1", "a.wav") == tmp_path / "Session1" / "a.wav"
    assert path_inside(tmp_path, "../../etc/passwd") is None
    assert path_inside(tmp_path, "Session1", "..", "..", "x.wav") is None
    assert path_inside(tmp_path, "/etc/passwd") is None
    assert path_inside(tmp_path, ".") is None
    # ".." that stays inside is fine.
    assert path_inside(tmp_path, "a", "..", "b.wav") == tmp_path / "b.wav"


def test_read_lines(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_bytes("\ufeffone\r\ntwo\u2028still two\nthree".encode("utf-8"))
    assert read_lines(path) == ["one", "two\u2028still two", "three"]
    path.write_bytes(b"a\nb\n")
    assert read_lines(path) == ["a", "b"]
