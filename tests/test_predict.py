"""`python -m bimer_tf.predict`: a good request, and every kind of bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from conftest import REPO_ROOT, TINY_LABELS, TINY_TEXTS, synth_tone


def predict_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "bimer_tf.predict", *map(str, args)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )


@pytest.fixture
def good_wav(write_wav):
    return write_wav("good.wav", synth_tone(0.8, freq=300.0, lead_silence=0.1, tail_silence=0.1))


def test_prints_label_and_probabilities(tiny_export, good_wav):
    done = predict_cli("--model", tiny_export, "--audio", good_wav, "--text", TINY_TEXTS["happy"])
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["label"] in TINY_LABELS
    assert list(result["probabilities"]) == TINY_LABELS
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert result["label"] == max(result["probabilities"], key=result["probabilities"].get)


def test_stereo_is_averaged_and_long_audio_is_cropped_with_a_note(tiny_export, write_wav):
    tone = synth_tone(2.5, freq=250.0)
    path = write_wav("long_stereo.wav", np.stack([tone, 0.5 * tone], axis=1))
    done = predict_cli("--model", tiny_export, "--audio", path, "--text", TINY_TEXTS["sad"])
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
    elif kind == "nan":
        soundfile.write(path, np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    elif kind == "44k":
        soundfile.write(path, synth_tone(0.5, sample_rate=44100), 44100, subtype="PCM_16")
    elif kind == "missing":
        pass
    return path


@pytest.mark.parametrize(
    "kind, message",
    [
        ("not-wav", "not a readable audio file"),
        ("empty-file", "is empty"),
        ("zero-length", "no samples"),
        ("silent", "is silent"),
        ("PCM_U8", "PCM_U8 WAV, but the model reads 16-bit PCM"),
        ("PCM_24", "PCM_24 WAV, but the model reads 16-bit PCM"),
        ("FLOAT", "FLOAT WAV, but the model reads 16-bit PCM"),
        ("nan", "FLOAT WAV"),
        ("44k", "sampled at 44100 Hz, expected 16000 Hz"),
        ("missing", "audio file not found"),
    ],
)
def test_bad_audio_exits_2_with_the_reason(tiny_export, tmp_path, kind, message):
    path = _bad_audio(tmp_path, kind)
    done = predict_cli("--model", tiny_export, "--audio", path, "--text", "hello")
    assert done.returncode == 2
    assert message in done.stderr
    assert "python -m bimer_tf.data.wav" in done.stderr or kind in ("missing", "empty-file", "zero-length", "silent")
    assert "Traceback" not in done.stderr


def test_bad_text_exits_2(tiny_export, good_wav, tmp_path):
    done = predict_cli("--model", tiny_export, "--audio", good_wav, "--text", "   ")
    assert done.returncode == 2 and "transcript is empty" in done.stderr
    done = predict_cli("--model", tiny_export, "--audio", good_wav)
    assert done.returncode == 2 and "no transcript" in done.stderr
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("très fâché".encode("latin-1"))
    done = predict_cli("--model", tiny_export, "--audio", good_wav, "--text-file", latin1)
    assert done.returncode == 2 and "is not UTF-8" in done.stderr
    assert "Traceback" not in done.stderr


def test_text_file_in_utf8_works(tiny_export, good_wav, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("Ça va très bien, merci !", encoding="utf-8")
    done = predict_cli("--model", tiny_export, "--audio", good_wav, "--text-file", text)
    assert done.returncode == 0, done.stderr


def test_wrong_model_folder_exits_2(tmp_path, good_wav):
    done = predict_cli("--model", tmp_path, "--audio", good_wav, "--text", "hi")
    assert done.returncode == 2 and "not a SavedModel version folder" in done.stderr
