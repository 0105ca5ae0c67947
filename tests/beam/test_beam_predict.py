"""`python -m bimer_tf.beam.predict`: RunInference over the Recognizer gives the rows of
`python -m bimer_tf.predict`'s batch mode, bad inputs included."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from conftest import REPO_ROOT, TINY_TEXTS, synth_tone

pytest.importorskip("apache_beam", reason="the beam extra is not installed")

from bimer_tf.cli import run_main  # noqa: E402

IN_PROCESS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def beam_predict(*args, flags=IN_PROCESS) -> int:
    from bimer_tf.beam.predict import main

    return run_main(main, [str(arg) for arg in args] + list(flags))


def batch_predict(*args) -> int:
    from bimer_tf.inference.predict import main

    return run_main(main, [str(arg) for arg in args])


def rows_of(paths) -> dict:
    rows = [json.loads(line) for path in paths for line in path.read_text(encoding="utf-8").splitlines()]
    by_input = {row["input"]: row for row in rows}
    assert len(by_input) == len(rows), "an input has two rows"
    return by_input


def assert_same_rows(beam_rows: dict, batch_rows: dict) -> None:
    """The batch mode's rows: the same inputs, labels and errors; probabilities to their 6 digits.

    A SavedModel call's outputs depend on the batch around an item by up to
    about 5e-7 (oneDNN picks kernels by batch shape), so a 6-digit value may
    differ by one unit in its last digit when the batches differ: here, as
    between two batch-mode runs with different --batch-size.
    """
    assert sorted(beam_rows) == sorted(batch_rows)
    for name, row in beam_rows.items():
        expected = batch_rows[name]
        assert (row["label"], row["error"]) == (expected["label"], expected["error"]), name
        if expected["probabilities"] is None:
            assert row["probabilities"] is None, name
        else:
            assert list(row["probabilities"]) == list(expected["probabilities"]), name
            difference = max(abs(row["probabilities"][k] - p) for k, p in expected["probabilities"].items())
            assert difference <= 1.5e-6, (name, difference)


def test_predictions_equal_the_batch_mode_on_a_manifest(tiny_export, tiny_corpus, tmp_path, capsys):
    """35 rows: 32 clips, a corrupt WAV, an unknown label (still predicted), a row without transcript."""
    batch = tmp_path / "batch.jsonl"
    assert batch_predict("--saved-model", tiny_export, "--manifest", tiny_corpus, "--output", batch) == 0
    assert beam_predict("--saved-model", tiny_export, "--manifest", tiny_corpus, "--output", tmp_path / "beam", "--batch-size", 4) == 0
    outputs = sorted(tmp_path.glob("beam-*-of-*.jsonl"))
    assert outputs
    beam_rows, batch_rows = rows_of(outputs), rows_of([batch])
    assert_same_rows(beam_rows, batch_rows)
    assert len(beam_rows) == 35
    errors = {name for name, row in beam_rows.items() if row["error"]}
    assert errors == {"bad_corrupt", "bad_text"}
    assert all(list(row) == ["input", "label", "probabilities", "error"] for row in beam_rows.values())
    assert "35 inputs: 33 predicted, 2 skipped" in capsys.readouterr().err
    # the pipeline read its inputs from the file the driver wrote beside the outputs
    listed = [json.loads(line) for line in (tmp_path / "beam.inputs.jsonl").read_text().splitlines()]
    assert sorted(row["input"] for row in listed) == sorted(beam_rows)


def test_the_job_holds_the_inputs_file_not_the_inputs(tiny_export, tmp_path):
    """A cluster runner gets a job of the same size for 3 inputs or 30,000 (Dataflow caps a job at 10 MB)."""
    import apache_beam as beam

    from bimer_tf.beam.prediction import RecognizerModelHandler, build_pipeline, read_entry, write_entries
    from bimer_tf.inference.predict import Entry

    handler = RecognizerModelHandler(str(tiny_export))
    sizes = []
    for count in (3, 30000):
        entries = [Entry(f"clip{i:05d}", audio=f"gs://bucket/calls/clip{i:05d}.wav", text="ünïcode \ud800") for i in range(count)]
        prefix = str(tmp_path / f"out{count}")
        inputs_file = write_entries(entries, prefix)
        assert [read_entry(line) for line in open(inputs_file, encoding="ascii")] == entries
        pipeline = beam.Pipeline()
        build_pipeline(pipeline, inputs_file, handler, prefix)
        sizes.append(pipeline.to_runner_api().ByteSize())
    # Only the file names differ, inside compressed pickles whose size moves by tens of bytes
    # from one tmp path to the next; the 30,000 entries inline would add megabytes.
    assert os.path.getsize(inputs_file) > 1_000_000
    assert abs(sizes[1] - sizes[0]) < 1000


def test_inputs_glob_with_transcripts_and_bad_files(tiny_export, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for name, (freq, rate, label) in {"a_happy.wav": (300.0, 16000, "happy"), "b_sad.flac": (150.0, 44100, "sad")}.items():
        soundfile.write(folder / name, synth_tone(0.8, sample_rate=rate, freq=freq), rate, subtype="PCM_16")
        (folder / name).with_suffix(".txt").write_text(TINY_TEXTS[label], encoding="utf-8")
    (folder / "c_junk.wav").write_bytes(b"not audio at all\n" * 40)
    (folder / "c_junk.txt").write_text("hello", encoding="utf-8")
    soundfile.write(folder / "d_silent.wav", np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    (folder / "d_silent.txt").write_text("hello", encoding="utf-8")
    soundfile.write(folder / "e_untranscribed.wav", synth_tone(0.8), 16000, subtype="PCM_16")
    pattern = str(folder / "*.[wf][al]*")
    batch = tmp_path / "batch.jsonl"
    assert batch_predict("--saved-model", tiny_export, "--inputs", pattern, "--output", batch) == 0
    assert beam_predict("--saved-model", tiny_export, "--inputs", pattern, "--output", tmp_path / "beam.jsonl") == 0
    beam_rows = rows_of(sorted(tmp_path.glob("beam-*-of-*.jsonl")))
    assert_same_rows(beam_rows, rows_of([batch]))
    assert {os.path.basename(name) for name, row in beam_rows.items() if row["error"]} == {
        "c_junk.wav", "d_silent.wav", "e_untranscribed.wav"
    }
    # A second run into the same prefix is refused, not mixed.
    assert beam_predict("--saved-model", tiny_export, "--inputs", pattern, "--output", tmp_path / "beam.jsonl") == 2


def test_bad_arguments_exit_2(tiny_export, tmp_path, capsys):
    assert beam_predict("--saved-model", tmp_path / "nothing", "--inputs", "x.wav", "--output", tmp_path / "o") == 2
    assert beam_predict("--saved-model", tiny_export, "--inputs", str(tmp_path / "*.wav"), "--output", tmp_path / "o") == 2
    assert "matches no file" in capsys.readouterr().err
    assert beam_predict("--saved-model", tiny_export, "--inputs", "x.wav", "--output", tmp_path / "o", "--batch-size", 0) == 2


@pytest.mark.slow
def test_two_worker_processes_and_a_shared_model(tiny_export, tiny_corpus, tmp_path):
    """The command as run: multi_processing with 2 workers, then one model shared by both."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    batch = tmp_path / "batch.jsonl"
    assert batch_predict("--saved-model", tiny_export, "--manifest", tiny_corpus, "--output", batch) == 0
    for name, extra in (("own", []), ("shared", ["--model-copies", "1"])):
        done = subprocess.run(
            [sys.executable, "-m", "bimer_tf.beam.predict", "--saved-model", str(tiny_export), "--manifest",
             str(tiny_corpus), "--output", str(tmp_path / name), "--batch-size", "8", "--direct_num_workers", "2", *extra],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env=env,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert_same_rows(rows_of(sorted(tmp_path.glob(f"{name}-*-of-*.jsonl"))), rows_of([batch]))
