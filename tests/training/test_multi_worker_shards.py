"""Two worker processes on 127.0.0.1 train one tiny BiMER model from sharded
TFRecords (`data.format=tfrecord`, `runtime.strategy=multi_worker`): each
reads its own training shard files (`AutoShardPolicy.FILE`), two of four.

The shards are written by `python -m bimer_tf.data.shard --min-shards 4`;
their row counts are uneven (one worker's train files hold 9 usable rows,
the other's 7): the workers repeat their data and take the same number of
steps. Validation reads every shard on every worker, keeping its share of
each batch, so its metrics count every row once.
"""

import json
import re

import pytest

from conftest import start_train_workers, tiny_overrides, wait_for_workers

WORKERS = 2
TIMEOUT_S = 300
SHARD_LINE = re.compile(r"^(train): worker (\d) of 2 reads (\d+) of (\d+) shards: (.+)$", re.M)


def run_workers(overrides, root):
    outputs = [root / f"worker{index}" for index in range(WORKERS)]
    return wait_for_workers(start_train_workers(overrides, outputs, root), TIMEOUT_S)


@pytest.fixture(scope="module")
def shard_run(tiny_corpus, tiny_bert_preset, tmp_path_factory):
    from bimer_tf.data.shard import main as shard_main

    root = tmp_path_factory.mktemp("multi_worker_shards")
    splits = tiny_corpus.parent / "splits.json"
    shard_main(
        ["--manifest", str(tiny_corpus), "--splits", str(splits), "--out", str(root / "shards"),
         "--min-shards", "4", "--workers", "1", "--no-progress"]
    )
    overrides = tiny_overrides(tiny_corpus, tiny_bert_preset) + [
        "data.format=tfrecord",
        f"data.shards={root / 'shards'}",
        "runtime.strategy=multi_worker",
        "trainer.epochs=1",
    ]
    codes = run_workers(overrides, root)
    logs = [(root / f"worker{index}.log").read_text() for index in range(WORKERS)]
    for index, (code, log) in enumerate(zip(codes, logs)):
        assert code == 0, f"worker {index} exited with {code} (negative: killed):\n{log[-6000:]}"
    return root, logs


def test_each_worker_reads_its_own_shards(shard_run):
    root, logs = shard_run
    read = {}
    for index, log in enumerate(logs):
        assert "strategy: MultiWorkerMirroredStrategy with 2 replica(s)" in log
        for split, worker, count, total, names in SHARD_LINE.findall(log):
            assert int(worker) == index and (int(count), int(total)) == (2, 4)
            read[index, split] = set(names.split(", "))
    first, second = read[0, "train"], read[1, "train"]
    assert first.isdisjoint(second)
    assert first | second == {f"train-{i:05d}-of-00004.tfrecord" for i in range(4)}
    report = json.loads((root / "worker0" / "data_report.json").read_text())
    assert report["train"]["shards"] == 4 and report["train"]["worker_shards"] == 2
    assert set(report["train"]["worker_shard_files"]) == read[0, "train"]


def test_both_workers_finish_and_the_chief_writes_the_run(shard_run):
    root, logs = shard_run
    assert "the chief worker evaluates and writes the run directory" in logs[1]
    report = json.loads((root / "worker0" / "eval.json").read_text())
    assert report["n"] == 8 and report["split"] == "heldout/test"
    assert not (root / "worker0" / "cache").exists()
    assert not (root / "worker1").exists() or not any((root / "worker1").iterdir())
