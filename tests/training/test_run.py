"""One tiny training run end to end: the run directory contract and bad rows."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml

from bimer_tf.config import ExperimentConfig, from_dict
from bimer_tf.errors import InputError
from bimer_tf.training import UnweightedAccuracy, make_strategy


def test_run_directory_contract(tiny_run):
    for part in ("config.yaml", "data_report.json", "checkpoints/best.keras", "eval.json", "confusion.png"):
        assert (tiny_run / part).exists(), part
    config = from_dict(yaml.safe_load((tiny_run / "config.yaml").read_text()))
    assert isinstance(config, ExperimentConfig)
    assert config.model.speech.resnet_crnn_at.stage_widths == [4, 8]  # the resolved config, overrides included


def test_eval_json_fields(tiny_run):
    report = json.loads((tiny_run / "eval.json").read_text())
    for key in ("ua", "wa", "macro_f1", "per_class", "confusion", "labels", "n", "protocol", "split"):
        assert key in report
    assert report["protocol"] == "speaker-holdout"
    assert report["split"] == "heldout/test"
    assert report["n"] == 8 == int(np.sum(report["confusion"]))
    assert sum(c["support"] for c in report["per_class"].values()) == 8
    recalls = [report["per_class"][label]["recall"] for label in report["labels"]]
    assert report["ua"] == pytest.approx(np.mean(recalls))


def test_bad_rows_are_reported_not_fatal(tiny_run):
    report = json.loads((tiny_run / "data_report.json").read_text())
    train = report["train"]
    assert train["seen"] == 19 and train["kept"] == 16 and train["skipped"] == 3
    reasons = {item["id"]: item["reason"] for item in train["skipped_items"]}
    assert "not a readable audio file" in reasons["bad_corrupt"]
    assert "bored" in reasons["bad_label"]
    assert "no transcript" in reasons["bad_text"]


def test_tensorboard_has_curves_and_confusion_image(tiny_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    validation = EventAccumulator(str(tiny_run / "tensorboard" / "validation"), size_guidance={"tensors": 0})
    validation.Reload()
    tags = validation.Tags()["tensors"]
    assert "confusion_matrix" in tags
    assert "epoch_ua" in tags
    assert len(validation.Tensors("epoch_ua")) == 2  # one point per epoch


def test_unweighted_accuracy_is_macro_recall():
    metric = UnweightedAccuracy(3)
    y_true = np.array([0, 0, 0, 0, 1, 2])
    y_pred = np.eye(3)[[0, 0, 0, 1, 1, 0]]
    metric.update_state(y_true, y_pred)
    # recalls: 3/4, 1/1, 0/1
    assert float(metric.result()) == pytest.approx((0.75 + 1.0 + 0.0) / 3)
    metric.reset_state()
    assert float(metric.result()) == 0.0
    # Target distributions (a distilled run's) count as their largest class.
    targets = 0.6 * np.eye(3)[y_true] + 0.4 * np.eye(3)[[1, 1, 1, 1, 0, 0]]
    metric.update_state(targets, y_pred)
    assert float(metric.result()) == pytest.approx((0.75 + 1.0 + 0.0) / 3)


def test_strategy_names():
    assert make_strategy("default").num_replicas_in_sync == 1
    assert make_strategy("auto").num_replicas_in_sync == 1  # no GPU here
    with pytest.raises(InputError, match="unknown runtime.strategy"):
        make_strategy("tpu-pod")


def test_tensorboard_hparams_and_per_class_recall(tiny_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    validation = EventAccumulator(str(tiny_run / "tensorboard" / "validation"), size_guidance={"tensors": 0})
    validation.Reload()
    for label in ("neutral", "angry", "sad", "happy"):
        assert len(validation.Tensors(f"class_recall/{label}")) == 2
    assert len(validation.Tensors("best_ua")) == 2

    session = EventAccumulator(str(tiny_run / "tensorboard"), size_guidance={"tensors": 0})
    session.Reload()
    content = session.PluginTagToContent(metadata.PLUGIN_NAME)
    assert {metadata.EXPERIMENT_TAG, metadata.SESSION_START_INFO_TAG} <= set(content)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    hparams = {name: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind")) for name, value in start.hparams.items()}
    assert hparams["model.type"] == "bimer"
    assert hparams["trainer.learning_rate"] == pytest.approx(0.01)
    assert hparams["data.batch_size"] == 4
    assert hparams["spec_augment.enabled"] is True
    assert hparams["trainer.class_weight"] == "none"
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    metrics = {(m.name.group, m.name.tag) for m in experiment.metric_infos}
    assert metrics == {("validation", "epoch_ua"), ("validation", "best_ua")}


def test_best_checkpoint_is_described(tiny_run):
    best = json.loads((tiny_run / "checkpoints" / "best.json").read_text())
    report = json.loads((tiny_run / "eval.json").read_text())
    assert best["epoch"] in (1, 2)
    assert report["best_epoch"] == best["epoch"] and report["best_val_ua"] == best["val_ua"]
    assert not (tiny_run / "backup").exists()


def test_balanced_class_weights():
    from bimer_tf.training.run import class_weights

    rows = [{"label": label} for label in ["sad"] * 6 + ["angry"] * 2]
    labels = ["neutral", "angry", "sad"]
    weights = class_weights(rows, labels, "balanced")
    # n / (classes present * count); neutral has no row and no weight
    assert weights == {1: pytest.approx(8 / (2 * 2)), 2: pytest.approx(8 / (2 * 6))}
    assert sum(weights[labels.index(row["label"])] for row in rows) == pytest.approx(len(rows))
    assert class_weights(rows, labels, "none") is None


def test_warmup_cosine_schedule():
    from bimer_tf.config import load_config
    from bimer_tf.training.optimizer import learning_rate

    config = load_config(
        overrides=["trainer.lr_schedule=warmup_cosine", "trainer.warmup_ratio=0.25", "trainer.epochs=2",
                   "trainer.learning_rate=0.001"]
    )
    schedule = learning_rate(config, steps_per_epoch=10)  # 20 steps: 5 warmup, 15 decay
    rates = [float(schedule(step)) for step in range(21)]
    assert rates[0] == 0.0
    assert rates[2] == pytest.approx(0.001 * 2 / 5)
    assert rates[5] == pytest.approx(0.001)
    assert rates[5 + 15 // 2] == pytest.approx(0.001 * 0.5 * (1 + np.cos(np.pi * 7 / 15)))
    assert rates[20] == pytest.approx(0.0, abs=1e-9)
    assert rates[:6] == sorted(rates[:6]) and rates[5:] == sorted(rates[5:], reverse=True)
    assert learning_rate(load_config(), steps_per_epoch=10) == load_config().trainer.learning_rate


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.class_weight=inverse", "trainer.class_weight must be 'none' or 'balanced'"),
        ("trainer.lr_schedule=linear", "trainer.lr_schedule must be 'constant' or 'warmup_cosine'"),
        ("trainer.warmup_ratio=1.0", "trainer.warmup_ratio must lie in [0, 1)"),
        ("trainer.epochs=0", "trainer.epochs must be at least 1"),
    ],
)
def test_trainer_config_checks(override, message):
    from bimer_tf.config import load_config

    with pytest.raises(InputError, match=re.escape(message)):
        load_config(overrides=[override])


TWO_REPLICAS = """
import sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import bimer_tf.training.run as run
from bimer_tf.config import load_config

run.make_strategy = lambda name: tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
run.train(load_config(model="bimer", overrides=sys.argv[2:]), sys.argv[1])
"""


def test_class_weight_and_schedule_under_two_replicas(tiny_corpus, tiny_bert_preset, tmp_path):
    """MirroredStrategy over two CPU devices: balanced class weights (on a
    training split short of 'happy') and the warmup + cosine schedule go
    through a distributed fit."""
    from bimer_tf.data.manifest import Fold, read_manifest, read_splits, write_manifest, write_splits
    from conftest import REPO_ROOT, tiny_overrides

    rows = read_manifest(tiny_corpus)
    protocol, (fold,) = read_splits(tiny_corpus.parent / "splits.json")
    dropped = [i for i in fold.train if i.startswith("s1_happy")]  # 2 of the 4 happy training clips
    train = [i for i in fold.train if i not in dropped]
    manifest = write_manifest(rows, tmp_path / "skewed" / "manifest.jsonl")
    write_splits(rows, protocol, [Fold(fold.name, train, fold.val, fold.test)], manifest.parent)
    overrides = tiny_overrides(manifest, tiny_bert_preset) + [
        "trainer.epochs=1",
        "trainer.class_weight=balanced",
        "trainer.lr_schedule=warmup_cosine",
    ]
    done = subprocess.run(
        [sys.executable, "-c", TWO_REPLICAS, str(tmp_path / "run"), *overrides],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "strategy: MirroredStrategy with 2 replica(s)" in done.stdout
    # 14 kept rows (the 3 bad ones are skipped): 4 + 4 + 4 + 2
    expected = {"neutral": 14 / 16, "angry": 14 / 16, "sad": 14 / 16, "happy": 14 / 8}
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["train"]["kept"] == 14
    assert report["class_weight"] == pytest.approx(expected)
    assert "class weights (balanced): neutral 0.875, angry 0.875, sad 0.875, happy 1.750" in done.stdout
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["n"] == 8
