"""One tiny training run end to end: the run directory contract and bad rows."""

import json

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
    assert config.model.speech.stage_widths == [4, 8]  # the resolved config, overrides included


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


def test_strategy_names():
    assert make_strategy("default").num_replicas_in_sync == 1
    assert make_strategy("auto").num_replicas_in_sync == 1  # no GPU here
    with pytest.raises(InputError, match="unknown runtime.strategy"):
        make_strategy("tpu-pod")
