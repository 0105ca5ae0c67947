"""WAV checks, decoding to mono 16 kHz, PCM16 writing and the conversion CLI."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import soundfile
from conftest import REPO_ROOT, synth_tone

from bimer_tf.cli import run_main
from bimer_tf.audio.wav import (
    CONVERT_HINT,
    WavInfo,
    check_wav,
    convert_audio,
    load_audio,
    main,
    write_pcm16,
)
from bimer_tf.errors import InputError


def _wav_bytes(samples, sample_rate=16000, subtype="PCM_16", format="WAV"):
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, sample_rate, subtype=subtype, format=format)
    return buffer.getvalue()


def _dominant_frequency(samples, sample_rate):
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return np.argmax(spectrum) * sample_rate / len(samples)


# --- check_wav --------------------------------------------------------------


def test_check_wav_accepts_pcm16_mono_and_reports_its_properties(write_wav):
    samples = 0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000).astype(np.float32)
    path = write_wav("tone.wav", samples)
    info = check_wav(path)
    assert isinstance(info, WavInfo)
    assert (info.sample_rate, info.channels, info.frames) == (16000, 1, 8000)
    assert info.duration_s == 0.5
    expected_peak = 20 * np.log10(np.max(np.abs(soundfile.read(path, dtype="float32")[0])))
    assert info.peak_dbfs == pytest.approx(expected_peak, abs=1e-4)
    assert info.peak_dbfs == pytest.approx(20 * np.log10(0.5), abs=0.01)
    # the same file as bytes, and as a str path
    assert check_wav(path.read_bytes()) == info
    assert check_wav(str(path)) == info


def test_check_wav_accepts_stereo(write_wav):
    tone = synth_tone(0.25)
    info = check_wav(write_wav("stereo.wav", np.stack([tone, 0.5 * tone], axis=1)))
    assert (info.channels, info.frames) == (2, len(tone))


def test_check_wav_other_sample_rate_when_asked(write_wav):
    path = write_wav("tone8k.wav", synth_tone(0.25, sample_rate=8000), sample_rate=8000)
    assert check_wav(path, sample_rate=8000).sample_rate == 8000


def _pcm16_tone(**kwargs):
    return _wav_bytes(synth_tone(0.1, **kwargs), kwargs.get("sample_rate", 16000))


NOT_PCM16 = "WAV, but the model reads 16-bit PCM"


@pytest.mark.parametrize(
    "name, make, message",
    [
        ("text.wav", lambda: b"this is not audio at all" * 10, "is not a readable audio file"),
        ("empty.wav", lambda: b"", r"is empty \(0 bytes\)"),
        ("no_samples.wav", lambda: _wav_bytes(np.zeros(0, np.float32)), "has no samples"),
        ("u8.wav", lambda: _wav_bytes(synth_tone(0.1), subtype="PCM_U8"), f"PCM_U8 {NOT_PCM16}"),
        ("24bit.wav", lambda: _wav_bytes(synth_tone(0.1), subtype="PCM_24"), f"PCM_24 {NOT_PCM16}"),
        ("float.wav", lambda: _wav_bytes(synth_tone(0.1), subtype="FLOAT"), f"FLOAT {NOT_PCM16}"),
        ("44k.wav", lambda: _pcm16_tone(sample_rate=44100), "sampled at 44100 Hz, expected 16000 Hz"),
        ("flac.wav", lambda: _wav_bytes(synth_tone(0.1), format="FLAC"), "is FLAC, not WAV"),
        ("silent.wav", lambda: _wav_bytes(np.zeros(1600, np.float32)), "is silent"),
        ("quiet.wav", lambda: _pcm16_tone(amplitude=1e-4), r"is silent \(peak -\d+\.\d dBFS, below -60"),
    ],
)
def test_check_wav_rejects_with_file_name_and_remedy(tmp_path, name, make, message):
    data = make()
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InputError, match=message) as error:
        check_wav(path)
    text = str(error.value)
    assert text.startswith(str(path))
    # each message says what to do about it
    remedies = (CONVERT_HINT, "--sample-rate 16000", "again", "microphone")
    assert any(remedy in text for remedy in remedies), text
    # the same bytes from an upload: same reason, named as the upload
    with pytest.raises(InputError, match=message) as error:
        check_wav(data)
    assert str(error.value).startswith("the uploaded audio")


def test_check_wav_missing_path(tmp_path):
    with pytest.raises(InputError, match=re.escape(f"audio file not found: {tmp_path / 'nope.wav'}")):
        check_wav(tmp_path / "nope.wav")


def test_check_wav_silence_floor_is_configurable(write_wav):
    path = write_wav("quiet.wav", synth_tone(0.1, amplitude=0.003))  # peak about -49 dBFS
    assert check_wav(path).peak_dbfs < -40
    with pytest.raises(InputError, match="below -40 dBFS"):
        check_wav(path, silence_floor_dbfs=-40.0)


# --- load_audio -------------------------------------------------------------


def test_load_audio_averages_stereo(write_wav):
    left = synth_tone(0.25, freq=200.0)
    right = synth_tone(0.25, freq=330.0, amplitude=0.1)
    path = write_wav("stereo.wav", np.stack([left, right], axis=1), subtype="FLOAT")
    mono = load_audio(path)
    assert mono.dtype == np.float32 and mono.ndim == 1
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1e-7)


def test_load_audio_resamples_to_the_requested_rate(write_wav):
    t = np.arange(44100) / 44100
    samples = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = write_wav("tone44k.wav", samples, sample_rate=44100)
    audio = load_audio(path, 16000)
    assert audio.shape == (16000,)
    assert _dominant_frequency(audio, 16000) == pytest.approx(440, abs=2)
    assert np.max(np.abs(audio)) == pytest.approx(0.5, abs=0.02)


def test_load_audio_rejects_nan_and_empty_and_undecodable(tmp_path, write_wav):
    samples = synth_tone(0.1)
    samples[100] = np.nan
    with pytest.raises(InputError, match="nan.wav contains NaN or infinite samples"):
        load_audio(write_wav("nan.wav", samples, subtype="FLOAT"))
    with pytest.raises(InputError, match="empty.wav has no samples"):
        load_audio(write_wav("empty.wav", np.zeros(0, np.float32)))
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio" * 100)
    with pytest.raises(InputError, match="cannot decode .*junk.wav"):
        load_audio(junk)


# --- write_pcm16 and convert_audio ------------------------------------------


def test_write_pcm16_writes_what_check_wav_accepts(tmp_path):
    samples = synth_tone(0.5)
    path = write_pcm16(tmp_path / "sub" / "out.wav", samples)
    info = check_wav(path)
    assert (info.sample_rate, info.channels, info.frames) == (16000, 1, len(samples))
    np.testing.assert_allclose(soundfile.read(path, dtype="float32")[0], samples, atol=1 / 32768)
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_write_pcm16_scales_down_clipping_audio(tmp_path):
    samples = 2.0 * np.sin(2 * np.pi * 100 * np.arange(1600) / 16000).astype(np.float32)
    written, _ = soundfile.read(write_pcm16(tmp_path / "loud.wav", samples), dtype="float32")
    assert np.max(np.abs(written)) == pytest.approx(0.999, abs=1e-3)
    # scaled, not clipped: the shape of the wave is kept
    np.testing.assert_allclose(written, samples * 0.999 / np.max(np.abs(samples)), atol=1e-4)


def test_convert_audio_float_44k_stereo_to_16k_mono_pcm16(tmp_path, write_wav):
    t = np.arange(int(0.5 * 44100)) / 44100
    left = 0.4 * np.sin(2 * np.pi * 300 * t)
    stereo = np.stack([left, 0.5 * left], axis=1).astype(np.float32)
    src = write_wav("in.wav", stereo, sample_rate=44100, subtype="FLOAT")
    with pytest.raises(InputError):
        check_wav(src)
    dst = convert_audio(src, tmp_path / "out.wav")
    info = check_wav(dst)
    assert (info.sample_rate, info.channels, info.frames) == (16000, 1, 8000)
    assert soundfile.info(dst).subtype == "PCM_16"
    audio, _ = soundfile.read(dst, dtype="float32")
    assert _dominant_frequency(audio, 16000) == pytest.approx(300, abs=4)
    assert np.max(np.abs(audio)) == pytest.approx(0.3, abs=0.02)  # mean of 0.4 and 0.2


# --- Command line -----------------------------------------------------------


def test_cli_converts(tmp_path, write_wav, capsys):
    tone = synth_tone(0.25, sample_rate=22050)
    src = write_wav("in.wav", tone, sample_rate=22050, subtype="PCM_24")
    dst = tmp_path / "out.wav"
    assert run_main(main, [str(src), str(dst), "--sample-rate", "16000"]) == 0
    assert capsys.readouterr().out.strip() == str(dst)
    assert check_wav(dst).frames == 4000


def _run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "bimer_tf.audio.wav", *map(str, args)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_rejects_non_audio_with_exit_2(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("definitely not audio\n" * 20, encoding="utf-8")
    result = _run_cli(notes, tmp_path / "never.wav")
    assert result.returncode == 2
    assert f"error: cannot decode {notes}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "never.wav").exists()


def test_cli_bad_input_prints_one_clear_line(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("definitely not audio\n" * 20, encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run_main(main, [str(notes), str(tmp_path / "never.wav")]) == 2
    # Python prints these (not deprecation notices) to stderr around the error line
    hidden = (DeprecationWarning, PendingDeprecationWarning)
    shown = [w for w in caught if not issubclass(w.category, hidden)]
    assert [str(w.message) for w in shown] == []
    message = capsys.readouterr().err.strip()
    assert message.startswith(f"error: cannot decode {notes}")
    assert "NoBackendError: )" not in message
