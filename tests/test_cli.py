"""The command-line plumbing: the exit-code contract of every tool (`run_main`) and
the quiet start-up settings each applies before TensorFlow loads."""

import os
import subprocess
import sys

import pytest
import tensorflow as tf

from bimer_tf import cli
from bimer_tf.cli import EXIT_BAD_INPUT, quiet_startup, run_main
from bimer_tf.errors import InputError

from conftest import REPO_ROOT


def test_input_errors_print_one_line_and_exit_2(capsys):
    def main(argv):
        raise InputError("clip.wav: expected 16000 Hz; resample it")

    assert run_main(main) == EXIT_BAD_INPUT
    assert capsys.readouterr().err == "error: clip.wav: expected 16000 Hz; resample it\n"


def test_op_errors_from_the_graph_print_their_reason_and_exit_2(capsys):
    @tf.function
    def check(x):
        tf.debugging.assert_positive(x, message="audio_wav: the WAV holds no samples")
        return x

    def main(argv):
        check(tf.constant([0]))

    assert run_main(main) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error: TensorFlow rejected the input: audio_wav: the WAV holds no samples")
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_other_errors_are_not_hidden():
    def main(argv):
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        run_main(main)


def test_success_and_interrupt(capsys):
    assert run_main(lambda argv: None) == 0

    def interrupted(argv):
        raise KeyboardInterrupt

    assert run_main(interrupted) == 130
    assert "interrupted" in capsys.readouterr().err


# --- quiet start-up ---------------------------------------------------------


@pytest.mark.parametrize("gpu, level", [(False, "3"), (True, "2")])
def test_log_level_hides_the_cuinit_error_only_without_an_nvidia_device(monkeypatch, gpu, level):
    monkeypatch.setattr(cli, "has_nvidia_device", lambda: gpu)
    environ = {}
    assert quiet_startup(environ) == {"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": level}
    assert environ == {"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": level}


def test_values_the_user_set_are_kept(monkeypatch):
    monkeypatch.setattr(cli, "has_nvidia_device", lambda: False)
    environ = {"TF_CPP_MIN_LOG_LEVEL": "0", "KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": "0"}
    assert quiet_startup(environ) == {}
    assert environ == {"TF_CPP_MIN_LOG_LEVEL": "0", "KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": "0"}


def test_never_touches_cuda_visible_devices(monkeypatch):
    for gpu in (False, True):
        monkeypatch.setattr(cli, "has_nvidia_device", lambda: gpu)
        environ = {}
        quiet_startup(environ)
        assert "CUDA_VISIBLE_DEVICES" not in environ


@pytest.mark.skipif(cli.has_nvidia_device(), reason="checks the CPU-machine start-up")
def test_tensorflow_starts_without_the_cuinit_error_on_a_cpu_machine():
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES")}
    code = (
        "from bimer_tf.cli import quiet_startup; quiet_startup(); "
        "import tensorflow as tf; print(tf.reduce_sum([1, 2]).numpy())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and done.stdout.strip() == "3", done.stderr
    assert "cuInit" not in done.stderr
    assert "E0000" not in done.stderr
