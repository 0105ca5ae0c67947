"""Two real worker processes on 127.0.0.1 train one tiny BiMER model with
`runtime.strategy=multi_worker` (MultiWorkerMirroredStrategy from TF_CONFIG).

Each worker gets its own `--output`: the chief (worker 0) writes the whole run
directory, the other worker must leave its own untouched, so sharing one
output directory on a network file system is safe.
"""

import json

import pytest

from conftest import start_train_workers, tiny_overrides, wait_for_workers

WORKERS = 2
TIMEOUT_S = 300  # a whole run takes about a minute on two shared cores


@pytest.fixture(scope="module")
def multi_worker_run(tiny_corpus, tiny_bert_preset, tmp_path_factory):
    root = tmp_path_factory.mktemp("multi_worker")
    outputs = [root / f"worker{index}" for index in range(WORKERS)]
    overrides = tiny_overrides(tiny_corpus, tiny_bert_preset) + [
        "runtime.strategy=multi_worker",
        "trainer.epochs=1",
    ]
    codes = wait_for_workers(start_train_workers(overrides, outputs, root), TIMEOUT_S)
    logs = [(root / f"worker{index}.log").read_text() for index in range(WORKERS)]
    for index, (code, log) in enumerate(zip(codes, logs)):
        assert code == 0, f"worker {index} exited with {code} (negative: killed):\n{log[-6000:]}"
    return root, outputs, logs


def test_both_workers_join_one_two_replica_strategy(multi_worker_run):
    _, _, logs = multi_worker_run
    for log in logs:
        assert "strategy: MultiWorkerMirroredStrategy with 2 replica(s)" in log


def test_chief_writes_the_run_directory(multi_worker_run):
    _, (chief, _), _ = multi_worker_run
    for part in ("config.yaml", "data_report.json", "checkpoints/best.keras", "eval.json", "confusion.png"):
        assert (chief / part).exists(), part
    report = json.loads((chief / "eval.json").read_text())
    assert report["n"] == 8 == sum(map(sum, report["confusion"]))
    assert report["split"] == "heldout/test"


def test_other_worker_leaves_no_files(multi_worker_run):
    root, (_, other), logs = multi_worker_run
    assert not other.exists() or not any(other.iterdir())
    assert "the chief worker evaluates and writes the run directory" in logs[1]
    assert not list((root / "tmp1").glob("bimer_worker_*"))  # its scratch run directory is gone


def test_chief_logs_the_validation_pass(multi_worker_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, (chief, _), _ = multi_worker_run
    validation = EventAccumulator(str(chief / "tensorboard" / "validation"), size_guidance={"tensors": 0})
    validation.Reload()
    assert {"confusion_matrix", "epoch_ua"} <= set(validation.Tags()["tensors"])
    assert len(validation.Tensors("epoch_ua")) == 1
