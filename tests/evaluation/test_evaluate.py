"""`python -m bimer_tf.evaluate`: a run or a SavedModel on any manifest,
label mapping between corpora, and row counts that add up."""

import json
import subprocess
import sys

import numpy as np
import pytest

from bimer_tf.cli import run_main
from bimer_tf.data.manifest import read_manifest, write_manifest
from bimer_tf.evaluation.evaluate import main, map_labels, parse_label_map
from bimer_tf.errors import InputError
from conftest import REPO_ROOT

CONTRACT = ("ua", "wa", "macro_f1", "per_class", "confusion", "labels", "n", "protocol", "split")


def evaluate(*argv):
    return run_main(main, [str(a) for a in argv])


def read_eval(folder):
    return json.loads((folder / "eval.json").read_text())


def test_run_on_its_test_split_matches_the_training_evaluation(tiny_run, tiny_corpus, tmp_path):
    assert evaluate("--run", tiny_run, "--manifest", tiny_corpus, "--split", "test", "--output", tmp_path) == 0
    report, trained = read_eval(tmp_path), read_eval(tiny_run)
    for key in CONTRACT:
        assert key in report
    assert (tmp_path / "confusion.png").is_file()
    assert report["split"] == "heldout/test" and report["protocol"] == "speaker-holdout"
    assert report["confusion"] == trained["confusion"]
    assert report["ua"] == pytest.approx(trained["ua"])
    assert report["manifest_rows"] == {"seen": 8, "kept": 8, "unmapped": 0, "skipped": 0}


def test_whole_manifest_counts_add_up(tiny_run, tiny_corpus, tmp_path):
    assert evaluate("--run", tiny_run, "--manifest", tiny_corpus, "--output", tmp_path) == 0
    report = read_eval(tmp_path)
    rows = report["manifest_rows"]
    # 32 good clips + a corrupt WAV, a label the model does not know, a missing transcript
    assert rows == {"seen": 35, "kept": 32, "unmapped": 1, "skipped": 2}
    assert rows["seen"] == rows["kept"] + rows["unmapped"] + rows["skipped"]
    assert report["n"] == 32 == int(np.sum(report["confusion"]))
    assert report["unmapped_labels"] == {"bored": 1}
    assert {item["id"] for item in report["skipped_items"]} == {"bad_corrupt", "bad_text"}
    assert report["split"] == "all"


def test_label_map_takes_in_rows_otherwise_left_out(tiny_run, tiny_corpus, tmp_path):
    code = evaluate("--run", tiny_run, "--manifest", tiny_corpus, "--label-map", "bored=neutral", "--output", tmp_path)
    assert code == 0
    report = read_eval(tmp_path)
    assert report["manifest_rows"] == {"seen": 35, "kept": 33, "unmapped": 0, "skipped": 2}
    assert report["label_map"] == {"bored": "neutral"}
    assert report["per_class"]["neutral"]["support"] == 9


def test_cross_corpus_labels(tiny_run, tiny_corpus, tmp_path):
    """Another corpus's names for the same classes give the same result once mapped."""
    renamed = {"angry": "anger", "happy": "joy", "sad": "sadness"}
    rows = [row for row in read_manifest(tiny_corpus) if not row["id"].startswith("bad_")]
    other = [{**row, "label": renamed.get(row["label"], row["label"])} for row in rows]
    other += [{**rows[0], "id": "extra_fear", "label": "fear"}]
    manifest = write_manifest(other, tmp_path / "other" / "manifest.jsonl")
    mapped = tmp_path / "mapped"
    code = evaluate(
        "--run", tiny_run, "--manifest", manifest, "--label-map", "anger=angry,joy=happy,sadness=sad", "--output", mapped
    )
    assert code == 0
    original = tmp_path / "original"
    assert evaluate("--run", tiny_run, "--manifest", tiny_corpus, "--output", original) == 0
    report = read_eval(mapped)
    assert report["manifest_rows"] == {"seen": 33, "kept": 32, "unmapped": 1, "skipped": 0}
    assert report["unmapped_labels"] == {"fear": 1}
    assert report["confusion"] == read_eval(original)["confusion"]


@pytest.mark.parametrize(
    "label_map, message",
    [
        ("bored=excited", "maps to excited, which the model does not know"),
        ("sleepy=neutral", "names sleepy, which no row of the manifest has"),
        ("bored", "cannot read 'bored'"),
        ("bored=neutral,=sad", "cannot read '=sad'"),
    ],
)
def test_bad_label_maps_exit_2(tiny_run, tiny_corpus, tmp_path, capsys, label_map, message):
    code = evaluate("--run", tiny_run, "--manifest", tiny_corpus, "--label-map", label_map, "--output", tmp_path)
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "eval.json").exists()


def test_cli_exit_code_and_message(tiny_run, tiny_corpus):
    done = subprocess.run(
        [sys.executable, "-m", "bimer_tf.evaluate", "--run", str(tiny_run), "--manifest", str(tiny_corpus),
         "--label-map", "bored=excited"],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )
    assert done.returncode == 2
    assert "error: --label-map maps to excited, which the model does not know" in done.stderr
    assert "Traceback" not in done.stderr


def test_not_a_run_or_model(tmp_path, tiny_corpus, capsys):
    assert evaluate("--run", tmp_path, "--manifest", tiny_corpus) == 2
    assert "is not a finished run" in capsys.readouterr().err
    assert evaluate("--saved-model", tmp_path, "--manifest", tiny_corpus) == 2
    assert "is not a SavedModel version folder" in capsys.readouterr().err


def test_saved_model_matches_the_run(tiny_export, tiny_run, tiny_corpus, tmp_path):
    served, checkpoint = tmp_path / "served", tmp_path / "checkpoint"
    assert evaluate("--saved-model", tiny_export, "--manifest", tiny_corpus, "--split", "test", "--output", served) == 0
    assert evaluate("--run", tiny_run, "--manifest", tiny_corpus, "--split", "test", "--output", checkpoint) == 0
    report = read_eval(served)
    assert report["model"] == str(tiny_export)
    assert report["confusion"] == read_eval(checkpoint)["confusion"]
    assert report["manifest_rows"]["kept"] == 8


def test_label_map_parsing():
    assert parse_label_map(" joy = happy , anger=angry ") == {"joy": "happy", "anger": "angry"}
    assert parse_label_map(None) == {}
    with pytest.raises(InputError, match="maps 'joy' twice"):
        parse_label_map("joy=happy,joy=sad")
    mapped = map_labels(
        [{"id": "1", "label": "joy"}, {"id": "2", "label": "sad"}, {"id": "3", "label": "fear"}],
        {"joy": "happy"},
        ["happy", "sad"],
    )
    assert [row["label"] for row in mapped.rows] == ["happy", "sad"]
    assert mapped.unmapped == {"fear": 1}
