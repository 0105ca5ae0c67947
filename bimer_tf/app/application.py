"""The Flask application: the page and its JSON API.

One request flows one way: checks -> conversion -> speech recognition (when
no transcript came with the audio) -> the exported model (in this process or
TF Serving) -> JSON. A recording longer than the model hears at once (a
long recording: over `Limits.long_audio_s`, by default the export's
`max_duration_s`) sent without a transcript goes through the emotion
timeline instead (`long_audio.py`): segments, each with its transcript,
label and probabilities, and a summary. Bad input of any kind is a 4xx JSON
`{"error": ...}` whose message names the problem and the remedy; the server
keeps serving. At most `Limits.max_timelines` long recordings are cut and
scored at once; one more is a 503 with `Retry-After`, while short clips are
still answered.

    GET  /              the page (plain HTML/CSS/JS, works offline)
    GET  /api/health    {"status": "ok", ...} or 503
    GET  /api/model     labels, kind (bimodal/speech/text), inputs, limits, ASR, timeline settings
    POST /api/predict   multipart: `audio` (file), `text` (optional; skips ASR), `segment` (optional);
                        a long recording without `text` answers with its timeline too
    POST /api/timeline  multipart: `audio` (file), `segment` (optional: asr, vad or fixed)
"""

from __future__ import annotations

import logging
import threading
import time

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from bimer_tf.app.long_audio import (
    SEGMENT_FIELD,
    check_segment,
    default_segment,
    joined_transcript,
    timeline_json,
    timeline_options,
    timeline_unavailable,
)
from bimer_tf.app.model_client import ModelFailed, ModelUnavailable
from bimer_tf.app.uploads import Limits, TooLong, prepare_audio, prepare_text
from bimer_tf.errors import InputError
from bimer_tf.inference.recognizer import min_audio_samples
from bimer_tf.inference.timeline import SEGMENT_MODES

logger = logging.getLogger("bimer_tf.app")

FIELDS = ("audio", "text", SEGMENT_FIELD)
TIMELINE_FIELDS = ("audio", SEGMENT_FIELD)
ENDPOINTS = "/api/predict, /api/timeline, /api/model, /api/health"
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


# Seconds a client is told to wait when every timeline slot is taken.
RETRY_AFTER_S = 30


class ServerBusy(Exception):
    """Every slot for long recordings (`Limits.max_timelines`) is taken."""


def _error(status: int, message: str):
    response = jsonify({"error": message})
    response.status_code = status
    return response


def _ms(seconds: float) -> float:
    return round(1000.0 * seconds, 1)


def _check_multipart(allowed: tuple[str, ...], optional: str, unknown_hint: str) -> None:
    """The request is multipart/form-data with only `allowed` fields, `audio` a file, the rest text.

    `optional`: the optional fields, in words; `unknown_hint`: what to send instead of an unknown field.
    """
    if not request.mimetype == "multipart/form-data":
        raise InputError(
            f"send multipart/form-data (got {request.mimetype or 'no content type'}) with the audio file "
            f"in the field 'audio' and, optionally, {optional}, e.g. curl -F audio=@clip.wav"
            + (" -F text='...'" if "text" in allowed else "")
        )
    fields = set(request.files) | set(request.form)
    unknown = sorted(fields - set(allowed))
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(repr(f) for f in unknown)}: {unknown_hint}")
    if "audio" in request.form:
        raise InputError("the field 'audio' must be a file upload (curl -F audio=@clip.wav), not text")
    for name in allowed:
        if name != "audio" and name in request.files:
            raise InputError(f"the field '{name}' must be plain text (curl -F {name}='...'), not a file")


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
    # The timeline transcribes with the server's recognizer (loaded once per process by name).
    speech_name = (asr_name if asr_name not in (None, "none") else getattr(recognizer, "source", None)) if recognizer else None
    long_audio_s = limits.long_audio_s if limits.long_audio_s is not None else info.audio.get("max_duration_s")
    min_samples = min_audio_samples(info) if info.takes_audio else 1
    timeline_slots = threading.BoundedSemaphore(limits.max_timelines)
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

    @app.errorhandler(ServerBusy)
    def _busy(error):
        logger.warning("busy: %s", error)
        response = _error(503, str(error))
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response

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
                404, f"no such page or endpoint: {request.path}; the API is {ENDPOINTS}"
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
        unavailable = timeline_unavailable(info, speech_name)
        return jsonify(
            {
                **info.as_json(),
                "source": model.source,
                "asr": asr_name if recognizer else None,
                "limits": {
                    "max_upload_mb": round(limits.max_upload_bytes / 2**20, 3),
                    "max_duration_s": limits.max_duration_s,
                    "max_text_chars": limits.max_text_chars,
                    "max_timelines": limits.max_timelines,
                },
                "timeline": {
                    "available": unavailable is None,
                    "reason": unavailable,
                    "long_audio_s": long_audio_s if info.takes_audio else None,
                    "segment_modes": list(SEGMENT_MODES),
                    "default_segment": default_segment(info),
                },
            }
        )

    def read_audio(upload, timings: dict):
        started = time.perf_counter()
        audio = prepare_audio(
            upload.read(),
            limits,
            info.audio.get("sample_rate", 16000),
            info.audio.get("silence_floor_dbfs", -60.0),
            min_samples,
        )
        timings["decode"] = _ms(time.perf_counter() - started)
        return audio

    def run_timeline(audio, segment: str | None, timings: dict, start: float) -> tuple[dict, list, dict]:
        """(the timeline's JSON, notes, timings in ms) of decoded audio."""
        options = timeline_options(info, segment, speech_name)
        if not timeline_slots.acquire(blocking=False):
            raise ServerBusy(
                f"this server is already cutting {limits.max_timelines} long recording(s), as many as it "
                f"takes at once (--max-timelines); send this one again in {RETRY_AFTER_S} s, or send clips "
                f"of up to {long_audio_s:g} s, which are answered meanwhile"
            )
        try:
            timeline = model.timeline(audio.samples, audio.sample_rate, **options)
        finally:
            timeline_slots.release()
        seconds = dict(timeline.timings)
        timings = {
            "decode": round(timings.get("decode", 0.0) + _ms(seconds.pop("decode", 0.0)), 1),
            "vad": None,
            "asr": None,
            "model": None,
            **{name: _ms(value) for name, value in seconds.items() if name != "total"},
            "total": _ms(time.perf_counter() - start),
        }
        data = timeline_json(timeline)
        notes = []
        summary = data["summary"]
        if not data["segments"]:
            reasons = sorted({d["reason"] for d in summary["dropped"]})
            notes.append(
                "no segment could be scored"
                + (f" ({'; '.join(reasons)})" if reasons else " (no speech found)")
                + ": check the recording, or try segment=fixed"
            )
        logger.info(
            "timeline of %.1f s: %d segments (%s), dominant %s, in %.0f ms",
            audio.duration_s, summary["segment_count"], options["segment"], summary["dominant"], timings["total"],
        )
        return data, notes, timings

    @app.post("/api/timeline")
    def timeline_route():
        start = time.perf_counter()
        _check_multipart(
            TIMELINE_FIELDS,
            "how to cut it in the field 'segment' (asr, vad or fixed)",
            "send the recording in the field 'audio' and, optionally, 'segment' (asr, vad or fixed); the "
            "timeline transcribes each segment itself (for one clip with its transcript, use /api/predict)",
        )
        segment = check_segment(request.form.get(SEGMENT_FIELD))
        upload = request.files.get("audio")
        if upload is None:
            raise InputError("no audio: send the recording in the multipart field 'audio', e.g. curl -F audio=@call.mp3")
        unavailable = timeline_unavailable(info, speech_name)
        if unavailable:
            raise InputError(unavailable)
        timings = {}
        audio = read_audio(upload, timings)
        data, notes, timings = run_timeline(audio, segment, timings, start)
        reply = {"audio": audio.as_json(), **data, "timings_ms": timings}
        if notes:
            reply["notes"] = notes
        return jsonify(reply)

    @app.post("/api/predict")
    def predict():
        start = time.perf_counter()
        _check_multipart(
            FIELDS,
            "the transcript in the field 'text'",
            "send the audio file in the field 'audio' and the transcript in the field 'text'",
        )
        text = prepare_text(request.form.get("text"), limits)
        segment = check_segment(request.form.get(SEGMENT_FIELD))
        upload = request.files.get("audio")
        audio, notes, timings = None, [], {}
        if upload is not None:
            audio = read_audio(upload, timings)

        is_long = (
            audio is not None and info.takes_audio and long_audio_s is not None and audio.duration_s > long_audio_s
        )
        if is_long and text is None and timeline_unavailable(info, speech_name) is None:
            return jsonify(long_recording_reply(audio, segment, timings, start))

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
        asr_empty = transcript_source == "asr" and not transcript
        # the model's own notes: the part of long audio it heard, an empty transcript
        notes = [n for n in prediction.notes if not (asr_empty and "transcript is empty" in n)] + notes
        if is_long and timeline_unavailable(info, speech_name) is None:
            notes.append(
                "a transcript came with this long recording, so it was judged as one utterance; for its "
                "emotions over time send it without 'text' (or to /api/timeline)"
            )
        timings["total"] = _ms(time.perf_counter() - start)
        reply = {
            "transcript": transcript,
            "transcript_source": transcript_source,
            "label": prediction.label,
            "probabilities": {name: round(float(p), 6) for name, p in prediction.probabilities.items()},
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

    def long_recording_reply(audio, segment, timings, start) -> dict:
        """/api/predict on a long recording: the timeline, and its dominant emotion as the label."""
        data, notes, timings = run_timeline(audio, segment, timings, start)
        summary = data["summary"]
        mode = summary["segmentation"]["mode"]
        notes.insert(
            0,
            f"the recording is {audio.duration_s:.1f} s long, longer than the {long_audio_s:g} s the model hears "
            f"at once: it was cut into {summary['segment_count']} segments (segment={mode}) and each was scored; "
            "label is the dominant emotion (the most seconds of speech), probabilities the mean over the "
            "speech weighted by duration, and timeline has every segment",
        )
        return {
            "transcript": joined_transcript(data["segments"]),
            "transcript_source": "asr" if summary["segmentation"]["asr"] != "none" else None,
            "label": summary["dominant"],
            "probabilities": summary["mean_probabilities"],
            "timings_ms": timings,
            "audio": audio.as_json(),
            "notes": notes,
            "timeline": data,
        }

    return app


def _asr_samples(audio):
    """The audio at Whisper's 16 kHz."""
    from bimer_tf.audio.asr import SAMPLE_RATE

    if audio.sample_rate == SAMPLE_RATE:
        return audio.samples
    import soxr

    return soxr.resample(audio.samples, audio.sample_rate, SAMPLE_RATE, quality="HQ")
