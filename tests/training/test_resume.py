"""`train.py --resume`: a real training process is killed (SIGKILL) after a
finished epoch and resumed; the run must end as if never stopped."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import REPO_ROOT, tiny_overrides

EPOCHS = 8
KILL_AFTER_EPOCH = 2
TIMEOUT_S = 400


def event_steps(log_dir: Path) -> dict[str, list[int]]:
    """{tag: steps} over every event file directly in `log_dir`, duplicates kept."""
    import tensorflow as tf
    from tensorboard.compat.proto import event_pb2

    steps = defaultdict(list)
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                steps[value.tag].append(event.step)
    return {tag: sorted(found) for tag, found in steps.items()}


def scalar_values(log_dir: Path, tag: str) -> list[float]:
    """Values of a scalar tag in step order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    accumulator.Reload()
    import tensorflow as tf

    return [float(tf.make_ndarray(event.tensor_proto)) for event in accumulator.Tensors(tag)]


def train_main(argv) -> int:
    """`train.py` run in this process; returns its exit code."""
    import importlib.util

    from bimer_tf.cli import run_main

    spec = importlib.util.spec_from_file_location("train_script", REPO_ROOT / "train.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return run_main(script.main, argv)


def train_command(output, overrides, resume=False):
    command = [sys.executable, "train.py", "--model", "bimer", "--output", str(output)]
    for override in overrides:
        command += ["--set", override]
    return command + (["--resume"] if resume else [])


def committed_epoch(run_dir: Path) -> int:
    try:
        return json.loads((run_dir / "backup" / "state.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


@pytest.fixture(scope="module")
def resumed_run(tiny_corpus, tiny_bert_preset, tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    run_dir = root / "run"
    # Early stopping would cut the run short; patience above the epoch count
    # keeps its counters in the state without stopping.
    overrides = tiny_overrides(tiny_corpus, tiny_bert_preset) + [
        f"trainer.epochs={EPOCHS}",
        f"trainer.early_stopping_patience={EPOCHS + 1}",
    ]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(root / "first.log", "w") as log:
        first = subprocess.Popen(
            train_command(run_dir, overrides), cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + TIMEOUT_S
    while committed_epoch(run_dir) < KILL_AFTER_EPOCH and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_after = committed_epoch(run_dir)
    assert KILL_AFTER_EPOCH <= killed_after < EPOCHS, (root / "first.log").read_text()[-4000:]
    assert not (run_dir / "eval.json").exists()

    second = subprocess.run(
        train_command(run_dir, overrides, resume=True),
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
    )
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    return run_dir, killed_after, second.stdout


def test_resume_starts_after_the_last_finished_epoch(resumed_run):
    run_dir, killed_after, log = resumed_run
    assert f"resuming {run_dir} after epoch {killed_after} of {EPOCHS}" in log
    assert f"Epoch {killed_after + 1}/{EPOCHS}" in log
    assert f"Epoch {killed_after}/{EPOCHS}" not in log  # no finished epoch is trained again


def test_run_ends_complete(resumed_run):
    run_dir, _, _ = resumed_run
    report = json.loads((run_dir / "eval.json").read_text())
    assert report["n"] == 8 and report["split"] == "heldout/test"
    assert (run_dir / "confusion.png").is_file()
    assert not (run_dir / "backup").exists()  # removed once the run is complete


def test_one_tensorboard_history(resumed_run):
    run_dir, _, _ = resumed_run
    every_epoch = list(range(EPOCHS))
    validation = event_steps(run_dir / "tensorboard" / "validation")
    for tag in ("epoch_ua", "epoch_loss", "best_ua", "confusion_matrix", "class_recall/angry"):
        assert validation[tag] == every_epoch, tag
    train = event_steps(run_dir / "tensorboard" / "train")
    for tag in ("epoch_loss", "epoch_ua", "epoch_learning_rate"):
        assert train[tag] == every_epoch, tag
    per_iteration = validation["evaluation_ua_vs_iterations"]
    assert len(per_iteration) == EPOCHS == len(set(per_iteration))
    # The HParams session is written once, when the run starts.
    session = event_steps(run_dir / "tensorboard")
    assert session["_hparams_/session_start_info"] == [0]


def test_best_checkpoint_is_the_best_epoch_over_the_interruption(resumed_run):
    run_dir, _, _ = resumed_run
    validation = run_dir / "tensorboard" / "validation"
    history = scalar_values(validation, "epoch_ua")
    best = json.loads((run_dir / "checkpoints" / "best.json").read_text())
    assert best["val_ua"] == pytest.approx(max(history), abs=1e-6)
    assert best["epoch"] == history.index(max(history)) + 1  # the first epoch reaching it
    assert scalar_values(validation, "best_ua")[-1] == pytest.approx(max(history), abs=1e-6)
    report = json.loads((run_dir / "eval.json").read_text())
    assert report["best_epoch"] == best["epoch"]


def test_resume_with_another_config_is_refused(resumed_run, tiny_corpus, tiny_bert_preset, capsys):
    run_dir, _, _ = resumed_run
    overrides = tiny_overrides(tiny_corpus, tiny_bert_preset) + ["trainer.epochs=3"]
    assert train_main(train_command(run_dir, overrides, resume=True)[2:]) == 2
    assert "cannot resume" in capsys.readouterr().err


def test_resume_of_a_finished_run_changes_nothing(resumed_run, tiny_corpus, tiny_bert_preset, capsys):
    run_dir, _, _ = resumed_run
    before = (run_dir / "eval.json").read_text()
    overrides = tiny_overrides(tiny_corpus, tiny_bert_preset) + [
        f"trainer.epochs={EPOCHS}",
        f"trainer.early_stopping_patience={EPOCHS + 1}",
    ]
    assert train_main(train_command(run_dir, overrides, resume=True)[2:]) == 0
    assert "nothing to resume" in capsys.readouterr().out
    assert (run_dir / "eval.json").read_text() == before
