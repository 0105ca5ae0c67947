"""Evaluation report: the metrics of `eval.json` and the confusion-matrix figure."""

from __future__ import annotations

import io
import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support


def classification_report(y_true, y_prob, labels: list[str]) -> dict:
    """UA (macro recall), WA (accuracy), macro F1, per-class scores, confusion."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_prob).argmax(axis=-1)
    ids = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=ids, zero_division=0
    )
    present = support > 0  # UA averages over the classes the split contains
    return {
        "ua": float(recall[present].mean()) if present.any() else 0.0,
        "wa": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=np.flatnonzero(present), average="macro", zero_division=0)
        ),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion": confusion_matrix(y_true, y_pred, labels=ids).tolist(),
        "labels": list(labels),
        "n": int(len(y_true)),
    }


def confusion_figure(confusion, labels: list[str], title: str = ""):
    """A matplotlib figure of counts with row-normalised colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confusion = np.asarray(confusion)
    rows = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, rows, out=np.zeros(confusion.shape, float), where=rows > 0)
    size = 1.2 + 0.9 * len(labels)
    figure, axes = plt.subplots(figsize=(size + 1, size))
    image = axes.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, label="share of true class")
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            axes.text(
                j, i, str(confusion[i, j]), ha="center", va="center",
                color="white" if normalised[i, j] > 0.5 else "black",
            )
    if title:
        axes.set_title(title)
    figure.tight_layout()
    return figure


def save_confusion_png(confusion, labels, path, title=""):
    import matplotlib.pyplot as plt

    figure = confusion_figure(confusion, labels, title)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def confusion_image_tensor(confusion, labels, title=""):
    """[1, H, W, 4] uint8 PNG-decoded image for `tf.summary.image`."""
    import matplotlib.pyplot as plt

    figure = confusion_figure(confusion, labels, title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return tf.image.decode_png(buffer.getvalue(), channels=4)[tf.newaxis]


def predict_dataset(model: keras.Model, dataset) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) over a dataset of (features, label) batches."""
    y_true, y_prob = [], []
    for features, label in dataset:
        y_prob.append(np.asarray(model(features, training=False)))
        y_true.append(label.numpy())
    return np.concatenate(y_true), np.concatenate(y_prob)


def write_eval(report: dict, run_dir: str | Path, protocol: str, split: str) -> Path:
    run_dir = Path(run_dir)
    report = {**report, "protocol": protocol, "split": split}
    path = run_dir / "eval.json"
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    save_confusion_png(
        report["confusion"], report["labels"], run_dir / "confusion.png",
        title=f"{split} ({protocol}): UA {report['ua']:.3f}, WA {report['wa']:.3f}",
    )
    return path
