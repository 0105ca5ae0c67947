"""Training: resolve data, build the model under a tf.distribute strategy, fit,
select the best epoch on validation UA, evaluate on the held-out split.

Writes the run directory of DESIGN.md section 3:
`config.yaml`, `data_report.json`, `checkpoints/best.keras`, `tensorboard/`,
`eval.json`, `confusion.png`.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from bimer_tf.config import ExperimentConfig, save_config
from bimer_tf.data.manifest import Fold, read_manifest, read_splits, select_fold
from bimer_tf.data.pipeline import build_dataset, make_spec_augment, validate_rows
from bimer_tf.errors import InputError
from bimer_tf.evaluation import (
    classification_report,
    confusion_image_tensor,
    predict_dataset,
    write_eval,
)
from bimer_tf.frontend import AudioFrontend

BEST_CHECKPOINT = "checkpoints/best.keras"


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy named by `runtime.strategy`."""
    if name == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise InputError("runtime.strategy=multi_worker needs the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "default":
        return tf.distribute.get_strategy()
    raise InputError(
        f"unknown runtime.strategy '{name}'; choose auto, mirrored, multi_worker or default"
    )


@keras.saving.register_keras_serializable(package="bimer_tf")
class UnweightedAccuracy(keras.metrics.Metric):
    """UA: recall averaged over the classes present, from a streaming confusion matrix.

    The accumulated matrix (rows: true, columns: predicted) stays readable in
    `confusion` after an evaluation pass.
    """

    def __init__(self, num_classes, name="ua", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.confusion = self.add_variable(
            shape=(num_classes, num_classes), initializer="zeros", dtype="float32", name="confusion"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = tf.reshape(tf.cast(y_true, tf.int32), [-1])
        y_pred = tf.argmax(tf.reshape(y_pred, [-1, self.num_classes]), axis=-1, output_type=tf.int32)
        batch = tf.math.confusion_matrix(
            y_true, y_pred, num_classes=self.num_classes, dtype=tf.float32
        )
        self.confusion.assign_add(batch)

    def result(self):
        support = tf.reduce_sum(self.confusion, axis=1)
        recall = tf.math.divide_no_nan(tf.linalg.diag_part(self.confusion), support)
        present = tf.cast(support > 0, tf.float32)
        return tf.math.divide_no_nan(tf.reduce_sum(recall * present), tf.reduce_sum(present))

    def reset_state(self):
        self.confusion.assign(tf.zeros_like(self.confusion))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


class ValidationConfusionImage(keras.callbacks.Callback):
    """Logs the validation confusion matrix as a TensorBoard image each epoch."""

    def __init__(self, metric: UnweightedAccuracy, labels, log_dir):
        super().__init__()
        self.metric = metric
        self.labels = labels
        self.writer = tf.summary.create_file_writer(str(Path(log_dir) / "validation"))

    def on_epoch_end(self, epoch, logs=None):
        # Keras evaluates validation after training each epoch, so the metric
        # now holds the validation pass.
        confusion = np.rint(self.metric.confusion.numpy()).astype(int)
        ua = (logs or {}).get("val_ua", float("nan"))
        image = confusion_image_tensor(confusion, self.labels, f"validation, epoch {epoch + 1}: UA {ua:.3f}")
        with self.writer.as_default():
            tf.summary.image("confusion_matrix", image, step=epoch)
        self.writer.flush()


@dataclass
class RunData:
    protocol: str
    fold: Fold
    splits: dict  # split name -> list of manifest rows


def resolve_data(config: ExperimentConfig) -> RunData:
    """Reads the manifest and its splits (generating the demo corpus if none is named)."""
    data = config.data
    if data.manifest is None:
        from bimer_tf.data.demo import ensure_demo_corpus

        manifest = ensure_demo_corpus(data.demo_dir, labels=tuple(data.labels))
    else:
        manifest = Path(data.manifest)
    splits_path = Path(data.splits) if data.splits else Path(manifest).parent / "splits.json"
    protocol, folds = read_splits(splits_path)
    fold = select_fold(folds, data.fold)
    by_id = {row["id"]: row for row in read_manifest(manifest)}
    splits = {}
    for split in ("train", "val", "test"):
        missing = [i for i in getattr(fold, split) if i not in by_id]
        if missing:
            raise InputError(
                f"{splits_path}: fold '{fold.name}' {split} names ids missing from {manifest}: {missing[:3]}"
            )
        splits[split] = [by_id[i] for i in getattr(fold, split)]
    return RunData(data.protocol or protocol, fold, splits)


def prepare_run_dir(output: str | Path) -> Path:
    run_dir = Path(output)
    if run_dir.exists():
        print(f"replacing the previous run in {run_dir}")
        for part in ("checkpoints", "tensorboard", "eval.json", "confusion.png"):
            target = run_dir / part
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    return run_dir


def train(config: ExperimentConfig, output: str | Path) -> Path:
    """Runs one experiment and returns its run directory."""
    from bimer_tf.models import build_model, build_text_preprocessor

    keras.utils.set_random_seed(config.trainer.seed)
    if config.runtime.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    run_dir = prepare_run_dir(output)
    save_config(config, run_dir / "config.yaml")
    labels = config.data.labels

    strategy = make_strategy(config.runtime.strategy)
    print(f"strategy: {type(strategy).__name__} with {strategy.num_replicas_in_sync} replica(s)")
    with strategy.scope():
        model = build_model(config)
        ua = UnweightedAccuracy(len(labels), name="ua")
        model.compile(
            optimizer=make_optimizer(config),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=["accuracy", ua],
        )
    needs_audio = "log_mel" in model.input
    needs_text = "token_ids" in model.input

    data = resolve_data(config)
    frontend = AudioFrontend(config.audio) if needs_audio else None
    preprocessor = build_text_preprocessor(config) if needs_text else None
    checks = {
        split: validate_rows(rows, labels, frontend, needs_text) for split, rows in data.splits.items()
    }
    report = {split: check.summary() for split, check in checks.items()}
    (run_dir / "data_report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    for split, check in checks.items():
        summary = check.summary()
        print(f"{split}: {summary['kept']} of {summary['seen']} rows, per class {summary['kept_per_class']}")
        for item in check.skipped[:5]:
            print(f"  skipped {item['id']}: {item['reason']}")
        if len(check.skipped) > 5:
            print(f"  ... {len(check.skipped) - 5} more in {run_dir / 'data_report.json'}")

    def dataset(split, training):
        return build_dataset(
            checks[split].kept,
            labels,
            frontend,
            preprocessor,
            batch_size=config.data.batch_size,
            training=training,
            spec_augment=make_spec_augment(config.spec_augment, seed=config.trainer.seed),
            shuffle_buffer=config.data.shuffle_buffer,
            cache=config.data.cache,
            seed=config.trainer.seed,
        )

    train_ds, val_ds = dataset("train", True), dataset("val", False)
    callbacks = [
        keras.callbacks.ModelCheckpoint(
            str(run_dir / BEST_CHECKPOINT), monitor="val_ua", mode="max", save_best_only=True
        ),
        keras.callbacks.TensorBoard(str(run_dir / "tensorboard")),
        ValidationConfusionImage(ua, labels, run_dir / "tensorboard"),
    ]
    if config.trainer.early_stopping_patience > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_ua", mode="max", patience=config.trainer.early_stopping_patience
            )
        )
    model.fit(train_ds, validation_data=val_ds, epochs=config.trainer.epochs, callbacks=callbacks)

    best = keras.saving.load_model(run_dir / BEST_CHECKPOINT)
    split = "test" if checks["test"].kept else "val"
    y_true, y_prob = predict_dataset(best, dataset(split, False))
    result = classification_report(y_true, y_prob, labels)
    write_eval(result, run_dir, protocol=data.protocol, split=f"{data.fold.name}/{split}")
    print(
        f"{split} ({data.protocol}, fold {data.fold.name}, n={result['n']}): "
        f"UA {result['ua']:.4f}  WA {result['wa']:.4f}  macro-F1 {result['macro_f1']:.4f}"
    )
    print(f"run directory: {run_dir}")
    return run_dir


def make_optimizer(config: ExperimentConfig) -> keras.optimizers.Optimizer:
    t = config.trainer
    if t.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=t.learning_rate, weight_decay=t.weight_decay)
    if t.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=t.learning_rate)
    raise InputError(f"unknown trainer.optimizer '{t.optimizer}'; choose adamw or adam")
