"""TensorBoard summaries beyond Keras' own curves: the validation confusion
matrix, per-class validation recall, the best validation UA so far, and the
HParams dashboard entry of a run; and the swap of averaged weights
(`trainer.ema_momentum`) around validation and the best checkpoint."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from bimer_tf.evaluation.metrics import confusion_image_tensor
from bimer_tf.training.metrics import UnweightedAccuracy

# The HParams dashboard's metrics: tags of the `validation` run of each session.
HPARAM_METRICS = (("epoch_ua", "validation UA (last epoch)"), ("best_ua", "best validation UA"))


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


class ValidationScalars(keras.callbacks.Callback):
    """Per-class validation recall (`class_recall/<label>`) and the best
    validation UA so far (`best_ua`), each epoch, beside Keras' `epoch_ua`.

    Recall comes from the confusion matrix the UA metric accumulated over the
    validation pass (every worker reads it: a collective op across workers).
    `best` continues a resumed run's running maximum.
    """

    def __init__(self, metric: UnweightedAccuracy, labels, log_dir, best=None):
        super().__init__()
        self.metric = metric
        self.labels = labels
        self.best = -math.inf if best is None else best
        self.writer = tf.summary.create_file_writer(str(Path(log_dir) / "validation"))

    def on_epoch_end(self, epoch, logs=None):
        confusion = self.metric.confusion.numpy()
        support = confusion.sum(axis=1)
        ua = (logs or {}).get("val_ua")
        with self.writer.as_default():
            for index, label in enumerate(self.labels):
                if support[index] > 0:
                    tf.summary.scalar(f"class_recall/{label}", confusion[index, index] / support[index], step=epoch)
            if ua is not None:
                self.best = max(self.best, float(np.mean(ua)))
                tf.summary.scalar("best_ua", self.best, step=epoch)
        self.writer.flush()


class AveragedWeights(keras.callbacks.SwapEMAWeights):
    """`trainer.ema_momentum`: the model is validated with the optimizer's moving
    average of its weights (Keras swaps it in around each evaluation), and
    `swapped()` puts the average in the model for a save. Between the two,
    the model holds the raw weights, which training goes on from and a
    resumable backup keeps (the average is optimizer state, saved with it)."""

    def __init__(self):
        super().__init__(swap_on_epoch=False)

    @contextlib.contextmanager
    def swapped(self):
        self._swap_variables()
        try:
            yield
        finally:
            self._swap_variables()


def hparams_of(config) -> dict:
    """The resolved config's main values, as shown in the HParams dashboard."""
    return {
        "model.type": config.model.type,
        "model.speech.type": config.model.speech.type,
        "text.preset": config.text.preset,
        "trainer.optimizer": config.trainer.optimizer,
        "trainer.learning_rate": config.trainer.learning_rate,
        "trainer.lr_schedule": config.trainer.lr_schedule,
        "data.batch_size": config.data.batch_size,
        "trainer.epochs": config.trainer.epochs,
        "spec_augment.enabled": config.spec_augment.enabled,
        "trainer.class_weight": config.trainer.class_weight,
        "trainer.ema_momentum": config.trainer.ema_momentum,
        # 0 when no teachers: the dashboard can then sort distilled runs from the others.
        "trainer.teacher_weight": config.trainer.teacher_weight if config.trainer.teachers else 0.0,
    }


def write_hparams(config, log_dir) -> None:
    """Records the run as one session of TensorBoard's HParams dashboard.

    The session is `log_dir`; its metrics are the `validation` run's
    `epoch_ua` (last value) and `best_ua`. Runs with the same values (the
    folds of a cross-validation) form one group.
    """
    from tensorboard.plugins.hparams import api as hp

    values = hparams_of(config)
    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        hp.hparams_config(
            hparams=[hp.HParam(name) for name in values],
            metrics=[hp.Metric(tag, group="validation", display_name=name) for tag, name in HPARAM_METRICS],
        )
        hp.hparams(values)
    writer.flush()
    writer.close()


def flush_keras_tensorboard(callback: keras.callbacks.TensorBoard) -> None:
    """Writes out a Keras TensorBoard callback's pending events (it flushes only
    when training ends, so a killed process would lose its last epochs)."""
    for writer in getattr(callback, "_writers", {}).values():
        writer.flush()
