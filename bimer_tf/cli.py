"""Shared command-line plumbing: config arguments and the exit-code contract."""

from __future__ import annotations

import argparse
import sys

from bimer_tf.errors import InputError, op_error_message

EXIT_BAD_INPUT = 2


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML file of config overrides")
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override one config value, e.g. --set trainer.epochs=3 (repeatable)",
    )


def run_main(main, argv=None) -> int:
    """Runs `main(argv)`; bad input prints one clear line and returns 2.

    A TensorFlow op error (a graph check rejecting a file, say) counts as
    bad input too: its reason is printed, not its traceback.
    """
    try:
        return main(argv) or 0
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as error:
        tensorflow = sys.modules.get("tensorflow")  # only loaded TensorFlow can raise its errors
        if tensorflow is None or not isinstance(error, tensorflow.errors.OpError):
            raise
        print(f"error: TensorFlow rejected the input: {op_error_message(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
