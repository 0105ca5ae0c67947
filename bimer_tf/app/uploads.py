"""Checks and conversion of what a request carries, before any model sees it.

Audio in any format libsndfile reads (WAV of any subtype, FLAC, OGG, MP3) or
ffmpeg reads (WebM from a browser's MediaRecorder, M4A, ...) becomes 16 kHz
mono 16-bit PCM WAV bytes through the project's converter
(`bimer_tf.audio.wav`). Everything happens in memory, except that ffmpeg reads
its input from a file in a private temporary folder that is removed at once;
the uploaded file name is never used.

Every problem raises `InputError` (HTTP 400) or `TooLong` (HTTP 413) with a
message that names the problem and the remedy.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile

from bimer_tf.audio.wav import check_wav_complete, encode_pcm16, load_audio
from bimer_tf.errors import InputError

REPLACEMENT_CHARACTER = "\ufffd"  # what the form parser makes of bytes that are not UTF-8


class TooLong(InputError):
    """Audio over the duration limit (HTTP 413, like an upload over the size limit)."""


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 20 * 1024 * 1024
    max_duration_s: float = 60.0
    max_text_chars: int = 2000


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


def _too_long(duration_s: float, limits: Limits) -> TooLong:
    return TooLong(
        f"the audio is {duration_s:.1f} s long; this server takes at most {limits.max_duration_s:g} s: "
        "send a shorter clip (or start the server with a larger --max-duration-s)"
    )


def prepare_audio(
    data: bytes, limits: Limits, sample_rate: int = 16000, silence_floor_dbfs: float = -60.0
) -> PreparedAudio:
    """Uploaded bytes -> checked 16 kHz mono PCM16 WAV (and its samples)."""
    if not data:
        raise InputError("the uploaded audio is empty (0 bytes); record again or choose another file")
    check_wav_complete(data)  # a WAV header promising more than the upload holds
    source_format = _sniff_format(data)
    try:  # reject long audio before decoding it, where the header says how long it is
        info = soundfile.info(io.BytesIO(data))
        if info.samplerate and info.frames / info.samplerate > limits.max_duration_s:
            raise _too_long(info.frames / info.samplerate, limits)
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        pass
    samples = load_audio(data, sample_rate)  # InputError: undecodable, no samples, NaN
    duration_s = len(samples) / sample_rate
    if duration_s > limits.max_duration_s:
        raise _too_long(duration_s, limits)
    peak = float(np.max(np.abs(samples)))
    peak_dbfs = 20.0 * np.log10(peak) if peak > 0 else -np.inf
    if peak_dbfs < silence_floor_dbfs:
        raise InputError(
            f"the uploaded audio is silent (peak {peak_dbfs:.1f} dBFS, below {silence_floor_dbfs:.0f} dBFS); "
            "check the microphone or the recording"
        )
    return PreparedAudio(encode_pcm16(samples, sample_rate), samples, sample_rate, duration_s, source_format)


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
