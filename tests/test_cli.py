"""The exit-code contract of every command-line tool (`bimer_tf.cli.run_main`)."""

import pytest
import tensorflow as tf

from bimer_tf.cli import EXIT_BAD_INPUT, run_main
from bimer_tf.errors import InputError


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
