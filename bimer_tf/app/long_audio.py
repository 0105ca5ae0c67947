"""Long recordings in the app: the emotion timeline as JSON.

A recording longer than the model hears at once (the export's
`max_duration_s`, or `--long-audio-s`) is cut into segments and each is
scored by the library's timeline (`bimer_tf.inference.timeline`): `segment`
is `asr` (Whisper's sentences), `vad` (speech regions) or `fixed` (windows
of the model's clip length); the default is the library's (`asr` when the
model takes text, else `vad`). The server's speech recognition (`--asr`)
transcribes the segments; a model that takes text cannot be run over time
without it.

`timeline_json` is the timeline's JSON form for `/api/timeline` (and for
`/api/predict` on a long recording): the segments as the library's
`segments.jsonl` rows, its summary (without the server's paths), and each
label's chart colour (those of the library's `timeline.png`).
"""

from __future__ import annotations

from bimer_tf.audio.asr import NO_ASR
from bimer_tf.errors import InputError
from bimer_tf.inference.timeline import SEGMENT_MODES
from bimer_tf.inference.timeline.chart import label_colours
from bimer_tf.inference.timeline.outputs import segment_rows
from bimer_tf.serving.export_dir import ExportInfo

SEGMENT_FIELD = "segment"
# The summary's fields that describe the server, not the recording.
_SERVER_FIELDS = ("audio", "model", "files", "timings_s")


def default_segment(info: ExportInfo) -> str:
    """The library's default: Whisper's segments when the model reads text, else speech regions."""
    return "asr" if info.takes_text else "vad"


def timeline_unavailable(info: ExportInfo, asr_name: str | None) -> str | None:
    """Why this server cannot draw timelines with this model, or None when it can."""
    if info.takes_text and not asr_name:
        return (
            f"the emotion timeline needs the words of every segment, and this {info.kind} model reads text, "
            "but this server runs without speech recognition (--asr none): restart it with "
            "--asr whisper-tiny-offline, or send clips of at most "
            f"{info.max_duration_s:g} s to /api/predict with their transcript in the field 'text'"
        )
    return None


def timeline_options(info: ExportInfo, segment: str | None, asr_name: str | None) -> dict:
    """`emotion_timeline` options for a request's `segment` field; InputError in the API's words."""
    segment = check_segment(segment)
    reason = timeline_unavailable(info, asr_name)
    if reason:
        raise InputError(reason)
    if segment == "asr" and not asr_name:
        raise InputError(
            "segment=asr cuts at Whisper's sentences, and this server runs without speech recognition "
            "(--asr none): send segment=vad or segment=fixed"
        )
    return {"segment": segment or default_segment(info), "asr": asr_name or NO_ASR}


def check_segment(segment: str | None) -> str | None:
    """The `segment` field, checked (None when absent or blank)."""
    if segment is None or not segment.strip():
        return None
    segment = segment.strip().lower()
    if segment not in SEGMENT_MODES:
        raise InputError(
            f"the field 'segment' must be {', '.join(SEGMENT_MODES[:-1])} or {SEGMENT_MODES[-1]}, not {segment!r}: "
            "asr cuts at Whisper's sentences, vad at pauses, fixed into windows of the model's clip length"
        )
    return segment


def timeline_json(timeline) -> dict:
    """The segments, the summary and the chart colours of a `Timeline`."""
    summary = {k: v for k, v in timeline.summary().items() if k not in _SERVER_FIELDS}
    return {
        "labels": list(timeline.labels),
        "colours": label_colours(timeline.labels),
        "segments": segment_rows(timeline),
        "summary": summary,
    }


def joined_transcript(segments: list[dict]) -> str | None:
    """The segments' words in time order, one line; None when no segment has any."""
    words = [s["transcript"].strip() for s in segments if s.get("transcript") and s["transcript"].strip()]
    return " ".join(words) if words else None
