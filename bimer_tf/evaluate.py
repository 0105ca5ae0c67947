"""`python -m bimer_tf.evaluate`: evaluate a run or an export on any manifest.

The command's code is `bimer_tf.evaluation.evaluate`.
"""

from bimer_tf.cli import quiet_startup

quiet_startup()  # before anything imports TensorFlow

from bimer_tf.cli import run_main  # noqa: E402
from bimer_tf.evaluation.evaluate import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(run_main(main))
