"""Train an emotion recognition model (speech, text or both) and evaluate it.

    python train.py --model bimer                      # demo corpus, bimer_tf/default_configs/bimer.yaml
    python train.py --model ser_whisper --set trainer.epochs=5
    python train.py --model bimer --config configs/iemocap/bimer.yaml --output runs/iemocap

Writes runs/<name>/: config.yaml, data_report.json, checkpoints/best.keras
(selected on validation UA), tensorboard/ (watch with
`tensorboard --logdir runs`), eval.json and confusion.png for the held-out split.
An interrupted run continues from its last finished epoch with the same
command plus `--resume`.
"""

import argparse
import os

from bimer_tf.cli import quiet_startup

quiet_startup()  # before anything imports TensorFlow

from bimer_tf.cli import add_config_arguments, run_main  # noqa: E402
from bimer_tf.config import MODEL_NAMES, load_config  # noqa: E402

DEFAULT_MODEL = "bimer"


def main(argv=None):
    models = "\n".join(f"  {name:<22}{description}" for name, (*_, description) in MODEL_NAMES.items())
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="models (--model NAME reads bimer_tf/default_configs/NAME.yaml: the demo corpus, offline\n"
        f"but ter_roberta; the corpus recipes are in configs/):\n{models}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        choices=list(MODEL_NAMES),
        metavar="NAME",
        help=f"model to train (default: {DEFAULT_MODEL} unless --config is given); see the list below",
    )
    add_config_arguments(parser)
    parser.add_argument("--output", metavar="DIR", help="run directory (default: runs/<config name>)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run in the run directory from its last finished epoch "
        "(same --model/--config/--set); without it an earlier run there is replaced",
    )
    args = parser.parse_args(argv)

    model = args.model or (None if args.config else DEFAULT_MODEL)
    config = load_config(args.config, args.overrides, model=model)
    from bimer_tf.training import train  # TensorFlow loads only after the arguments are valid

    train(config, args.output or os.path.join("runs", config.name), resume=args.resume)


if __name__ == "__main__":
    raise SystemExit(run_main(main))
