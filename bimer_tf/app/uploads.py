"""Checks and conversion of what a request carries, before any model sees it.

Audio in any format libsndfile reads (WAV of any subtype, FLAC, OGG, MP3) or
ffmpeg reads (WebM from a browser's MediaRecorder, M4A, ...) becomes 16-bit
PCM WAV bytes at the model's rate through the converter the Python API uses
(`bimer_tf.audio.wav.decode_for_model`, as `bimer_tf.Recognizer` feeds its
graph): decoded, averaged to mono and resampled, unless it already is 16-bit
PCM WAV at that rate, which goes in as its own bytes. It is decoded once per
request: the same samples feed speech recognition, the model and, for a
long recording, the timeline. Everything happens in memory, except that
ffmpeg reads its input from a file in a private temporary folder that is
removed at once; the uploaded file name is never used.

Every problem raises `InputError` (HTTP 400) or `TooLong` (HTTP 413) with a
message that names the problem and the remedy.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile

from bimer_tf.audio.wav import check_wav_complete, decode_for_model
from bimer_tf.errors import InputError

UPLOAD_NAME = "the uploaded audio"  # how messages name the audio
# 10 minutes of speech: a meeting excerpt, a call, an interview answer (the timeline's use).
MAX_DURATION_S = 600.0
# What 10 minutes take as an uncompressed WAV: 16 kHz mono 16-bit 19 MB, 44.1 kHz stereo 16-bit
# 106 MB, 48 kHz stereo 16-bit 115 MB; a phone's or recorder's compressed file (MP3, M4A, WebM/Opus)
# of 10 minutes is 5-15 MB. 128 MB takes any of them (not 48 kHz stereo 24- or 32-bit float WAV).
MAX_UPLOAD_MB = 128.0

REPLACEMENT_CHARACTER = "\ufffd"  # what the form parser makes of bytes that are not UTF-8


class TooLong(InputError):
    """Audio over the duration limit (HTTP 413, like an upload over the size limit)."""


@dataclass(frozen=True)
class Limits:
    """What one request may carry, and from what length audio is a long recording.

    `long_audio_s`: audio longer than this gets the emotion timeline from
    `/api/predict` (when no transcript is sent); None: the model's clip
    length (`max_duration_s` of the export: what it hears at once).
    `max_timelines`: long recordings cut and scored at once; one more gets
    HTTP 503 with `Retry-After` (a 10-minute timeline keeps two cores busy
    for about a minute, and short clips must still be answered meanwhile).
    """

    max_upload_bytes: int = int(MAX_UPLOAD_MB * 2**20)
    max_duration_s: float = MAX_DURATION_S
    max_text_chars: int = 2000
    long_audio_s: float | None = None
    max_timelines: int = 2


@dataclass(frozen=True)
class PreparedAudio:
    wav: bytes  # 16-bit PCM mono WAV at the model's sample rate
    samples: np.ndarray  # the same audio as float32
    sample_rate: int
    duration_s: float
    source_format: str  # what was uploaded: WAV, FLAC, OGG, MP3, WebM, MP4/M4A or "other"

    def as_json(self) -> dict:
        return {"format": self.source_format, "duration_s": round(self.duration_s, 3)}


def _sniff_format(data: bytes) -> str:
    """The container, for the reply: libsndfile's name, else from the magic bytes."""
    try:
        return soundfile.info(io.BytesIO(data)).format
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        pass
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "WebM"
    if data[4:8] == b"ftyp":
        return "MP4/M4A"
    return "other"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}"


def _too_long(duration_s: float, limits: Limits) -> TooLong:
    return TooLong(
        f"the audio is {duration_s:.1f} s long ({_clock(duration_s)}); this server takes at most "
        f"{limits.max_duration_s:g} s ({_clock(limits.max_duration_s)}): send a shorter recording or cut it "
        "into parts (or start the server with a larger --max-duration-s)"
    )


def prepare_audio(
    data: bytes,
    limits: Limits,
    sample_rate: int = 16000,
    silence_floor_dbfs: float = -60.0,
    min_samples: int = 1,
) -> PreparedAudio:
    """Uploaded bytes -> checked 16-bit PCM WAV at `sample_rate` (and its mono samples).

    InputError (HTTP 400) for empty, cut short, undecodable, NaN, silent or
    too short (`min_samples`) audio; TooLong (HTTP 413) past the duration
    limit, where the header tells, before anything is decoded.
    """
    if not data:
        raise InputError(f"{UPLOAD_NAME} is empty (0 bytes); record again or choose another file")
    check_wav_complete(data, UPLOAD_NAME)  # a WAV header promising more than the upload holds
    source_format = _sniff_format(data)
    try:  # reject long audio before decoding it, where the header says how long it is
        info = soundfile.info(io.BytesIO(data))
        if info.samplerate and info.frames / info.samplerate > limits.max_duration_s:
            raise _too_long(info.frames / info.samplerate, limits)
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        pass
    audio = decode_for_model(
        data, sample_rate, silence_floor_dbfs=silence_floor_dbfs, min_samples=min_samples, name=UPLOAD_NAME
    )
    if audio.duration_s > limits.max_duration_s:
        raise _too_long(audio.duration_s, limits)
    return PreparedAudio(audio.wav, audio.samples, sample_rate, audio.duration_s, source_format)


def prepare_text(value: str | None, limits: Limits) -> str | None:
    """The `text` field, stripped; None when absent or blank."""
    if value is None:
        return None
    if REPLACEMENT_CHARACTER in value:
        raise InputError(
            "the text field is not valid UTF-8 (it holds bytes of another encoding); "
            "send the transcript encoded as UTF-8"
        )
    text = value.strip()
    if len(text) > limits.max_text_chars:
        raise InputError(
            f"the text is {len(text)} characters long; the limit is {limits.max_text_chars}: send one utterance"
        )
    return text or None
