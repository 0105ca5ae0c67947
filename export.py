"""Export a trained run as a TensorFlow Serving model version.

    python export.py --run runs/bimer-demo --output export/bimer [--version N] [--xla]

Writes export/bimer/<N>/ (SavedModel, signature `serving_default`: inputs
`audio_wav` (WAV bytes) and `text`; outputs `probabilities`, `label`,
`label_id`), then reloads it in a fresh process and checks that it agrees with
the Keras model within 1e-4. Serve it with
`--model_base_path=$PWD/export/bimer` (the folder holding the versions).
With `--xla` the model part of the graph is XLA-compiled (faster on CPU; TF
Serving then needs `--xla_cpu_compilation_enabled=true`). `--run` given
more than once exports the runs' ensemble: one graph that runs the shared
front end once and answers the mean of the runs' probabilities (e.g. the
fold models of `python -m bimer_tf.crossval`); with `--average weights`, one
model whose weights are the mean of the runs' (runs of one model config
fine-tuned from the same starting weights), at one model's cost; with
`--average encoder` (speech models whose top Whisper layers were trained),
those layers averaged and run once, under each run's own pooling and head.
"""

import argparse

from bimer_tf.cli import quiet_startup

quiet_startup()  # before anything imports TensorFlow

from bimer_tf.cli import run_main  # noqa: E402
from bimer_tf.serving.export import AVERAGES  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--run", required=True, action="append", metavar="RUN",
        help="run directory written by train.py; repeat it to export the runs' ensemble (the mean of "
        "their probabilities; the runs must share the front end, tokenizer and labels)",
    )
    parser.add_argument(
        "--output", default="export/bimer", metavar="DIR",
        help="model base path holding integer version folders (default: export/bimer)",
    )
    parser.add_argument(
        "--version", type=int, metavar="N", help="version number (default: one above the highest present)"
    )
    parser.add_argument(
        "--average", choices=AVERAGES, default="probabilities",
        help="several runs: answer the mean of their probabilities (default; every model runs), run one "
        "model with the mean of their weights (runs of one model config from the same starting weights), "
        "or run their trained Whisper layers once with the mean of their weights under every run's own head",
    )
    parser.add_argument(
        "--xla", action="store_true",
        help="compile the model part with XLA: faster on CPU, but TF Serving then needs "
        "--xla_cpu_compilation_enabled=true",
    )
    args = parser.parse_args(argv)
    from bimer_tf.serving.export import export_run

    target = export_run(args.run, args.output, args.version, xla=args.xla, average=args.average)
    print(f"exported {target}")


if __name__ == "__main__":
    raise SystemExit(run_main(main))
