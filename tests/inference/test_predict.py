"""`python -m bimer_tf.predict`: a good request, and every kind of bad input.

Most cases run the command in this process (`predict_here`); a good request,
a bad file and an error raised in the graph also run as a user runs them, in
a new process, where nothing else may reach stderr.
"""

import json
import subprocess

import numpy as np
import pytest
import soundfile

from conftest import FAKE_LABELS, TINY_LABELS, TINY_TEXTS, one_modality_export, predict_cli, predict_here, synth_tone


@pytest.fixture
def good_wav(write_wav):
    return write_wav("good.wav", synth_tone(0.8, freq=300.0, lead_silence=0.1, tail_silence=0.1))


def test_prints_label_and_probabilities(tiny_export, good_wav):
    done = predict_cli("--saved-model", tiny_export, "--audio", good_wav, "--text", TINY_TEXTS["happy"])
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["label"] in TINY_LABELS
    assert list(result["probabilities"]) == TINY_LABELS
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert result["label"] == max(result["probabilities"], key=result["probabilities"].get)


def test_stereo_is_averaged_and_long_audio_is_cropped_with_a_note(tiny_export, write_wav):
    tone = synth_tone(2.5, freq=250.0)
    path = write_wav("long_stereo.wav", np.stack([tone, 0.5 * tone], axis=1))
    done = predict_here("--saved-model", tiny_export, "--audio", path, "--text", TINY_TEXTS["sad"])
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "first 1 s" in result["note"]


def _bad_audio(tmp_path, kind):
    path = tmp_path / f"{kind}.wav"
    tone = synth_tone(0.5)
    if kind == "not-wav":
        path.write_bytes(b"this is a text file, not audio\n" * 20)
    elif kind == "empty-file":
        path.write_bytes(b"")
    elif kind == "zero-length":
        soundfile.write(path, np.zeros(0, np.float32), 16000, subtype="PCM_16")
    elif kind == "silent":
        soundfile.write(path, np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    elif kind in ("PCM_U8", "PCM_24", "FLOAT"):
        soundfile.write(path, tone, 16000, subtype=kind)
    elif kind == "too-short":
        soundfile.write(path, synth_tone(0.02), 16000, subtype="PCM_16")
    elif kind == "nan":
        soundfile.write(path, np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    elif kind == "44k":
        soundfile.write(path, synth_tone(0.5, sample_rate=44100), 44100, subtype="PCM_16")
    elif kind == "missing":
        pass
    elif kind in ("header-only", "truncated"):
        soundfile.write(path, tone, 16000, subtype="PCM_16")
        data = path.read_bytes()
        path.write_bytes(data[:44] if kind == "header-only" else data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    "kind, message",
    [
        ("not-wav", "cannot decode"),
        ("empty-file", "is empty"),
        ("zero-length", "no samples"),
        ("silent", "is silent"),
        ("too-short", "is too short (20 ms); the model needs at least 64 ms of audio"),
        ("nan", "contains NaN or infinite samples"),
        ("missing", "audio file not found"),
        ("header-only", "is cut short: its WAV header promises 16000 bytes of audio but the file holds 0"),
        ("truncated", "is cut short"),
    ],
)
def test_bad_audio_exits_2_with_the_reason(tiny_export, tmp_path, kind, message):
    path = _bad_audio(tmp_path, kind)
    done = predict_here("--saved-model", tiny_export, "--audio", path, "--text", "hello")
    assert done.returncode == 2
    assert message in done.stderr
    assert str(path) in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_bad_file_is_one_line_from_a_new_process(tiny_export, tmp_path):
    path = _bad_audio(tmp_path, "truncated")
    done = predict_cli("--saved-model", tiny_export, "--audio", path, "--text", "hello")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("error: ") and str(path) in done.stderr and "is cut short" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_any_audio_format_is_decoded_and_resampled(tiny_export, tmp_path, good_wav):
    """Other WAV widths and rates and MP3 are converted, not refused; the MP3 of a
    16 kHz 16-bit WAV gives what the WAV gives. `--model`, the old name, still works."""
    from imageio_ffmpeg import get_ffmpeg_exe

    reference = predict_here("--saved-model", tiny_export, "--audio", good_wav, "--text", "hello")
    assert reference.returncode == 0, reference.stderr
    reference = json.loads(reference.stdout)
    mp3 = tmp_path / "good.mp3"
    subprocess.run([get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(good_wav), str(mp3)], check=True)
    for path in (_bad_audio(tmp_path, "PCM_24"), _bad_audio(tmp_path, "44k"), mp3):
        done = predict_here("--model", tiny_export, "--audio", path, "--text", "hello")
        assert done.returncode == 0, done.stderr
        assert done.stderr.strip() == "note: --model is now --saved-model (the old name goes in the next release)"
        result = json.loads(done.stdout)
        assert list(result["probabilities"]) == TINY_LABELS
        if path == mp3:
            assert result["label"] == reference["label"]
            np.testing.assert_allclose(  # MP3 is lossy: the codec moves the spectrum a little
                list(result["probabilities"].values()), list(reference["probabilities"].values()), atol=0.02
            )


def test_bad_text_exits_2(tiny_export, good_wav, tmp_path):
    done = predict_here("--saved-model", tiny_export, "--audio", good_wav, "--text", "   ")
    assert done.returncode == 2 and "transcript is empty" in done.stderr
    done = predict_here("--saved-model", tiny_export, "--audio", good_wav)
    assert done.returncode == 2 and 'no transcript: pass --text "..." or --text-file FILE' in done.stderr
    assert "takes audio_wav and text" in done.stderr
    done = predict_here("--saved-model", tiny_export, "--text", "hello")
    assert done.returncode == 2 and "no audio: pass --audio FILE.wav" in done.stderr
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("très fâché".encode("latin-1"))
    done = predict_here("--saved-model", tiny_export, "--audio", good_wav, "--text-file", latin1)
    assert done.returncode == 2 and "is not UTF-8" in done.stderr
    assert "Traceback" not in done.stderr


def test_text_file_in_utf8_works(tiny_export, good_wav, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("Ça va très bien, merci !", encoding="utf-8")
    done = predict_here("--saved-model", tiny_export, "--audio", good_wav, "--text-file", text)
    assert done.returncode == 0, done.stderr


def test_wrong_model_folder_exits_2(tmp_path, good_wav):
    done = predict_here("--saved-model", tmp_path, "--audio", good_wav, "--text", "hi")
    assert done.returncode == 2 and "not a SavedModel version folder" in done.stderr


# --- Models of one modality, and errors raised inside the graph -------------

@pytest.fixture(scope="module")
def text_only_export(tmp_path_factory):
    return one_modality_export(tmp_path_factory.mktemp("ter") / "1", "text")


@pytest.fixture(scope="module")
def speech_only_export(tmp_path_factory):
    return one_modality_export(tmp_path_factory.mktemp("ser") / "1", "audio_wav")


def test_text_only_model_needs_no_audio(text_only_export, good_wav):
    done = predict_here("--saved-model", text_only_export, "--text", "what a great day")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert list(result["probabilities"]) == FAKE_LABELS and result["label"] == "happy"
    assert "note" not in done.stderr
    # audio it does not take: used for nothing, said so in one line
    done = predict_here("--saved-model", text_only_export, "--text", "what a great day", "--audio", good_wav)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == f"note: {text_only_export} takes only text; --audio is not used"
    done = predict_here("--saved-model", text_only_export, "--audio", good_wav)
    assert done.returncode == 2 and "no transcript" in done.stderr and "takes text)" in done.stderr


def test_speech_only_model_needs_no_text(speech_only_export, good_wav):
    done = predict_here("--saved-model", speech_only_export, "--audio", good_wav)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["label"] in FAKE_LABELS
    done = predict_here("--saved-model", speech_only_export, "--audio", good_wav, "--text", "hello")
    assert done.returncode == 0 and "--text is not used" in done.stderr
    done = predict_here("--saved-model", speech_only_export, "--text", "hello")
    assert done.returncode == 2 and "no audio: pass --audio FILE.wav" in done.stderr


def test_no_input_at_all_is_a_usage_error(text_only_export):
    done = predict_here("--saved-model", text_only_export)
    assert done.returncode == 2 and "--audio FILE and/or --text" in done.stderr


def test_an_op_error_in_the_graph_is_one_clear_line(text_only_export):
    done = predict_cli("--saved-model", text_only_export, "--text", "boom")
    assert done.returncode == 2
    assert done.stderr.startswith("error: the model rejected the input: ")
    assert done.stderr.strip().endswith("rejected the input: text: the input boom is refused")
    assert "Traceback" not in done.stderr and "{{" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_op_error_message_keeps_the_reason_only():
    import tensorflow as tf

    from bimer_tf.errors import op_error_message

    loaded = (  # as a loaded SavedModel reports a failed tf.debugging check
        "Graph execution error:\n\nDetected at node assert_equal/Assert defined at (most recent call last):\n"
        '  File "serve.py", line 3, in serve\n<stack traces unavailable>\n'
        "assertion failed: [audio_wav: expected 16000 Hz; resample it] [Condition x == y did not hold] "
        "[x (DecodeWav:1) = ] [44100]\n\t [[{{node assert_equal/Assert}}]] [Op:__inference_serve_2]"
    )
    error = tf.errors.InvalidArgumentError(None, None, loaded)
    assert op_error_message(error) == "audio_wav: expected 16000 Hz; resample it"
    eager = "{{function_node __wrapped__DecodeWav}} Data too short when trying to read string [Op:DecodeWav]"
    error = tf.errors.InvalidArgumentError(None, None, eager)
    assert op_error_message(error) == "Data too short when trying to read string"
