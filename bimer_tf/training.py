"""Training: resolve data, build the model under a tf.distribute strategy, fit,
select the best epoch on validation UA, evaluate on the held-out split.

Writes the run directory of DESIGN.md section 3:
`config.yaml`, `data_report.json`, `checkpoints/best.keras`, `tensorboard/`,
`eval.json`, `confusion.png`.

Under `runtime.strategy=multi_worker` every worker runs this same function;
only the chief (worker 0) writes the run directory.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
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
from bimer_tf.frontend import build_speech_frontend

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


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run directory.

    True except on the non-chief workers of a multi-worker cluster: the chief
    is the `chief` task if TF_CONFIG names one, otherwise worker 0.
    """
    resolver = strategy.cluster_resolver
    if resolver is None or resolver.task_type in (None, "chief"):
        return True
    cluster = resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in cluster


def patch_keras_multi_worker(model: keras.Model, strategy: tf.distribute.Strategy) -> None:
    """Works around two Keras 3 `fit` failures with more than one worker, on `model` only.

    1. Before the first step, Keras builds the metrics from one input batch that
       it gets by MEAN-reducing a distributed batch across replicas.
       `Strategy.reduce` takes one tensor, so dict features fail with "Attempt to
       convert a value ({'log_mel': PerReplica...}) ... to a Tensor"
       (keras-team/keras#20329). The build needs shapes only: it now gets this
       worker's first local replica batch, with no cross-worker communication.
    2. Each step's logs are averaged with `strategy.reduce("MEAN", log, axis=0)`,
       which fails on scalars with "Invalid reduction dimension 0 for input with
       0 dimensions" (tensorflow/tensorflow#72388). The steps now return their
       logs with a leading axis of one, the axis that reduction averages over.

    A one-worker cluster takes Keras' single-machine path and is left alone.
    """
    if strategy.num_replicas_in_sync == len(strategy.extended.worker_devices):
        return
    symbolic_build = model._maybe_symbolic_build

    def build_from_local_replica(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda value: strategy.experimental_local_results(value)[0], next(batches)
                )
                break
        symbolic_build(data_batch=data_batch)

    def with_leading_axis(step):
        return lambda data: tf.nest.map_structure(lambda log: tf.expand_dims(log, 0), step(data))

    model._maybe_symbolic_build = build_from_local_replica
    model.train_step = with_leading_axis(model.train_step)
    model.test_step = with_leading_axis(model.test_step)


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
        # now holds the validation pass. Under a distribution strategy this read
        # sums the matrix over all replicas; across workers that is a collective
        # op, so every worker runs this callback.
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
    from bimer_tf.models import build_model, build_text_preprocessor, task_modalities

    keras.utils.set_random_seed(config.trainer.seed)
    if config.runtime.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    labels = config.data.labels

    strategy = make_strategy(config.runtime.strategy)
    strategy_name = (
        "MultiWorkerMirroredStrategy"
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        else type(strategy).__name__
    )
    print(f"strategy: {strategy_name} with {strategy.num_replicas_in_sync} replica(s)")
    # All workers run the same callbacks and checkpoint saves, since reading the
    # synchronised metric variables takes every worker (a collective op); the
    # non-chief ones write into a scratch directory that is removed at the end.
    chief = is_chief(strategy)
    scratch = None if chief else tempfile.TemporaryDirectory(prefix="bimer_worker_")
    run_dir = prepare_run_dir(output if chief else Path(scratch.name) / "run")
    save_config(config, run_dir / "config.yaml")
    with strategy.scope():
        model = build_model(config)
        ua = UnweightedAccuracy(len(labels), name="ua")
        model.compile(
            optimizer=make_optimizer(config),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=["accuracy", ua],
        )
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        patch_keras_multi_worker(model, strategy)
    needs_audio, needs_text = task_modalities(config)

    data = resolve_data(config)
    frontend = build_speech_frontend(config) if needs_audio else None
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

    # The datasets come from in-memory file lists, not files to divide among
    # workers: each worker runs the whole pipeline and keeps its share of every
    # batch. The shuffle is seeded, so all workers see the same order and the
    # shares are disjoint.
    sharding = tf.data.Options()
    sharding.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA

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
        ).with_options(sharding)

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
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=config.trainer.epochs,
        callbacks=callbacks,
        shuffle=False,  # the training dataset shuffles itself, every epoch
    )
    if not chief:
        scratch.cleanup()
        print("training done; the chief worker evaluates and writes the run directory")
        return Path(output)

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
