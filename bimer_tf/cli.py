"""Shared command-line plumbing: a quiet TensorFlow start-up, config arguments
and the exit-code contract.

## Quiet start-up

Call `quiet_startup()` at the top of an entry point, before anything imports
TensorFlow: TensorFlow reads these variables once, when it loads. A value the
user has already set is never changed.

What each setting does (measured on TensorFlow 2.21, CPU-only Linux):

- `TF_CPP_MIN_LOG_LEVEL=2` hides TensorFlow's own INFO and WARNING lines
  (`cpu_feature_guard.cc ... To enable the following instructions: AVX2 ...`,
  `op_kernel.cc ... OP_REQUIRES failed`, `local_rendezvous.cc ... aborting`).
- `TF_CPP_MIN_LOG_LEVEL=3` also hides ERROR lines, among them
  `E0000 ... cuda_platform.cc ... failed call to cuInit: INTERNAL: CUDA error`,
  which TensorFlow logs on every machine without an NVIDIA driver. Level 3 is
  used only where no NVIDIA device exists: on a GPU machine the same line
  explains why the GPU is not used, so level 2 keeps it. Errors that matter
  to a run reach Python as exceptions whatever the level.
- `CUDA_VISIBLE_DEVICES` (empty or -1) hides none of these lines, so it is
  left alone: it would only risk hiding a real GPU.
- No environment variable hides the lines absl writes while TensorFlow's
  shared libraries load, before its logging is set up (twice, once per
  library): `WARNING: All log messages before absl::InitializeLog() is called
  are written to STDERR`, `port.cc ... oneDNN custom operations are on` (only
  `TF_ENABLE_ONEDNN_OPTS=0` removes it, which swaps the CPU kernels: not done)
  and, on machines without CUDA, `cudart_stub.cc ... Could not find cuda
  drivers on your machine, GPU will not be used`. They are informational.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from collections.abc import MutableMapping

from bimer_tf.errors import InputError, op_error_message

EXIT_BAD_INPUT = 2

# Device nodes an NVIDIA driver creates (Linux; /dev/dxg under WSL 2).
NVIDIA_DEVICE_PATTERNS = ("/dev/nvidiactl", "/dev/nvidia[0-9]*", "/proc/driver/nvidia/gpus/*", "/dev/dxg")


def has_nvidia_device() -> bool:
    """True when the machine shows an NVIDIA driver device (whether or not CUDA works)."""
    return any(glob.glob(pattern) for pattern in NVIDIA_DEVICE_PATTERNS)


def quiet_startup(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Sets the start-up environment for TensorFlow; returns what it set.

    `KERAS_BACKEND=tensorflow`, and `TF_CPP_MIN_LOG_LEVEL` 3 on a machine with
    no NVIDIA device, else 2. Values already present are kept.
    """
    environ = os.environ if environ is None else environ
    wanted = {
        "KERAS_BACKEND": "tensorflow",
        "TF_CPP_MIN_LOG_LEVEL": "2" if has_nvidia_device() else "3",
    }
    applied = {}
    for name, value in wanted.items():
        if name not in environ:
            environ[name] = applied[name] = value
    return applied


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


class _SavedModelAction(argparse.Action):
    """Stores the export folder; `--model` still works for one release, with a note."""

    def __call__(self, parser, namespace, value, option_string=None):
        if option_string == "--model":
            print("note: --model is now --saved-model (the old name goes in the next release)", file=sys.stderr)
        setattr(namespace, self.dest, value)


def add_saved_model_argument(parser: argparse.ArgumentParser, required: bool = True, help: str = "") -> None:
    """`--saved-model DIR`, the exported version folder every export-reading command takes."""
    parser.add_argument(
        "--saved-model",
        "--model",
        dest="saved_model",
        metavar="DIR",
        action=_SavedModelAction,
        required=required,
        help=help or "SavedModel version folder, e.g. export/bimer/1 (--model: old name)",
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
