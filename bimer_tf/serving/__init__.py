"""Serving: the export folder format, SavedModel export for TF Serving, warm-up requests.

    export_dir.py  the export folder format: signature and input names, metadata, checks, loaders
    export.py      `export_run`: a run's best checkpoint -> a checked SavedModel version folder
    warmup.py      TF Serving warm-up requests written into each version
    feed.py        one call of a loaded `serving_default` per batch (the in-process runners use it)

The names below load their module on first use, so reading an export's
description does not load TensorFlow.
"""

import importlib

_EXPORTS = {
    "SIGNATURE": "export_dir",
    "AUDIO_INPUT": "export_dir",
    "TEXT_INPUT": "export_dir",
    "METADATA_FILE": "export_dir",
    "ExportInfo": "export_dir",
    "read_export_info": "export_dir",
    "load_saved_model": "export_dir",
    "export_run": "export",
    "build_export_archive": "export",
    "write_warmup_requests": "warmup",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bimer_tf.serving' has no attribute '{name}'")
    return getattr(importlib.import_module(f"bimer_tf.serving.{_EXPORTS[name]}"), name)
