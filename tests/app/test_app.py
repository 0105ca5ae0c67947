"""The web application: every endpoint, every bad input, the TF Serving client path.

Most tests drive the Flask app in-process with its test client over the tiny
exported model; the TF Serving path runs against a loopback HTTP server that
implements TF Serving's documented REST API on the same SavedModel; one test
starts the real command (`python -m bimer_tf.app`, waitress) on a free port.
Long recordings (the emotion timeline) use a speech-only export and a
recording of about 36 s: RAVDESS sentences joined by pauses, else espeak-ng.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile

from bimer_tf.app import Limits, SavedModelClient, ServingClient, create_app
from bimer_tf.app.model_client import ModelFailed
from bimer_tf.errors import InputError

from conftest import REPO_ROOT, SHARED_CORPORA, TINY_LABELS, TINY_TEXTS, synth_tone

# A real recorded English clip (RAVDESS actor 1, angry, "Kids are talking by the door").
RAVDESS_CLIP = SHARED_CORPORA / "ravdess4" / "wav" / "Actor_01" / "03-01-05-01-01-01-01.wav"
SENTENCE = "Kids are talking by the door"
LIMITS = Limits(max_upload_bytes=1 * 2**20, max_duration_s=3.0, max_text_chars=200)


def wav_bytes(samples, sample_rate=16000, subtype="PCM_16", channels_last=None):
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, sample_rate, subtype=subtype, format="WAV")
    return buffer.getvalue()


def tone(seconds=0.8, **kwargs):
    return synth_tone(seconds, freq=300.0, lead_silence=0.1, tail_silence=0.1, **kwargs)


def ffmpeg_encode(data: bytes, extension: str, *codec) -> bytes:
    """`data` (any audio) re-encoded by imageio-ffmpeg's ffmpeg into `extension`'s container."""
    from imageio_ffmpeg import get_ffmpeg_exe

    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "in.wav", Path(folder) / f"out.{extension}"
        source.write_bytes(data)
        subprocess.run(
            [get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-i", str(source), *codec, str(target)],
            check=True, timeout=60,
        )
        return target.read_bytes()


def post(client, audio=None, text=None, filename="clip", **fields):
    data = dict(fields)
    if audio is not None:
        data["audio"] = (io.BytesIO(audio), filename)
    if text is not None:
        data["text"] = text
    return client.post("/api/predict", data=data, content_type="multipart/form-data")


@pytest.fixture(scope="module")
def model(tiny_export):
    return SavedModelClient(tiny_export)


@pytest.fixture(scope="module")
def client(model):
    """The app without speech recognition (`--asr none`)."""
    return create_app(model, None, LIMITS, asr_name="none").test_client()


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """A fresh temporary folder for everything the app writes; must be empty afterwards."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    assert list(folder.iterdir()) == []


def assert_json_error(response, status, *phrases):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    message = response.get_json()["error"]
    for phrase in phrases:
        assert phrase in message, message
    assert "Traceback" not in message
    return message


# --- the page and the read-only endpoints ------------------------------------


def test_index_page_is_self_contained(client):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert '<script src="/static/app.js"' in html and 'href="/static/style.css"' in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "no CDN or external resource"
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    for name, mimetype in (("app.js", "text/javascript"), ("style.css", "text/css")):
        static = client.get(f"/static/{name}")
        assert static.status_code == 200 and static.mimetype == mimetype
    script = client.get("/static/app.js").get_data(as_text=True)
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script and "eval(" not in script
    assert "textContent" in script


def test_health(client):
    reply = client.get("/api/health")
    assert reply.status_code == 200
    assert reply.get_json()["status"] == "ok"


def test_model_description(client):
    info = client.get("/api/model").get_json()
    assert info["labels"] == TINY_LABELS
    assert info["kind"] == "bimodal"
    assert info["inputs"] == ["audio_wav", "text"]
    assert info["model_type"] == "bimer"
    assert info["asr"] is None
    assert info["limits"] == {"max_upload_mb": 1.0, "max_duration_s": 3.0, "max_text_chars": 200, "max_timelines": 2}


def test_unknown_path_and_wrong_method_are_json(client):
    assert_json_error(client.get("/api/nothing"), 404, "no such page or endpoint")
    assert_json_error(client.get("/api/predict"), 405, "GET is not allowed on /api/predict")


# --- predictions ---------------------------------------------------------------


def test_predict_with_typed_text(client, model, private_tmp):
    audio = wav_bytes(tone())
    reply = post(client, audio, TINY_TEXTS["happy"])
    assert reply.status_code == 200, reply.get_json()
    result = reply.get_json()
    assert set(result) >= {"transcript", "label", "probabilities", "timings_ms", "audio"}
    assert result["transcript"] == TINY_TEXTS["happy"] and result["transcript_source"] == "text"
    assert list(result["probabilities"]) == TINY_LABELS
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert result["label"] == max(result["probabilities"], key=result["probabilities"].get)
    timings = result["timings_ms"]
    assert timings["asr"] is None and timings["model"] > 0 and timings["total"] >= timings["model"]
    assert result["audio"] == {"format": "WAV", "duration_s": 1.0}
    # a 16 kHz PCM16 WAV reaches the model unchanged: same answer as the SavedModel itself
    direct = model.predict(audio, TINY_TEXTS["happy"])
    assert result["probabilities"] == pytest.approx(direct.probabilities, abs=1e-5)


FORMATS = {
    "wav-float-44k-stereo": ("WAV", lambda wav: ffmpeg_encode(wav, "wav", "-ar", "44100", "-ac", "2", "-c:a", "pcm_f32le")),
    "flac": ("FLAC", lambda wav: ffmpeg_encode(wav, "flac", "-ar", "22050")),
    "ogg": ("OGG", lambda wav: ffmpeg_encode(wav, "ogg", "-c:a", "libvorbis", "-ar", "44100")),
    "mp3": ("MP3", lambda wav: ffmpeg_encode(wav, "mp3", "-c:a", "libmp3lame", "-ar", "44100")),
    "webm": ("WebM", lambda wav: ffmpeg_encode(wav, "webm", "-c:a", "libopus")),
    "m4a": ("MP4/M4A", lambda wav: ffmpeg_encode(wav, "m4a", "-c:a", "aac")),
}


@pytest.mark.parametrize("name", list(FORMATS))
def test_uploads_in_every_format_are_converted(client, private_tmp, name):
    expected_format, encode = FORMATS[name]
    data = encode(wav_bytes(tone()))
    reply = post(client, data, TINY_TEXTS["sad"], filename=f"clip.{name}")
    assert reply.status_code == 200, reply.get_json()
    result = reply.get_json()
    assert result["audio"]["format"] == expected_format
    assert result["audio"]["duration_s"] == pytest.approx(1.0, abs=0.08)  # codec padding
    assert result["label"] in TINY_LABELS


def test_converted_audio_is_16k_mono_pcm16():
    from bimer_tf.app.uploads import prepare_audio

    data = FORMATS["webm"][1](wav_bytes(tone()))
    prepared = prepare_audio(data, LIMITS)
    info = soundfile.info(io.BytesIO(prepared.wav))
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "PCM_16", 16000, 1)


def test_file_names_never_become_paths(client, private_tmp, tmp_path):
    before = set(os.listdir(tmp_path))
    for name in ("../../evil.wav", "/tmp/evil.wav", "..\\..\\evil.wav", "a/b/c.webm"):
        data = FORMATS["webm"][1](wav_bytes(tone())) if name.endswith("webm") else wav_bytes(tone())
        reply = post(client, data, "hello", filename=name)
        assert reply.status_code == 200, reply.get_json()
    assert set(os.listdir(tmp_path)) == before
    assert not Path("/tmp/evil.wav").exists() and not (REPO_ROOT.parent / "evil.wav").exists()


def test_long_audio_within_the_limit_is_cropped_by_the_model_with_a_note(client):
    reply = post(client, wav_bytes(synth_tone(2.5, freq=250.0)), "hello")
    assert reply.status_code == 200
    assert "first 1 s" in reply.get_json()["notes"][0]


# --- bad input: always a 4xx JSON error, and the server keeps serving -----------


def _nan_wav():
    return wav_bytes(np.full(16000, np.nan, np.float32), subtype="FLOAT")


BAD_AUDIO = {
    "empty file": (lambda: b"", 400, ["is empty (0 bytes)", "record again"]),
    "undecodable bytes": (lambda: b"this is not audio at all\n" * 40, 400, ["cannot decode", "export it as WAV"]),
    "header-only WAV": (lambda: wav_bytes(tone())[:44], 400, ["cut short", "promises 32000 bytes", "holds 0", "record or copy it again"]),
    "truncated WAV": (lambda: wav_bytes(tone())[:5000], 400, ["cut short", "holds 4956"]),
    "silent audio": (lambda: wav_bytes(np.zeros(16000, np.float32)), 400, ["is silent", "microphone"]),
    "NaN float WAV": (_nan_wav, 400, ["NaN or infinite", "record or export it again"]),
    "audio over the duration limit": (lambda: wav_bytes(synth_tone(4.0)), 413, ["4.0 s long", "at most 3 s", "--max-duration-s"]),
    "webm over the duration limit": (lambda: FORMATS["webm"][1](wav_bytes(synth_tone(4.0))), 413, ["at most 3 s"]),
    "upload over the size limit": (lambda: b"\0" * (LIMITS.max_upload_bytes + 1), 413, ["larger than this server's limit of 1 MB", "--max-upload-mb"]),
}


@pytest.mark.parametrize("case", list(BAD_AUDIO))
def test_bad_audio_is_a_4xx_json_error(client, private_tmp, case):
    make, status, phrases = BAD_AUDIO[case]
    assert_json_error(post(client, make(), "hello"), status, *phrases)
    assert client.get("/api/health").status_code == 200
    assert post(client, wav_bytes(tone()), "hello").status_code == 200  # still serving


def _raw_multipart(text_bytes: bytes, audio: bytes) -> tuple[bytes, str]:
    boundary = "bimerboundary"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\n".encode()
        + text_bytes
        + f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"a.wav\"\r\n"
        "Content-Type: audio/wav\r\n\r\n".encode()
        + audio
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def test_bad_fields_and_text(client):
    audio = wav_bytes(tone())
    assert_json_error(
        client.post("/api/predict", data={"file": (io.BytesIO(audio), "a.wav")}, content_type="multipart/form-data"),
        400, "unknown field(s) 'file'", "field 'audio'",
    )
    assert_json_error(post(client, audio, "hi", transcript="hi"), 400, "unknown field(s) 'transcript'")
    as_text = client.post("/api/predict", data={"audio": "not a file", "text": "hi"}, content_type="multipart/form-data")
    assert_json_error(as_text, 400, "must be a file upload")
    assert_json_error(post(client, None, "hello"), 400, "no audio", "field 'audio'")
    assert_json_error(post(client, audio, None), 400, "no transcript", "--asr none", "field 'text'")
    assert_json_error(post(client, audio, "x" * 201), 400, "201 characters", "limit is 200")
    body, content_type = _raw_multipart("très fâché".encode("latin-1"), audio)
    assert_json_error(client.post("/api/predict", data=body, content_type=content_type), 400, "not valid UTF-8", "encoded as UTF-8")
    body, content_type = _raw_multipart("très fâché".encode("utf-8"), audio)
    assert client.post("/api/predict", data=body, content_type=content_type).status_code == 200
    assert_json_error(client.post("/api/predict", json={"text": "hi"}), 400, "send multipart/form-data", "curl -F")
    assert client.get("/api/health").status_code == 200


class _FailingModel:
    """A model client whose calls fail as configured."""

    def __init__(self, info, error):
        self.info, self.error, self.source = info, error, "test"

    def predict(self, audio_wav, text):
        raise self.error

    def health(self):
        return {"model": "ok"}


@pytest.mark.parametrize(
    "error, status, phrase",
    [
        (InputError("the model rejected the input: audio_wav: the WAV holds no samples"), 400, "rejected the input"),
        (RuntimeError("secret internals /home/x"), 500, "internal error (RuntimeError)"),
    ],
)
def test_errors_from_the_model_are_json(model, error, status, phrase):
    app = create_app(_FailingModel(model.info, error), None, LIMITS)
    message = assert_json_error(post(app.test_client(), wav_bytes(tone()), "hi"), status, phrase)
    assert "/home/x" not in message


# --- models of one modality ---------------------------------------------------


@pytest.fixture(scope="module")
def one_modality_apps(tmp_path_factory):
    from conftest import one_modality_export

    apps = {}
    for kind, input_name in (("text", "text"), ("speech", "audio_wav")):
        folder = one_modality_export(tmp_path_factory.mktemp(kind) / "1", input_name)
        apps[kind] = create_app(SavedModelClient(folder), None, LIMITS).test_client()
    return apps


def test_text_only_model(one_modality_apps):
    client = one_modality_apps["text"]
    assert client.get("/api/model").get_json()["kind"] == "text"
    reply = post(client, None, "what a great day")
    assert reply.status_code == 200 and reply.get_json()["audio"] is None
    reply = post(client, wav_bytes(tone()), "what a great day")
    assert reply.status_code == 200 and "does not use audio" in reply.get_json()["notes"][0]
    assert_json_error(post(client, None, None), 400, "no transcript")
    assert_json_error(post(client, wav_bytes(tone()), None), 400, "no transcript", "--asr none")


def test_speech_only_model(one_modality_apps):
    client = one_modality_apps["speech"]
    assert client.get("/api/model").get_json()["kind"] == "speech"
    reply = post(client, wav_bytes(tone()))
    assert reply.status_code == 200 and reply.get_json()["transcript"] is None
    reply = post(client, wav_bytes(tone()), "hello there")
    result = reply.get_json()
    assert result["transcript"] == "hello there" and "does not use text" in result["notes"][0]
    assert_json_error(post(client, None, "hello"), 400, "no audio")


# --- TF Serving: a loopback server implementing its REST predict contract -------


class FakeTFServing(ThreadingHTTPServer):
    """TF Serving's documented REST API (row format) over a SavedModel.

    `GET /v1/models/<name>` -> version status; `POST /v1/models/<name>:predict`
    with `{"instances": [{"audio_wav": {"b64": ...}, "text": ...}]}` ->
    `{"predictions": [{"probabilities": [...], "label": ..., "label_id": N}]}`;
    errors are `{"error": "..."}` with HTTP 400 (bad request) or 404 (no model).
    """

    daemon_threads = True

    def __init__(self, saved_model, name="bimer"):
        from bimer_tf.serving.export_dir import load_saved_model

        self.serve, _ = load_saved_model(saved_model)
        self.name = name
        self.requests = []
        super().__init__(("127.0.0.1", 0), _TFServingHandler)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/v1/models/{self.name}"


class _TFServingHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == f"/v1/models/{self.server.name}":
            status = {"error_code": "OK", "error_message": ""}
            return self._reply(200, {"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": status}]})
        self._reply(404, {"error": f"Servable not found for request: Latest({self.path.rsplit('/', 1)[-1]})"})

    def do_POST(self):
        import tensorflow as tf

        if self.path != f"/v1/models/{self.server.name}:predict":
            return self._reply(404, {"error": f"Servable not found for request: {self.path}"})
        try:
            instances = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["instances"]
            self.server.requests.append(instances)
            columns = {
                key: tf.constant(
                    [base64.b64decode(i[key]["b64"]) if isinstance(i[key], dict) else i[key].encode() for i in instances]
                )
                for key in instances[0]
            }
            result = self.server.serve(**columns)
        except (ValueError, KeyError, TypeError) as error:
            return self._reply(400, {"error": f"JSON Parse error: {error}"})
        except tf.errors.OpError as error:
            return self._reply(400, {"error": error.message.strip().splitlines()[-1]})
        predictions = [
            {"probabilities": p.tolist(), "label": label.decode(), "label_id": int(i)}
            for p, label, i in zip(result["probabilities"].numpy(), result["label"].numpy(), result["label_id"].numpy())
        ]
        self._reply(200, {"predictions": predictions})


@pytest.fixture(scope="module")
def tf_serving(tiny_export):
    server = FakeTFServing(tiny_export)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_tf_serving_client_path(tf_serving, tiny_export, model):
    app = create_app(ServingClient(tf_serving.url, tiny_export), None, LIMITS).test_client()
    health = app.get("/api/health").get_json()
    assert health["status"] == "ok" and health["serving_versions"] == ["1"]
    assert app.get("/api/model").get_json()["source"] == f"TF Serving {tf_serving.url}"
    audio = wav_bytes(tone())
    reply = post(app, audio, TINY_TEXTS["angry"])
    assert reply.status_code == 200, reply.get_json()
    result = reply.get_json()
    instance = tf_serving.requests[-1][0]
    assert set(instance) == {"audio_wav", "text"} and instance["text"] == TINY_TEXTS["angry"]
    assert base64.b64decode(instance["audio_wav"]["b64"]) == audio  # the converted WAV, as TF Serving gets it
    direct = model.predict(audio, TINY_TEXTS["angry"])
    assert result["label"] == direct.label
    assert result["probabilities"] == pytest.approx(direct.probabilities, abs=1e-5)
    # the ":predict" suffix is accepted too
    assert ServingClient(tf_serving.url + ":predict", tiny_export).url == tf_serving.url


def test_tf_serving_errors_are_502_and_unreachable_is_503(tf_serving, tiny_export):
    wrong_name = tf_serving.url.rsplit("/", 1)[0] + "/nosuchmodel"
    app = create_app(ServingClient(wrong_name, tiny_export), None, LIMITS).test_client()
    assert_json_error(post(app, wav_bytes(tone()), "hi"), 502, "answered HTTP 404", "Servable not found")

    closed = f"http://127.0.0.1:{free_port()}/v1/models/bimer"
    app = create_app(ServingClient(closed, tiny_export), None, LIMITS).test_client()
    assert_json_error(post(app, wav_bytes(tone()), "hi"), 503, "cannot reach TF Serving", "--serving-url")
    assert_json_error(app.get("/api/health"), 503, "cannot reach TF Serving")
    assert app.get("/api/model").status_code == 200  # the page still loads and says what is wrong

    with pytest.raises(InputError, match="not a TF Serving model address"):
        ServingClient("http://127.0.0.1:8501/", tiny_export)


def test_tf_serving_reply_for_another_model_is_502(tf_serving, tiny_export, tmp_path):
    """--model naming a version with other labels than the served one."""
    other = tmp_path / "1"
    shutil.copytree(tiny_export, other)
    metadata = other / "assets.extra" / "bimer_tf.json"
    data = json.loads(metadata.read_text())
    data["labels"] = data["labels"] + ["surprised"]
    metadata.write_text(json.dumps(data))
    app = create_app(ServingClient(tf_serving.url, other), None, LIMITS).test_client()
    assert_json_error(post(app, wav_bytes(tone()), "hi"), 502, "4 probabilities for 5 labels")


# --- real speech recognition (tiny.en, offline) --------------------------------


@pytest.fixture(scope="session")
def speech_clip(tmp_path_factory) -> tuple[Path, str]:
    """(WAV of spoken English, its sentence): a RAVDESS recording, else espeak-ng."""
    if RAVDESS_CLIP.is_file():
        return RAVDESS_CLIP, SENTENCE
    if shutil.which("espeak-ng") is None:
        pytest.skip(f"no speech clip: neither {RAVDESS_CLIP} nor espeak-ng (apt-get install espeak-ng)")
    from bimer_tf.audio.wav import convert_audio

    folder = tmp_path_factory.mktemp("speech")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(folder / "raw.wav"), SENTENCE + "."], check=True)
    return convert_audio(folder / "raw.wav", folder / "speech.wav"), SENTENCE


@pytest.fixture(scope="session")
def recognizer():
    from bimer_tf.audio.asr import load_recognizer

    try:
        return load_recognizer("whisper-tiny-offline")
    except InputError as error:
        pytest.skip(f"offline Whisper weights missing: {error}")


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", text.lower()).split()


def test_real_speech_recognition_fills_the_transcript(model, recognizer, speech_clip, private_tmp):
    path, sentence = speech_clip
    # The tiny model hears 1 s at once: judge the 4 s clip as one utterance, not as a long recording.
    app = create_app(model, recognizer, Limits(long_audio_s=10.0), asr_name="whisper-tiny-offline").test_client()
    assert app.get("/api/model").get_json()["asr"] == "whisper-tiny-offline"
    # as a browser would send a recording: WebM/Opus
    reply = post(app, FORMATS["webm"][1](path.read_bytes()), filename="recording.webm")
    assert reply.status_code == 200, reply.get_json()
    result = reply.get_json()
    assert result["transcript_source"] == "asr"
    if path == RAVDESS_CLIP:
        assert words(result["transcript"]) == words(sentence)
    else:  # synthetic speech: most of the words
        assert "door" in words(result["transcript"])
    assert result["timings_ms"]["asr"] > 0
    # an edited transcript skips recognition
    reply = post(app, path.read_bytes(), "i am so happy")
    assert reply.get_json()["transcript"] == "i am so happy" and reply.get_json()["timings_ms"]["asr"] is None


@pytest.mark.parametrize("source", ["whisper-tiny-offline", "whisper-base-offline"])
def test_offline_recognizers_never_download(monkeypatch, source):
    import faster_whisper.transcribe
    import tokenizers

    from bimer_tf.audio.asr import SpeechRecognizer

    def no_network(*args, **kwargs):
        raise AssertionError("an offline recognizer tried to download")

    monkeypatch.setattr(faster_whisper.transcribe, "download_model", no_network)
    monkeypatch.setattr(tokenizers.Tokenizer, "from_pretrained", no_network)
    try:
        recognizer = SpeechRecognizer(source)
    except InputError as error:
        pytest.skip(f"{source} not installed: {error}")
    assert recognizer.transcribe(np.zeros(16000, np.float32)).text is not None


def test_an_online_model_without_network_fails_with_the_choices(monkeypatch):
    import faster_whisper.transcribe

    from bimer_tf.audio.asr import SpeechRecognizer

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(faster_whisper.transcribe, "download_model", offline)
    with pytest.raises(InputError, match="cannot load the speech recognition model 'small.en'.*whisper-tiny-offline or whisper-base-offline"):
        SpeechRecognizer("small.en")


def test_recognizer_is_loaded_once_per_process(recognizer):
    from bimer_tf.audio.asr import load_recognizer

    assert load_recognizer("whisper-tiny-offline") is recognizer
    assert load_recognizer("none") is None


# --- the command: waitress on a free loopback port -----------------------------


def multipart(fields: dict) -> tuple[bytes, str]:
    """A multipart/form-data body: {name: str or (filename, bytes)}."""
    boundary = "bimer-" + os.urandom(8).hex()
    parts = []
    for name, value in fields.items():
        if isinstance(value, tuple):
            filename, data = value
            head = f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\nContent-Type: application/octet-stream'
        else:
            head, data = f'Content-Disposition: form-data; name="{name}"', value.encode("utf-8")
        parts.append(f"--{boundary}\r\n{head}\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy


def http(url, fields=None, timeout=120):
    """(status, JSON) of a GET, or a multipart POST when `fields` is given."""
    body, content_type = multipart(fields) if fields is not None else (None, None)
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type} if body else {})
    try:
        with LOOPBACK.open(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def start_app(model_dir, *options, port=None, timeout=240):
    """`python -m bimer_tf.app` in a subprocess; returns (process, base URL) once it is ready."""
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bimer_tf.app", "--saved-model", str(model_dir), "--port", str(port), *map(str, options)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("ready in"):
            threading.Thread(target=process.stdout.read, daemon=True).start()  # keep the pipe drained
            return process, f"http://127.0.0.1:{port}"
    process.kill()
    raise AssertionError("the app did not start:\n" + "".join(lines))


def test_the_command_serves_with_waitress(tiny_export):
    process, base = start_app(tiny_export, "--asr", "none", "--max-upload-mb", "1", "--threads", "2")
    try:
        assert http(f"{base}/api/health")[1]["status"] == "ok"
        status, result = http(f"{base}/api/predict", {"audio": ("a.wav", wav_bytes(tone())), "text": "hello"})
        assert status == 200 and result["label"] in TINY_LABELS
        status, result = http(f"{base}/api/predict", {"audio": ("a.wav", b"\0" * (2**20 + 10)), "text": "hi"})
        assert status == 413 and "limit of 1 MB" in result["error"]
        status, result = http(f"{base}/api/predict", {"audio": ("a.wav", b"junk" * 100), "text": "hi"})
        assert status == 400 and "cannot decode" in result["error"]
        assert http(f"{base}/api/health")[0] == 200
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_default_limits_take_ten_minutes():
    from bimer_tf.app.__main__ import build_parser

    limits, args = Limits(), build_parser().parse_args(["--saved-model", "x"])
    assert limits.max_duration_s == args.max_duration_s == 600.0
    # 10 minutes of 48 kHz stereo 16-bit WAV (the largest common uncompressed export) fit
    assert limits.max_upload_bytes == args.max_upload_mb * 2**20 > 600 * 48000 * 2 * 2 + 2**20
    assert limits.long_audio_s is None and args.long_audio_s is None  # the model's clip length


def test_the_command_rejects_bad_arguments_with_exit_2(tmp_path, tiny_export):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "bimer_tf.app", *map(str, args)], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=300)

    done = run("--help")
    assert done.returncode == 0
    for option in ("--saved-model", "--asr", "--serving-url", "--host", "--port", "--max-upload-mb", "--max-duration-s",
                   "--long-audio-s", "--threads"):
        assert option in done.stdout
    done = run("--saved-model", tmp_path, "--asr", "none")
    assert done.returncode == 2 and "not a SavedModel version folder" in done.stderr
    assert "Traceback" not in done.stderr
    done = run("--saved-model", tmp_path, "--port", "70000")
    assert done.returncode == 2 and "not a TCP port" in done.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        done = run("--saved-model", tiny_export, "--asr", "none", "--port", busy.getsockname()[1])
    assert done.returncode == 2 and "cannot listen on 127.0.0.1:" in done.stderr and "choose another --port" in done.stderr
    assert "Traceback" not in done.stderr


# --- long recordings: the emotion timeline --------------------------------------

RAVDESS_ROOT = SHARED_CORPORA / "ravdess4"
TIMELINE_EMOTIONS = ("neutral", "angry", "sad", "happy")
ESPEAK_SENTENCES = (
    "Kids are talking by the door.",
    "I can't believe you did that to me.",
    "What a wonderful day it is today.",
    "Please leave me alone now.",
    "The train leaves at nine tomorrow morning.",
    "I am so tired of waiting here.",
    "Thank you so much for coming.",
    "Nobody told me anything about it.",
)
PAUSE_S = 1.2
SEGMENT_KEYS = {"index", "start_s", "end_s", "transcript", "label", "probabilities", "windows"}


def ravdess_sentences(count: int, first_actor: int = 1) -> list[Path]:
    """`count` RAVDESS clips: actors in turn, emotions rotating, both sentences alternating."""
    import csv

    with open(RAVDESS_ROOT / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    clips = []
    for i in range(count):
        actor = first_actor + i % 24
        emotion = TIMELINE_EMOTIONS[i % len(TIMELINE_EMOTIONS)]
        statement = "Kids" if (i // 2) % 2 == 0 else "Dogs"
        for row in rows:
            if int(row["actor"]) == actor and row["emotion"] == emotion and row["statement_text"].startswith(statement):
                clips.append(RAVDESS_ROOT / row["path"])
                break
    return clips


def join_with_pauses(parts, pause_s: float = PAUSE_S, sample_rate: int = 16000) -> np.ndarray:
    pause = np.zeros(int(pause_s * sample_rate), np.float32)
    return np.concatenate([pause] + [x for part in parts for x in (part, pause)]).astype(np.float32)


def long_recording(folder: Path, count: int = 8) -> tuple[Path, int]:
    """(a 16 kHz WAV of `count` spoken sentences with pauses between them, `count`)."""
    from bimer_tf.audio.wav import load_audio, write_pcm16

    if (RAVDESS_ROOT / "metadata.csv").is_file():
        parts = [load_audio(path, 16000) for path in ravdess_sentences(count)]
    elif shutil.which("espeak-ng"):
        parts = []
        for i, sentence in enumerate(ESPEAK_SENTENCES[:count]):
            raw = folder / f"sentence{i}.wav"
            subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(raw), sentence], check=True)
            parts.append(load_audio(raw, 16000))
    else:
        pytest.skip(f"no speech for a long recording: neither {RAVDESS_ROOT} nor espeak-ng (apt-get install espeak-ng)")
    return write_pcm16(folder / "long.wav", join_with_pauses(parts)), len(parts)


@pytest.fixture(scope="session")
def long_speech(tmp_path_factory) -> tuple[Path, int]:
    """(a recording of about 36 s: 8 sentences with 1.2 s pauses, the sentence count)."""
    path, count = long_recording(tmp_path_factory.mktemp("long_speech"))
    assert 25.0 <= soundfile.info(path).duration <= 45.0
    return path, count


@pytest.fixture(scope="module")
def speech_export(tmp_path_factory):
    """A speech-only export (it hears 6 s at once; scores follow the input's length)."""
    from conftest import one_modality_export

    return one_modality_export(tmp_path_factory.mktemp("speech_timeline") / "1", "audio_wav")


@pytest.fixture(scope="module")
def speech_model(speech_export):
    return SavedModelClient(speech_export)


def post_timeline(client, audio=None, filename="recording.wav", url="/api/timeline", **fields):
    data = dict(fields)
    if audio is not None:
        data["audio"] = (io.BytesIO(audio), filename)
    return client.post(url, data=data, content_type="multipart/form-data")


def check_timeline(timeline: dict, labels, duration_s: float) -> None:
    """The JSON form of a timeline: segments in order, probabilities per label, a consistent summary."""
    assert timeline["labels"] == list(labels)
    assert set(timeline["colours"]) == set(labels) and all(c.startswith("#") for c in timeline["colours"].values())
    segments, summary = timeline["segments"], timeline["summary"]
    assert segments, summary
    for i, segment in enumerate(segments):
        assert set(segment) == SEGMENT_KEYS and segment["index"] == i
        assert 0.0 <= segment["start_s"] < segment["end_s"] <= duration_s + 1e-3
        assert list(segment["probabilities"]) == list(labels)
        assert sum(segment["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert segment["label"] == max(segment["probabilities"], key=segment["probabilities"].get)
        assert segment["windows"] >= 1
    starts = [s["start_s"] for s in segments]
    assert starts == sorted(starts)
    assert summary["segment_count"] == len(segments)
    assert summary["dominant"] in labels
    assert summary["duration_s"] == pytest.approx(duration_s, abs=1e-3)
    emotions = summary["emotions"]
    assert list(emotions) == list(labels)
    assert sum(e["seconds"] for e in emotions.values()) == pytest.approx(summary["speech_s"], abs=0.01)
    assert sum(e["share"] for e in emotions.values()) == pytest.approx(1.0, abs=1e-3)
    assert summary["dominant"] == max(emotions, key=lambda label: emotions[label]["seconds"])
    assert list(summary["mean_probabilities"]) == list(labels)
    for skipped in summary["dropped"]:
        assert set(skipped) == {"start_s", "end_s", "reason"} and skipped["reason"]
    for merge in summary["merged"]:
        assert {"start_s", "end_s", "merged_with"} <= set(merge)
    assert not {"audio", "model", "files", "timings_s"} & set(summary)  # no server paths


def test_timeline_of_a_long_recording(speech_model, long_speech, private_tmp):
    path, sentences = long_speech
    app = create_app(speech_model, None, Limits(max_duration_s=60.0), asr_name="none").test_client()
    description = app.get("/api/model").get_json()["timeline"]
    assert description == {
        "available": True, "reason": None, "long_audio_s": 6.0,
        "segment_modes": ["asr", "vad", "fixed"], "default_segment": "vad",
    }
    duration = soundfile.info(path).duration
    reply = post_timeline(app, path.read_bytes(), segment="vad")
    assert reply.status_code == 200, reply.get_json()
    result = reply.get_json()
    assert set(result) >= {"audio", "labels", "colours", "segments", "summary", "timings_ms"}
    assert result["audio"] == {"format": "WAV", "duration_s": pytest.approx(duration, abs=1e-3)}
    check_timeline(result, TINY_LABELS, duration)
    segments = result["segments"]
    # one segment per sentence: each spoken sentence is one speech region between pauses
    assert sentences - 2 <= len(segments) <= sentences + 2, [(s["start_s"], s["end_s"]) for s in segments]
    assert all(s["transcript"] is None for s in segments)  # no speech recognition on this server
    assert result["summary"]["segmentation"]["mode"] == "vad" and result["summary"]["segmentation"]["asr"] == "none"
    timings = result["timings_ms"]
    assert timings["vad"] > 0 and timings["model"] > 0 and timings["asr"] is None
    assert timings["total"] >= timings["vad"] + timings["model"]
    # each segment is scored on its own audio, as the Recognizer scores that stretch
    samples, rate = soundfile.read(path, dtype="float32")
    first = segments[0]
    alone = speech_model.recognizer.predict(
        audio=samples[int(round(first["start_s"] * rate)) : int(round(first["end_s"] * rate))], sample_rate=rate
    )
    assert first["probabilities"] == pytest.approx(alone.probabilities, abs=1e-3)

    # fixed windows of the model's clip length (6 s) cover the whole recording
    fixed = post_timeline(app, path.read_bytes(), segment="fixed").get_json()
    check_timeline(fixed, TINY_LABELS, duration)
    assert fixed["segments"][0]["start_s"] == 0.0 and fixed["segments"][-1]["end_s"] == pytest.approx(duration, abs=1e-3)
    assert all(s["end_s"] - s["start_s"] <= 6.0 + 1e-3 for s in fixed["segments"])


def test_predict_answers_a_long_recording_with_its_timeline(speech_model, long_speech):
    path, _ = long_speech
    app = create_app(speech_model, None, Limits(max_duration_s=60.0), asr_name="none").test_client()
    reply = post(app, path.read_bytes(), segment="vad")
    assert reply.status_code == 200, reply.get_json()
    result = reply.get_json()
    timeline = result["timeline"]
    check_timeline(timeline, TINY_LABELS, soundfile.info(path).duration)
    # the single-utterance fields stay, from the summary: a client reading `label` still gets one
    summary = timeline["summary"]
    assert result["label"] == summary["dominant"]
    assert result["probabilities"] == summary["mean_probabilities"]
    assert result["transcript"] is None and result["transcript_source"] is None
    assert "cut into" in result["notes"][0] and "dominant emotion" in result["notes"][0]
    assert result["timings_ms"]["vad"] > 0

    # with a transcript it is one utterance, as before: the model hears its first 6 s
    reply = post(app, path.read_bytes(), "hello there")
    result = reply.get_json()
    assert reply.status_code == 200 and "timeline" not in result
    assert "first 6 s" in result["notes"][0]
    assert any("/api/timeline" in note for note in result["notes"])

    # a clip the model hears whole is one utterance (the short-clip answer, unchanged)
    result = post(app, wav_bytes(tone(2.0))).get_json()
    assert "timeline" not in result and result["label"] in TINY_LABELS and result["audio"]["duration_s"] == 2.2


def test_long_audio_threshold_is_configurable(speech_model, long_speech):
    path, _ = long_speech
    app = create_app(speech_model, None, Limits(max_duration_s=60.0, long_audio_s=50.0), asr_name="none").test_client()
    assert app.get("/api/model").get_json()["timeline"]["long_audio_s"] == 50.0
    result = post(app, path.read_bytes()).get_json()
    assert "timeline" not in result and "first 6 s" in result["notes"][0]


class _GatedTimelines:
    """A model client whose timelines wait for `gate`; its first one then fails."""

    def __init__(self, model):
        self.model, self.info, self.source = model, model.info, "gated"
        self.entered, self.gate, self.calls = threading.Event(), threading.Event(), 0

    def predict(self, audio_wav, text):
        return self.model.predict(audio_wav, text)

    def timeline(self, samples, sample_rate, **options):
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            assert self.gate.wait(60)
            raise ModelFailed("the model failed: on purpose")
        return self.model.timeline(samples, sample_rate, **options)

    def health(self):
        return {"model": "ok"}


def test_one_timeline_more_than_max_timelines_is_a_503_and_clips_are_still_answered(speech_model, long_speech):
    path, _ = long_speech
    recording = path.read_bytes()
    model = _GatedTimelines(speech_model)
    app = create_app(model, None, Limits(max_duration_s=60.0, max_timelines=1), asr_name="none")
    assert app.test_client().get("/api/model").get_json()["limits"]["max_timelines"] == 1
    first = {}
    worker = threading.Thread(
        target=lambda: first.update(reply=post_timeline(app.test_client(), recording, segment="fixed"))
    )
    worker.start()
    try:
        assert model.entered.wait(60)
        for busy in (post_timeline(app.test_client(), recording, segment="fixed"),
                     post(app.test_client(), recording, segment="fixed")):  # /api/predict's timeline too
            assert_json_error(busy, 503, "already cutting 1 long recording")
            assert busy.headers["Retry-After"] == "30"
        clip = post(app.test_client(), wav_bytes(tone(2.0)))  # a short clip is answered meanwhile
        assert clip.status_code == 200, clip.get_json()
    finally:
        model.gate.set()
        worker.join(60)
    assert_json_error(first["reply"], 502, "on purpose")
    # the slot is free again, after a failure too
    again = post_timeline(app.test_client(), recording, segment="fixed")
    assert again.status_code == 200, again.get_json()


def test_timeline_bad_input_is_a_4xx_json_error(speech_model, client, long_speech, private_tmp):
    path, _ = long_speech
    data = path.read_bytes()
    short = create_app(speech_model, None, Limits(max_duration_s=20.0), asr_name="none").test_client()
    assert_json_error(post_timeline(short, data), 413, "s long (0:", "at most 20 s (0:20)", "--max-duration-s")
    small = create_app(speech_model, None, Limits(max_upload_bytes=2**19, max_duration_s=60.0)).test_client()
    assert_json_error(post_timeline(small, data), 413, "larger than this server's limit of 0.5 MB", "--max-upload-mb")
    app = create_app(speech_model, None, Limits(max_duration_s=60.0), asr_name="none").test_client()
    for case in ("empty file", "undecodable bytes", "truncated WAV", "silent audio", "NaN float WAV"):
        make, status, phrases = BAD_AUDIO[case]
        assert_json_error(post_timeline(app, make()), status, *phrases)
    assert_json_error(post_timeline(app, wav_bytes(tone())[:200]), 400, "cut short")
    assert_json_error(post_timeline(app, wav_bytes(synth_tone(0.03))), 400, "too short", "at least")
    clip = wav_bytes(tone())
    assert_json_error(post_timeline(app, clip, segment="sentences"), 400, "field 'segment' must be asr, vad or fixed")
    assert_json_error(post(app, clip, segment="windows"), 400, "field 'segment' must be asr, vad or fixed")
    assert_json_error(post_timeline(app, clip, segment="asr"), 400, "segment=asr", "--asr none", "segment=vad")
    assert_json_error(post_timeline(app, clip, text="hello"), 400, "unknown field(s) 'text'", "/api/predict")
    assert_json_error(post_timeline(app, None, segment="vad"), 400, "no audio", "field 'audio'")
    assert_json_error(app.post("/api/timeline", json={"audio": "x"}), 400, "send multipart/form-data")
    assert_json_error(app.get("/api/timeline"), 405, "GET is not allowed on /api/timeline")
    # a model that reads text cannot be run over time without speech recognition
    assert client.get("/api/model").get_json()["timeline"]["available"] is False
    assert_json_error(post_timeline(client, clip), 400, "needs the words of every segment", "--asr")
    assert post_timeline(app, data, segment="vad").status_code == 200  # still serving


def test_timeline_through_tf_serving_in_batches(speech_export, speech_model, long_speech):
    path, _ = long_speech
    server = FakeTFServing(speech_export)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        serving = ServingClient(server.url, speech_export)
        app = create_app(serving, None, Limits(max_duration_s=60.0), asr_name="none").test_client()
        reply = post_timeline(app, path.read_bytes(), segment="vad")
        assert reply.status_code == 200, reply.get_json()
        result = reply.get_json()
        local = post_timeline(
            create_app(speech_model, None, Limits(max_duration_s=60.0)).test_client(), path.read_bytes(), segment="vad"
        ).get_json()
        assert [(s["start_s"], s["end_s"], s["label"]) for s in result["segments"]] == [
            (s["start_s"], s["end_s"], s["label"]) for s in local["segments"]
        ]
        for remote, here in zip(result["segments"], local["segments"]):
            assert remote["probabilities"] == pytest.approx(here["probabilities"], abs=1e-5)
        windows = sum(s["windows"] for s in result["segments"])
        assert [len(request) for request in server.requests] == [windows]  # one request for all (<= 32)

        # per-item errors: a silent window is refused here, the others still go out in one request
        server.requests.clear()
        results = serving.recognizer.predict_batch(
            [{"audio": tone(), "sample_rate": 16000}, {"audio": np.zeros(16000, np.float32), "sample_rate": 16000},
             {"audio": tone(1.5), "sample_rate": 16000}],
            batch_size=2,
        )
        assert [r.ok for r in results] == [True, False, True] and "silent" in results[1].error
        assert [len(request) for request in server.requests] == [2]
    finally:
        server.shutdown()
        server.server_close()
    closed = ServingClient(f"http://127.0.0.1:{free_port()}/v1/models/bimer", speech_export)
    app = create_app(closed, None, Limits(max_duration_s=60.0)).test_client()
    assert_json_error(post_timeline(app, path.read_bytes(), segment="vad"), 503, "cannot reach TF Serving")


def test_timeline_with_speech_recognition(model, recognizer, long_speech):
    """The bimodal model over time: Whisper's sentences, each with its words."""
    path, sentences = long_speech
    app = create_app(model, recognizer, Limits(), asr_name="whisper-tiny-offline").test_client()
    reply = post(app, path.read_bytes())  # no text, longer than the 1 s the tiny model hears: the timeline
    assert reply.status_code == 200, reply.get_json()
    result = reply.get_json()
    timeline = result["timeline"]
    check_timeline(timeline, TINY_LABELS, soundfile.info(path).duration)
    assert timeline["summary"]["segmentation"]["mode"] == "asr"
    assert result["transcript_source"] == "asr" and result["timings_ms"]["asr"] > 0
    spoken = [s for s in timeline["segments"] if s["transcript"]]
    assert len(spoken) == len(timeline["segments"]) >= sentences - 3
    assert words(result["transcript"]).count("door") + words(result["transcript"]).count("day") >= 2
