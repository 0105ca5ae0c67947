"""TensorBoard callbacks beyond Keras' own curves."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from bimer_tf.evaluation import confusion_image_tensor
from bimer_tf.training.metrics import UnweightedAccuracy


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
