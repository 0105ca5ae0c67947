"""A quiet TensorFlow start-up for the command-line tools.

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

import glob
import os
from collections.abc import MutableMapping

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
