"""The Flask application: the page and its JSON API.

One request flows one way: checks -> conversion -> speech recognition (when
no transcript came with the audio) -> the exported model (in this process or
TF Serving) -> JSON. Bad input of any kind is a 4xx JSON `{"error": ...}`
whose message names the problem and the remedy; the server keeps serving.

    GET  /              the page (plain HTML/CSS/JS, works offline)
    GET  /api/health    {"status": "ok", ...} or 503
    GET  /api/model     labels, kind (bimodal/speech/text), inputs, limits, ASR
    POST /api/predict   multipart: `audio` (file), `text` (optional; skips ASR)
"""

from __future__ import annotations

import logging
import time

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from bimer_tf.app.model_client import ModelFailed, ModelUnavailable
from bimer_tf.app.uploads import Limits, TooLong, prepare_audio, prepare_text
from bimer_tf.errors import InputError

logger = logging.getLogger("bimer_tf.app")

FIELDS = ("audio", "text")
# The page loads only its own files; nothing external, nothing inline.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def _error(status: int, message: str):
    response = jsonify({"error": message})
    response.status_code = status
    return response


def _ms(seconds: float) -> float:
    return round(1000.0 * seconds, 1)


def create_app(model, recognizer=None, limits: Limits | None = None, asr_name: str | None = None) -> Flask:
    """The application over a model client (`SavedModelClient` or `ServingClient`).

    Args:
        model: a model client from `bimer_tf.app.model_client`.
        recognizer: a `bimer_tf.audio.asr.SpeechRecognizer`, or None to require typed text.
        limits: upload size, audio duration and text length limits.
        asr_name: the recognizer's name, shown by `/api/model`.
    """
    limits = limits or Limits()
    info = model.info
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = limits.max_upload_bytes
    app.json.sort_keys = False  # probabilities keep the model's label order

    @app.after_request
    def _headers(response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    # --- errors: JSON for the API, never a traceback ------------------------

    @app.errorhandler(InputError)
    def _bad_input(error):
        return _error(413 if isinstance(error, TooLong) else 400, str(error))

    @app.errorhandler(ModelUnavailable)
    def _unavailable(error):
        logger.warning("model unavailable: %s", error)
        return _error(503, str(error))

    @app.errorhandler(ModelFailed)
    def _failed(error):
        logger.warning("model failed: %s", error)
        return _error(502, str(error))

    @app.errorhandler(413)
    def _too_large(error):
        return _error(
            413,
            f"the upload is larger than this server's limit of {limits.max_upload_bytes / 2**20:g} MB; "
            "send a shorter or compressed clip (or start the server with a larger --max-upload-mb)",
        )

    @app.errorhandler(HTTPException)
    def _http(error):
        if error.code == 404:
            return _error(
                404, f"no such page or endpoint: {request.path}; the API is /api/predict, /api/model, /api/health"
            )
        if error.code == 405:
            return _error(
                405, f"{request.method} is not allowed on {request.path}; see the README's Web application section"
            )
        return _error(error.code or 500, error.description or error.name)

    @app.errorhandler(Exception)
    def _unexpected(error):
        logger.exception("unexpected error on %s %s", request.method, request.path)
        return _error(500, f"internal error ({type(error).__name__}); the server log has the details")

    # --- the page and the API ----------------------------------------------

    @app.get("/")
    def index():
        return render_template("index.html")

    @app.get("/api/health")
    def health():
        return jsonify({"status": "ok", **model.health(), "asr": asr_name if recognizer else None})

    @app.get("/api/model")
    def model_info():
        return jsonify(
            {
                **info.as_json(),
                "source": model.source,
                "asr": asr_name if recognizer else None,
                "limits": {
                    "max_upload_mb": round(limits.max_upload_bytes / 2**20, 3),
                    "max_duration_s": limits.max_duration_s,
                    "max_text_chars": limits.max_text_chars,
                },
            }
        )

    @app.post("/api/predict")
    def predict():
        start = time.perf_counter()
        if not request.mimetype == "multipart/form-data":
            raise InputError(
                f"send multipart/form-data (got {request.mimetype or 'no content type'}) with the audio file "
                "in the field 'audio' and, optionally, the transcript in the field 'text', "
                "e.g. curl -F audio=@clip.wav -F text='...'"
            )
        fields = set(request.files) | set(request.form)
        unknown = sorted(fields - set(FIELDS))
        if unknown:
            raise InputError(
                f"unknown field(s) {', '.join(repr(f) for f in unknown)}: send the audio file in the field "
                "'audio' and the transcript in the field 'text'"
            )
        if "audio" in request.form:
            raise InputError("the field 'audio' must be a file upload (curl -F audio=@clip.wav), not text")
        if "text" in request.files:
            raise InputError("the field 'text' must be plain text (curl -F text='...'), not a file")

        text = prepare_text(request.form.get("text"), limits)
        upload = request.files.get("audio")
        audio, notes, timings = None, [], {}
        if upload is not None:
            started = time.perf_counter()
            audio = prepare_audio(
                upload.read(),
                limits,
                info.audio.get("sample_rate", 16000),
                info.audio.get("silence_floor_dbfs", -60.0),
            )
            timings["decode"] = _ms(time.perf_counter() - started)

        transcript, transcript_source = text, "text" if text is not None else None
        wants_transcript = info.takes_text or info.kind == "speech"
        if transcript is None and audio is not None and recognizer is not None and wants_transcript:
            started = time.perf_counter()
            transcript = recognizer.transcribe(_asr_samples(audio)).text
            timings["asr"] = _ms(time.perf_counter() - started)
            transcript_source = "asr"
            if not transcript and info.takes_text:
                notes.append("no words were recognised; the model saw an empty transcript")

        if info.takes_audio and audio is None:
            raise InputError(
                f"no audio: this {info.kind} model needs the recording in the multipart field 'audio' "
                "(a WAV, FLAC, OGG, MP3, WebM or M4A file)"
            )
        if info.takes_text and transcript is None:
            if audio is not None and recognizer is None:
                raise InputError(
                    "no transcript: this server runs without speech recognition (--asr none), "
                    "so send the words spoken in the field 'text'"
                )
            raise InputError("no transcript: send the words in the field 'text' (or audio to transcribe)")
        if audio is not None and not info.takes_audio:
            notes.append(f"this {info.kind} model does not use audio; only the transcript was used")
        if text is not None and not info.takes_text:
            notes.append(f"this {info.kind} model does not use text; the transcript is shown only")

        started = time.perf_counter()
        prediction = model.predict(
            audio.wav if (audio is not None and info.takes_audio) else None,
            (transcript or "") if info.takes_text else None,
        )
        timings["model"] = _ms(time.perf_counter() - started)
        max_model_s = info.audio.get("max_duration_s")
        if audio is not None and info.takes_audio and max_model_s and audio.duration_s > max_model_s:
            notes.append(f"the model heard the first {max_model_s:g} s of speech (after trimming silence)")
        timings["total"] = _ms(time.perf_counter() - start)
        reply = {
            "transcript": transcript,
            "transcript_source": transcript_source,
            "label": prediction.label,
            "probabilities": prediction.probabilities,
            "timings_ms": {"decode": None, "asr": None, "model": None, **timings},
            "audio": audio.as_json() if audio is not None else None,
        }
        if notes:
            reply["notes"] = notes
        logger.info(
            "predict %s in %.0f ms (asr %s ms, model %s ms)",
            prediction.label, timings["total"], timings.get("asr"), timings["model"],
        )
        return jsonify(reply)

    return app


def _asr_samples(audio):
    """The audio at Whisper's 16 kHz."""
    from bimer_tf.audio.asr import SAMPLE_RATE

    if audio.sample_rate == SAMPLE_RATE:
        return audio.samples
    import soxr

    return soxr.resample(audio.samples, audio.sample_rate, SAMPLE_RATE, quality="HQ")
