"""`python -m bimer_tf.timeline`: the emotions of a long recording over time.

The command's code is `bimer_tf.inference.timeline.command`; the library is
`bimer_tf.inference.timeline`.
"""

from bimer_tf.cli import quiet_startup

quiet_startup()  # before anything imports TensorFlow

from bimer_tf.cli import run_main  # noqa: E402
from bimer_tf.inference.timeline.command import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(run_main(main))
