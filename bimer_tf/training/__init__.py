"""Training: resolve data, build the model under a tf.distribute strategy, fit,
select the best epoch on validation UA, evaluate on the held-out split.

    strategy.py   tf.distribute strategy, chief election, multi-worker patches
    metrics.py    UnweightedAccuracy (UA from a streaming confusion matrix)
    callbacks.py  TensorBoard callbacks (confusion image, ...)
    data.py       RunData: the manifest rows of each split of a fold
    run.py        the run directory and `train`
"""

from bimer_tf.training.data import RunData, resolve_data
from bimer_tf.training.metrics import UnweightedAccuracy
from bimer_tf.training.run import BEST_CHECKPOINT, make_optimizer, prepare_run_dir, train
from bimer_tf.training.strategy import is_chief, make_strategy, patch_keras_multi_worker

__all__ = [
    "BEST_CHECKPOINT",
    "RunData",
    "UnweightedAccuracy",
    "is_chief",
    "make_optimizer",
    "make_strategy",
    "patch_keras_multi_worker",
    "prepare_run_dir",
    "resolve_data",
    "train",
]
