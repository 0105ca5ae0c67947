"""Train a bimodal emotion recognition model and evaluate it.

    python train.py --model bimer                      # demo corpus, configs/demo.yaml
    python train.py --model bimer --config configs/bimer_paper.yaml \
        --set data.manifest=data/iemocap/manifest.jsonl --output runs/iemocap

Writes runs/<name>/: config.yaml, data_report.json, checkpoints/best.keras
(selected on validation UA), tensorboard/ (watch with
`tensorboard --logdir runs`), eval.json and confusion.png for the held-out split.
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bimer_tf.cli import add_config_arguments, run_main  # noqa: E402
from bimer_tf.config import DEFAULT_CONFIG_FILES, load_config  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model",
        default="bimer",
        choices=sorted(DEFAULT_CONFIG_FILES),
        help="model to train (default: bimer); its default config is configs/<model default>.yaml",
    )
    add_config_arguments(parser)
    parser.add_argument("--output", metavar="DIR", help="run directory (default: runs/<config name>)")
    args = parser.parse_args(argv)

    config = load_config(args.config, args.overrides, model_type=args.model)
    from bimer_tf.training import train  # TensorFlow loads only after the arguments are valid

    train(config, args.output or os.path.join("runs", config.name))


if __name__ == "__main__":
    raise SystemExit(run_main(main))
