"""Train from a resolved config file: python -m bimer_tf.training CONFIG.yaml OUTPUT [--resume]

CONFIG.yaml holds a whole resolved config (a run directory's config.yaml, or
one written by `python -m bimer_tf.crossval` for each fold); `train.py` is the
entry point for people.
"""

import argparse

from bimer_tf.cli import quiet_startup  # noqa: E402

quiet_startup()  # before anything imports TensorFlow

from bimer_tf.cli import run_main  # noqa: E402
from bimer_tf.config import from_dict, read_yaml  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", help="resolved config YAML")
    parser.add_argument("output", help="run directory")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in OUTPUT")
    args = parser.parse_args(argv)
    config = from_dict(read_yaml(args.config))
    from bimer_tf.training.run import train

    train(config, args.output, resume=args.resume)


if __name__ == "__main__":
    raise SystemExit(run_main(main))
