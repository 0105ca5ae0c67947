"""`python -m bimer_tf.data.augment`: offline audio augmentation of a manifest.

The command's code is `bimer_tf.data.augment_audio`.
"""

from bimer_tf.cli import run_main
from bimer_tf.data.augment_audio import main

if __name__ == "__main__":
    raise SystemExit(run_main(main))
