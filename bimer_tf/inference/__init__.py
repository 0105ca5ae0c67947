"""Inference with an exported model.

    recognizer.py   the Python API: `Recognizer` (also `bimer_tf.Recognizer`)
    predict.py      the `python -m bimer_tf.predict` command: one utterance, or many files
    timeline/       emotion over time in a long recording (`python -m bimer_tf.timeline`)
"""

from bimer_tf.inference.recognizer import BatchResult, Prediction, Recognizer

__all__ = ["BatchResult", "Prediction", "Recognizer"]
