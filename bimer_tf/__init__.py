"""bimer_tf: bimodal (speech + text) emotion recognition on Keras 3 and TensorFlow.

    from bimer_tf import Recognizer
    recognizer = Recognizer.from_saved_model("export/bimer/1")
    recognizer.predict(audio="clip.mp3", text="I can't believe it")
"""

import importlib

__version__ = "0.1.0"

# The Python API, resolved on first use: `import bimer_tf` loads nothing else
# (no TensorFlow, no audio libraries), so every submodule can import the package.
_LAZY = {
    "Recognizer": "bimer_tf.inference.recognizer",
    "Prediction": "bimer_tf.inference.recognizer",
    "BatchResult": "bimer_tf.inference.recognizer",
}
__all__ = ["BatchResult", "Prediction", "Recognizer", "__version__"]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bimer_tf' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
