"""`python -m bimer_tf.crossval`: every fold trained in its own process,
exact fold bookkeeping, and finished folds reused when run again."""

import json
import statistics
import subprocess
import sys

import pytest

from bimer_tf.cli import run_main
from bimer_tf.config import load_config
from bimer_tf.evaluation.crossval import fold_config, fold_status, main
from bimer_tf.data.manifest import Fold, read_manifest, write_manifest, write_splits
from conftest import REPO_ROOT, tiny_overrides

# speaker -> split, per fold: each speaker is held out (test) in exactly one fold
FOLDS = {
    "a": {"train": ["s1", "s2"], "val": ["s3"], "test": ["s4"]},
    "b": {"train": ["s3", "s4"], "val": ["s1"], "test": ["s2"]},
}


@pytest.fixture(scope="module")
def two_fold_corpus(tiny_corpus, tmp_path_factory):
    """The tiny corpus's 32 good clips in two speaker folds."""
    root = tmp_path_factory.mktemp("two_folds")
    rows = [row for row in read_manifest(tiny_corpus) if not row["id"].startswith("bad_")]
    manifest = write_manifest(rows, root / "manifest.jsonl")
    folds = [
        Fold(name, *[[r["id"] for r in rows if r["speaker"] in speakers[split]] for split in ("train", "val", "test")])
        for name, speakers in FOLDS.items()
    ]
    write_splits(rows, "speaker-folds", folds, root)
    return manifest


@pytest.fixture(scope="module")
def cv_arguments(two_fold_corpus, tiny_bert_preset, tmp_path_factory):
    root = tmp_path_factory.mktemp("crossval")
    config = root / "tiny_cv.yaml"
    config.write_text("name: tiny-cv\ntrainer:\n  epochs: 1\n")
    overrides = [o for o in tiny_overrides(two_fold_corpus, tiny_bert_preset) if not o.startswith(("name=", "trainer.epochs="))]
    argv = ["--config", str(config), "--output", str(root / "cv")]
    for override in overrides:
        argv += ["--set", override]
    return argv, root / "cv"


def crossval(argv):
    return subprocess.run(
        [sys.executable, "-m", "bimer_tf.crossval", *argv], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900
    )


@pytest.fixture(scope="module")
def cv_run(cv_arguments):
    argv, output = cv_arguments
    first = crossval(argv)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    document = json.loads((output / "crossval.json").read_text())
    eval_times = {fold: (output / fold / "eval.json").stat().st_mtime_ns for fold in FOLDS}
    second = crossval(argv)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    return output, first.stdout, document, second.stdout, eval_times


def test_every_fold_trained_and_evaluated(cv_run):
    output, log, document, _, _ = cv_run
    assert document["complete"] and document["protocol"] == "speaker-folds"
    assert [r["fold"] for r in document["folds"]] == ["a", "b"]
    for result in document["folds"]:
        fold = result["fold"]
        assert result["split"] == f"{fold}/test"
        assert result["n"] == 8  # one held-out speaker: 4 classes x 2 takes
        assert result["wall_seconds"] > 0 and not result["reused"]
        report = json.loads((output / fold / "eval.json").read_text())
        assert report["ua"] == result["ua"]
        data_report = json.loads((output / fold / "data_report.json").read_text())
        assert {split: data_report[split]["kept"] for split in ("train", "val", "test")} == {
            "train": 16, "val": 8, "test": 8,
        }
        assert load_config(output / fold / "config.yaml").data.fold == fold
    assert log.count("=== fold") == 2


def test_summary_is_mean_and_sd_over_folds(cv_run):
    output, _, document, _, _ = cv_run
    summary = document["summary"]
    assert summary["n"] == 16
    for key in ("ua", "wa", "macro_f1"):
        values = [r[key] for r in document["folds"]]
        assert summary[key]["mean"] == pytest.approx(statistics.fmean(values))
        assert summary[key]["sd"] == pytest.approx(statistics.stdev(values))
    table = (output / "crossval.md").read_text()
    assert "| fold | split | n | UA | WA | macro-F1 | wall s |" in table
    assert "| **mean ± sd** | | 16 |" in table
    assert document["config"]["resolved"]["trainer"]["epochs"] == 1


def test_rerun_reuses_finished_folds(cv_run):
    output, _, first, log, eval_times = cv_run
    assert log.count("finished earlier with the same config; reusing") == 2
    assert "training" not in log.replace("finished earlier", "")
    for fold in FOLDS:
        assert (output / fold / "eval.json").stat().st_mtime_ns == eval_times[fold]
    document = json.loads((output / "crossval.json").read_text())
    assert all(r["reused"] for r in document["folds"])
    assert [r["wall_seconds"] for r in document["folds"]] == [r["wall_seconds"] for r in first["folds"]]
    assert document["summary"]["ua"] == first["summary"]["ua"]


def test_a_changed_config_is_trained_again(cv_run, cv_arguments):
    argv, output = cv_arguments
    overrides = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    config = load_config(argv[1], overrides)
    assert fold_status(fold_config(config, "a"), output / "a") == "done"
    config.trainer.seed += 1
    assert fold_status(fold_config(config, "a"), output / "a") == "changed"
    assert fold_status(fold_config(config, "c"), output / "c") == "new"


def test_unknown_fold_exits_2(cv_arguments, capsys):
    argv, _ = cv_arguments
    assert run_main(main, argv + ["--folds", "a,zz"]) == 2
    assert "no fold named zz; available: a, b" in capsys.readouterr().err


def test_folds_without_test_rows_are_refused(two_fold_corpus, cv_arguments, tmp_path, capsys):
    """Refit folds (`split --refit`) hold no test speakers: a cross-validation
    would report their validation figures as held-out ones."""
    rows = read_manifest(two_fold_corpus)
    ids = {split: [r["id"] for r in rows if r["speaker"] in FOLDS["a"][split]] for split in ("train", "val", "test")}
    write_splits(rows, "speaker-folds", [Fold("a-refit", ids["train"] + ids["test"], ids["val"], [])], tmp_path)
    argv, _ = cv_arguments
    argv = argv + ["--set", f"data.splits={tmp_path / 'splits.json'}", "--output", str(tmp_path / "cv")]
    assert run_main(main, argv) == 2
    assert "fold(s) a-refit have no test rows" in capsys.readouterr().err
    assert not (tmp_path / "cv").exists()

