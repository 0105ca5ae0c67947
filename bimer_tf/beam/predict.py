"""`python -m bimer_tf.beam.predict`: batch prediction with an export on Apache Beam (RunInference).

    python -m bimer_tf.beam.predict --saved-model export/bimer/1 \\
        --manifest data/ravdess/manifest.jsonl --output predictions/ravdess
    python -m bimer_tf.beam.predict --saved-model gs://B/export/ser/1 --inputs 'gs://B/calls/*.wav' \\
        --output gs://B/predictions/calls --runner DataflowRunner ...

The rows of `python -m bimer_tf.predict --inputs/--manifest` (`input`,
`label`, `probabilities`, `error`), as JSON Lines in
`PREFIX-NNNNN-of-MMMMM.jsonl` (in no particular order). `--inputs` takes
glob patterns, files or folders, local or on any filesystem Beam knows; a
model that reads text takes each transcript from the .txt beside the audio.
A bad input becomes a row whose `error` says why; the counts printed at the
end add up (inputs = predicted + skipped).

The model: one per worker process (default), or `--model-copies N` per
machine shared by its worker processes. Runs on the DirectRunner
(multi_processing, one worker per CPU) unless Beam options say otherwise:
docs/beam.md.
"""

from __future__ import annotations

import argparse
import sys

from bimer_tf.beam.runner import RUNNER_HELP, pipeline_options
from bimer_tf.cli import add_saved_model_argument
from bimer_tf.errors import InputError
from bimer_tf.inference.recognizer import DEFAULT_BATCH_SIZE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bimer_tf.beam.predict",
        description="Predict emotions for many inputs with an exported model on Apache Beam (RunInference).",
        epilog=RUNNER_HELP,
        allow_abbrev=False,
    )
    add_saved_model_argument(parser, help="SavedModel version folder, e.g. export/bimer/1 or gs://.../1")
    sources = parser.add_mutually_exclusive_group(required=True)
    sources.add_argument(
        "--inputs", nargs="+", metavar="GLOB",
        help="audio files, folders or glob patterns (quoted), local or gs://...; "
        "a model that reads text takes each transcript from the .txt file beside the audio",
    )
    sources.add_argument("--manifest", metavar="FILE.jsonl", help="the project's manifest (local or gs://...)")
    parser.add_argument(
        "--output", required=True, metavar="PREFIX", help="rows go to PREFIX-NNNNN-of-MMMMM.jsonl"
    )
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="N",
        help=f"inputs per SavedModel call (default {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--decode-threads", type=int, metavar="N",
        help="threads per worker decoding a batch's audio (default: the cores, at most 4)",
    )
    parser.add_argument(
        "--model-copies", type=int, metavar="N",
        help="N copies of the model per machine, shared by its worker processes "
        "(default: one per worker process)",
    )
    return parser


def main(argv=None) -> int:
    args, beam_flags = build_parser().parse_known_args(argv)
    options = pipeline_options(beam_flags)
    from bimer_tf.beam.prediction import predict_with_beam

    summary = predict_with_beam(
        args.saved_model,
        args.output,
        options,
        manifest=args.manifest,
        inputs=args.inputs,
        batch_size=args.batch_size,
        decode_threads=args.decode_threads,
        model_copies=args.model_copies,
    )
    for name, reason in summary["examples"]:
        print(f"  skipped {name}: {reason}", file=sys.stderr)
    if summary["skipped"] > len(summary["examples"]):
        print(f"  ... {summary['skipped'] - len(summary['examples'])} more (see the error field)", file=sys.stderr)
    beam = summary["beam"]
    where = f"{beam['runner']}, {beam['direct_num_workers']} workers" if "direct_num_workers" in beam else beam["runner"]
    print(
        f"{summary['seen']} inputs: {summary['predicted']} predicted, {summary['skipped']} skipped; "
        f"wrote {', '.join(summary['outputs'])} ({summary['seconds']:.1f} s on {where}; "
        f"the inputs listed in {summary['inputs_file']})",
        file=sys.stderr,
    )
    if summary["seen"] and not summary["predicted"]:
        raise InputError(f"none of the {summary['seen']} inputs could be predicted; each row's error says why")
    return 0


if __name__ == "__main__":
    from bimer_tf.cli import quiet_startup, run_main

    quiet_startup()  # before TensorFlow loads (the worker processes inherit it)
    raise SystemExit(run_main(main))
