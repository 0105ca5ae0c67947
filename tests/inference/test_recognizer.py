"""The Python API: `bimer_tf.Recognizer` on the tiny BiMER export and on fake one-input exports."""

import subprocess
import sys
import threading
import types

import numpy as np
import pytest
import soundfile

from conftest import REPO_ROOT, TINY_LABELS, TINY_TEXTS, synth_tone
from conftest import FAKE_LABELS, one_modality_export

TOLERANCE = 1e-3  # another format or rate of the same audio: the probabilities agree this closely
MP3_TOLERANCE = 1e-2  # the same audio through a 192 kbit/s MP3 encoder


@pytest.fixture(scope="module")
def recognizer(tiny_export):
    from bimer_tf import Recognizer

    return Recognizer.from_saved_model(tiny_export)


@pytest.fixture(scope="module")
def text_recognizer(tmp_path_factory):
    from bimer_tf import Recognizer

    return Recognizer.from_saved_model(one_modality_export(tmp_path_factory.mktemp("ter") / "1", "text"))


@pytest.fixture(scope="module")
def speech_recognizer(tmp_path_factory):
    from bimer_tf import Recognizer

    return Recognizer.from_saved_model(one_modality_export(tmp_path_factory.mktemp("ser") / "1", "audio_wav"))


@pytest.fixture
def clip():
    """An utterance-like clip: a tone with quiet margins, 16 kHz mono float32."""
    return synth_tone(0.8, freq=300.0, lead_silence=0.1, tail_silence=0.1)


def probabilities(prediction):
    return np.array(list(prediction.probabilities.values()))


def ffmpeg(*args):
    from imageio_ffmpeg import get_ffmpeg_exe

    subprocess.run([get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)], check=True)


def test_a_path_its_bytes_and_its_waveform_agree(recognizer, write_wav, clip):
    path = write_wav("clip.wav", clip)
    text = TINY_TEXTS["happy"]
    by_path = recognizer.predict(audio=path, text=text)
    assert by_path.label in TINY_LABELS and list(by_path.probabilities) == TINY_LABELS
    assert sum(by_path.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert by_path.label == max(by_path.probabilities, key=by_path.probabilities.get)
    assert by_path.duration_s == pytest.approx(1.0) and by_path.notes == ()
    by_bytes = recognizer.predict(audio=path.read_bytes(), text=text)
    assert by_bytes == by_path
    samples, rate = soundfile.read(path, dtype="float32")
    by_waveform = recognizer.predict(audio=samples, text=text, sample_rate=rate)
    assert by_waveform.label == by_path.label
    np.testing.assert_allclose(probabilities(by_waveform), probabilities(by_path), atol=1e-5)
    as_int16 = recognizer.predict(audio=(samples * 32768).round().astype(np.int16), text=text, sample_rate=rate)
    np.testing.assert_allclose(probabilities(as_int16), probabilities(by_path), atol=1e-5)


def test_a_16k_pcm16_wav_goes_in_as_its_own_bytes(recognizer, write_wav, clip):
    from bimer_tf.serving.feed import serve_batch

    path = write_wav("clip.wav", np.stack([clip, 0.5 * clip], axis=1))  # stereo: the graph averages it
    prepared = recognizer.prepare(audio=path, text="hello")
    assert prepared.audio_wav == path.read_bytes()
    direct = serve_batch(recognizer._serve, [path.read_bytes()], ["hello"])[0]
    assert probabilities(recognizer.predict(audio=path, text="hello")).tolist() == direct.tolist()


def test_mp3_and_44k_stereo_give_what_the_16k_wav_gives(recognizer, write_wav, clip, tmp_path):
    import soxr

    text = TINY_TEXTS["sad"]
    wav = write_wav("clip.wav", clip)
    reference = recognizer.predict(audio=wav, text=text)
    mp3 = tmp_path / "clip.mp3"
    ffmpeg("-i", wav, "-c:a", "libmp3lame", "-b:a", "192k", mp3)
    high = soxr.resample(clip, 16000, 44100, quality="VHQ")
    stereo = write_wav("clip44k.wav", np.stack([high, high], axis=1), sample_rate=44100)
    flac = tmp_path / "clip.flac"
    soundfile.write(flac, clip, 16000, subtype="PCM_24")
    float_wav = write_wav("float.wav", clip, subtype="FLOAT")
    expected = probabilities(reference)
    top_two = np.sort(expected)[-2:]
    # MP3 is lossy: its samples differ from the WAV's by the codec's noise, which
    # moves a tiny model's probabilities by more than resampling or re-packing does.
    for source, tolerance in ((mp3, MP3_TOLERANCE), (mp3.read_bytes(), MP3_TOLERANCE), (stereo, TOLERANCE),
                              (flac, TOLERANCE), (float_wav, TOLERANCE)):
        prepared = recognizer.prepare(audio=source, text=text)
        assert prepared.audio_wav[:4] == b"RIFF" and prepared.duration_s == pytest.approx(1.0, abs=0.1)
        got = recognizer.predict(audio=source, text=text)
        np.testing.assert_allclose(probabilities(got), expected, atol=tolerance, err_msg=str(source)[:80])
        if top_two[1] - top_two[0] > 2 * tolerance:  # the same label unless the two best were that close
            assert got.label == reference.label, str(source)[:80]


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "audio file not found"),
        ("empty", "is empty (0 bytes)"),
        ("undecodable", "cannot decode"),
        ("zero-length", "has no samples"),
        ("silent", "is silent"),
        ("too-short", "is too short (20 ms); the model needs at least 64 ms of audio"),
        ("cut-short", "is cut short"),
        ("nan-waveform", "contains NaN or infinite samples"),
        ("no-rate", "needs its sample rate: pass sample_rate="),
        ("not-audio", "audio must be a file path"),
    ],
)
def test_bad_audio_raises_an_input_error_naming_it(recognizer, tmp_path, kind, message):
    from bimer_tf.errors import InputError

    path = tmp_path / f"{kind}.wav"
    sample_rate = None
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "undecodable":
        path.write_bytes(b"this is a text file, not audio\n" * 20)
    elif kind == "zero-length":
        soundfile.write(path, np.zeros(0, np.float32), 16000, subtype="PCM_16")
    elif kind == "silent":
        soundfile.write(path, np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    elif kind == "too-short":
        soundfile.write(path, synth_tone(0.02), 16000, subtype="PCM_16")
    elif kind == "cut-short":
        soundfile.write(path, synth_tone(0.5), 16000, subtype="PCM_16")
        path.write_bytes(path.read_bytes()[:1000])
    audio = {
        "nan-waveform": np.full(16000, np.nan, np.float32),
        "no-rate": synth_tone(0.5),
        "not-audio": 42,
    }.get(kind, path)
    if kind == "nan-waveform":
        sample_rate = 16000
    with pytest.raises(InputError) as error:
        recognizer.predict(audio=audio, text="hello", sample_rate=sample_rate)
    assert message in str(error.value)
    if isinstance(audio, type(path)) and kind != "missing":
        assert str(path) in str(error.value)


def test_inputs_the_model_needs_and_inputs_it_does_not_use(recognizer, speech_recognizer, text_recognizer, clip):
    from bimer_tf.errors import InputError

    with pytest.raises(InputError, match="no transcript: the model .* takes audio_wav and text; pass text="):
        recognizer.predict(audio=clip, sample_rate=16000)
    with pytest.raises(InputError, match="no audio: the model .* takes audio_wav and text; pass audio="):
        recognizer.predict(text="hello")
    noted = speech_recognizer.predict(audio=clip, text="hello", sample_rate=16000)
    assert noted.notes == ("the model takes only audio_wav; the text is not used",)
    noted = text_recognizer.predict(audio=b"not even audio", text="what a day")
    assert noted.notes == ("the model takes only text; the audio is not used",) and noted.label in FAKE_LABELS
    assert recognizer.predict(audio=clip, text="", sample_rate=16000).notes == (
        "the transcript is empty; the model saw no words",
    )
    long = recognizer.predict(audio=synth_tone(2.5), text="hello", sample_rate=16000)
    assert long.notes == ("audio is 2.5 s; the model used its first 1 s after trimming silence",)


def test_an_input_the_graph_rejects_is_an_input_error_and_costs_a_batch_nothing(text_recognizer):
    from bimer_tf.errors import InputError

    with pytest.raises(InputError) as error:
        text_recognizer.predict(text="boom")
    assert str(error.value) == "the model rejected the input: text: the input boom is refused"
    results = text_recognizer.predict_batch([{"text": t} for t in ("hello", "boom", "good day")], batch_size=8)
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error == str(error.value) and results[1].prediction is None
    assert results[0].prediction == text_recognizer.predict(text="hello")
    assert results[2].prediction == text_recognizer.predict(text="good day")


def test_predict_batch_keeps_order_reports_bad_items_and_matches_predict(recognizer, write_wav, clip, tmp_path):
    good = write_wav("good.wav", clip)
    other = write_wav("other.wav", synth_tone(0.7, freq=180.0, lead_silence=0.2))
    (tmp_path / "junk.mp3").write_bytes(b"junk" * 50)
    items = [
        {"audio": str(good), "text": TINY_TEXTS["happy"]},
        {"audio": str(tmp_path / "junk.mp3"), "text": "hi"},
        {"audio": other.read_bytes(), "text": TINY_TEXTS["angry"], "id": "ignored"},
        {"audio": np.zeros(8000, np.float32), "sample_rate": 16000, "text": "hi"},
        {"audio": str(other), "text": None},
        {"audio": clip, "sample_rate": 16000, "text": TINY_TEXTS["sad"]},
    ]
    results = recognizer.predict_batch(items, batch_size=2, workers=2)
    assert [r.index for r in results] == list(range(len(items)))
    assert [r.ok for r in results] == [True, False, True, False, False, True]
    assert "cannot decode" in results[1].error and "junk.mp3" in results[1].error
    assert results[3].error.startswith("item 3 (waveform) is silent")
    assert results[4].error.startswith("no transcript")
    for result in results:
        if result.ok:
            item = items[result.index]
            single = recognizer.predict(audio=item["audio"], text=item["text"], sample_rate=item.get("sample_rate"))
            assert result.prediction.label == single.label
            np.testing.assert_allclose(probabilities(result.prediction), probabilities(single), atol=1e-6)


def test_a_load_hook_runs_per_item_and_its_errors_stay_in_the_item(speech_recognizer, write_wav, clip):
    from bimer_tf.errors import InputError

    path = write_wav("good.wav", clip)

    def load(name):
        if name == "unreadable":
            raise PermissionError(13, "Permission denied", "/secret/x.wav")
        if name == "refused":
            raise InputError("no transcript for refused")
        return {"audio": path}

    results = speech_recognizer.predict_batch(["fine", "unreadable", "refused", "fine"], load=load)
    assert [r.ok for r in results] == [True, False, False, True]
    assert results[1].error == "cannot read /secret/x.wav: Permission denied"
    assert results[2].error == "no transcript for refused"


def test_predict_waveforms_gives_a_probability_matrix(recognizer, clip):
    from bimer_tf.errors import InputError

    waves = [clip, synth_tone(0.6, freq=200.0), synth_tone(0.9, freq=400.0)]
    texts = [TINY_TEXTS[label] for label in ("happy", "sad", "angry")]
    matrix = recognizer.predict_waveforms(waves, texts, batch_size=2)
    assert matrix.shape == (3, len(TINY_LABELS)) and matrix.dtype == np.float32
    for row, wave, text in zip(matrix, waves, texts):
        single = recognizer.predict(audio=wave, text=text, sample_rate=16000)
        np.testing.assert_allclose(row, probabilities(single), atol=1e-6)
    with_silence = waves + [np.zeros(16000, np.float32)]
    with pytest.raises(InputError, match="^item 3 \\(waveform\\) is silent"):
        recognizer.predict_waveforms(with_silence, texts + ["hi"])
    marked = recognizer.predict_waveforms(with_silence, texts + ["hi"], on_error="nan")
    assert np.isnan(marked[3]).all() and np.allclose(marked[:3], matrix, atol=1e-6)
    with pytest.raises(InputError, match="3 waveforms but 2 texts"):
        recognizer.predict_waveforms(waves, texts[:2])
    at_8k = recognizer.predict_waveforms([clip[::2]], texts[:1], sample_rate=8000)
    assert at_8k.shape == (1, len(TINY_LABELS)) and np.isfinite(at_8k).all()


def test_threads_share_one_recognizer(recognizer, clip):
    inputs = [(synth_tone(0.8, freq=f), TINY_TEXTS[label]) for f, label in zip((150.0, 300.0, 450.0), TINY_TEXTS)]
    expected = [recognizer.predict(audio=a, text=t, sample_rate=16000) for a, t in inputs]
    results, errors = {}, []

    def work(worker):
        try:
            for round_ in range(3):
                for i, (audio, text) in enumerate(inputs):
                    results[worker, round_, i] = recognizer.predict(audio=audio, text=text, sample_rate=16000)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for (_, _, i), prediction in results.items():
        assert prediction.label == expected[i].label
        np.testing.assert_allclose(probabilities(prediction), probabilities(expected[i]), atol=1e-6)


def test_timeline_is_the_timeline_module_s(recognizer, monkeypatch):
    calls = []
    fake = types.ModuleType("bimer_tf.inference.timeline")
    fake.emotion_timeline = lambda rec, path, **options: calls.append((rec, path, options)) or "timeline"
    monkeypatch.setitem(sys.modules, "bimer_tf.inference.timeline", fake)
    assert recognizer.timeline("call.wav", segment="vad") == "timeline"
    assert calls == [(recognizer, "call.wav", {"segment": "vad"})]


def test_importing_the_api_loads_no_tensorflow():
    code = (
        "import sys, bimer_tf\n"
        "assert 'numpy' not in sys.modules\n"
        "from bimer_tf import Recognizer, Prediction, BatchResult\n"
        "import bimer_tf.inference.predict\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'keras_hub') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
