"""`python -m bimer_tf.crossval`: cross-validate an experiment over every fold.

The command's code is `bimer_tf.evaluation.crossval`.
"""

from bimer_tf.cli import quiet_startup

quiet_startup()  # before anything imports TensorFlow

from bimer_tf.cli import run_main  # noqa: E402
from bimer_tf.evaluation.crossval import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(run_main(main))
