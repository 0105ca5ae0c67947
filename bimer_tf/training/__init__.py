"""Training: resolve data, build the model under a tf.distribute strategy, fit,
select the best epoch on validation UA, evaluate on the held-out split.

    strategy.py   tf.distribute strategy, chief election, Keras multi-replica patches
    metrics.py    UnweightedAccuracy (UA from a streaming confusion matrix)
    callbacks.py  TensorBoard summaries (confusion image, per-class recall, HParams)
    resume.py     best-epoch checkpoint and backup that survive an interruption
    run_dir.py    the run directory's layout and saved state (no TensorFlow)
    run_data.py   RunData: the manifest rows of each split of a fold
    initialization.py  model.init: branches copied from finished runs
    optimizer.py  Adam/AdamW, the learning-rate schedule and per-variable rate factors
    run.py        `train`

The names below load their module (and TensorFlow) on first use, so tools
that only read run directories stay light.

`python -m bimer_tf.training CONFIG.yaml OUTPUT [--resume]` trains from a
resolved config file (a run directory's config.yaml), as the cross-validation
runner does for each fold.
"""

import importlib

_EXPORTS = {
    "BEST_CHECKPOINT": "run_dir",
    "prepare_run_dir": "run_dir",
    "RunData": "run_data",
    "resolve_data": "run_data",
    "UnweightedAccuracy": "metrics",
    "make_optimizer": "optimizer",
    "train": "run",
    "is_chief": "strategy",
    "make_strategy": "strategy",
    "patch_keras_distributed": "strategy",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bimer_tf.training' has no attribute '{name}'")
    return getattr(importlib.import_module(f"bimer_tf.training.{_EXPORTS[name]}"), name)
