"""Shared command-line plumbing: config arguments and the exit-code contract."""

from __future__ import annotations

import argparse
import sys

from bimer_tf.errors import InputError

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
    """Runs `main(argv)`; bad input prints one clear line and returns 2."""
    try:
        return main(argv) or 0
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
