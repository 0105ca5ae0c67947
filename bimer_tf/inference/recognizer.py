"""The Python API: an exported model as one object that takes audio and text as they come.

    from bimer_tf import Recognizer

    recognizer = Recognizer.from_saved_model("export/bimer/1")
    recognizer.predict(audio="clip.mp3", text="I can't believe it")
    # Prediction(label='angry', probabilities={'neutral': 0.02, 'angry': 0.91, ...}, notes=(), duration_s=2.4)
    recognizer.predict_batch([{"audio": "a.wav", "text": "..."}, {"audio": b"RIFF...", "text": None}])
    recognizer.predict_waveforms([samples_16k, ...], texts=[...])  # -> probabilities [N, C]
    recognizer.timeline("call.wav", segment="vad")

The graph's input contract does not change (`audio_wav`: 16 kHz 16-bit PCM
WAV bytes, `text`: UTF-8): audio is decoded, averaged to mono and resampled
here, in Python (`bimer_tf.audio.wav`), and fed as PCM16 WAV bytes. A file
that already is 16-bit PCM WAV at the model's rate goes in as its own bytes.
"""

from __future__ import annotations

import dataclasses
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bimer_tf.audio.wav import ModelAudio, decode_for_model, waveform_for_model
from bimer_tf.errors import InputError
from bimer_tf.serving.export_dir import ExportInfo, function_input_names, load_saved_model, read_export_info
from bimer_tf.serving.feed import serve_each

DEFAULT_BATCH_SIZE = 32
AUDIO_FILE_TYPES = (str, Path, bytes, bytearray, memoryview)


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one utterance."""

    label: str
    probabilities: dict  # label -> probability, in the model's label order
    notes: tuple = ()  # what the caller should know: an input not used, audio longer than the model hears
    duration_s: float | None = None  # the audio's duration after decoding; None without audio

    def as_json(self, digits: int = 6) -> dict:
        result = {
            "label": self.label,
            "probabilities": {label: round(p, digits) for label, p in self.probabilities.items()},
        }
        if self.notes:
            result["notes"] = list(self.notes)
        return result


@dataclass(frozen=True)
class BatchResult:
    """One item of a batch: its prediction, or the reason it was skipped."""

    index: int  # the item's position in the input
    prediction: Prediction | None = None
    error: str | None = None  # the InputError message; None when predicted

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class PreparedInput:
    """One utterance checked and converted for the graph (see `prepare_input`)."""

    audio_wav: bytes | None  # None when the model takes no audio
    text: str | None  # None when the model takes no text
    duration_s: float | None = None
    notes: tuple = ()


def default_workers() -> int:
    """Threads that decode and resample ahead of the model: the cores, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def min_audio_samples(info: ExportInfo) -> int:
    """The shortest audio the model can hear anything in: one analysis frame of its front end."""
    return int(max(info.audio.get("trim_frame_length", 1024), info.audio.get("n_fft", 0) or 0))


def _takes(info: ExportInfo) -> str:
    return " and ".join(info.inputs)


def prepare_input(
    info: ExportInfo,
    audio=None,
    text: str | None = None,
    *,
    sample_rate: int | None = None,
    name: str | None = None,
) -> PreparedInput:
    """Checks one utterance against an export and converts it to the graph's inputs.

    Needs only the export's description (`read_export_info`), not its graph,
    so a command can reject bad input before TensorFlow loads. `audio` is a
    path, a file's bytes, or a waveform with `sample_rate`; `name` names it
    in messages. Raises InputError when an input the model takes is missing
    or unusable; an input it does not take is left out with a note.
    """
    notes = []
    if info.takes_audio and audio is None:
        raise InputError(
            f"no audio: the model {info.path} takes {_takes(info)}; pass audio= "
            "(a file path, the file's bytes, or a waveform with sample_rate=)"
        )
    if info.takes_text and text is None:
        raise InputError(f"no transcript: the model {info.path} takes {_takes(info)}; pass text= (the words spoken)")
    audio_wav = duration_s = None
    if info.takes_audio:
        decoded = _model_audio(info, audio, sample_rate, name)
        audio_wav, duration_s = decoded.wav, decoded.duration_s
        if duration_s > info.max_duration_s:
            notes.append(
                f"audio is {duration_s:.1f} s; the model used its first {info.max_duration_s:g} s after trimming silence"
            )
    elif audio is not None:
        notes.append(f"the model takes only {_takes(info)}; the audio is not used")
    if info.takes_text:
        text = _checked_text(text)
        if not text.strip():
            notes.append("the transcript is empty; the model saw no words")
    elif text is not None:
        notes.append(f"the model takes only {_takes(info)}; the text is not used")
        text = None
    return PreparedInput(audio_wav, text, duration_s, tuple(notes))


def _model_audio(info: ExportInfo, audio, sample_rate: int | None, name: str | None) -> ModelAudio:
    settings = dict(
        sample_rate=info.sample_rate,
        silence_floor_dbfs=float(info.audio.get("silence_floor_dbfs", -60.0)),
        min_samples=min_audio_samples(info),
    )
    if isinstance(audio, AUDIO_FILE_TYPES):
        if not isinstance(audio, (str, Path)):
            name = name or "the audio data"  # a path names itself
        return decode_for_model(audio, name=name, **settings)
    if isinstance(audio, (np.ndarray, list, tuple)):
        name = name or "the waveform"
        if sample_rate is None:
            raise InputError(f"{name} needs its sample rate: pass sample_rate= (e.g. {info.sample_rate})")
        return waveform_for_model(audio, sample_rate, name=name, **settings)
    raise InputError(
        f"audio must be a file path, the file's bytes or a waveform (a numpy array), not {type(audio).__name__}"
    )


def _checked_text(text) -> str:
    if isinstance(text, (bytes, bytearray)):
        try:
            return bytes(text).decode("utf-8")
        except UnicodeDecodeError as error:
            raise InputError(
                f"the transcript is not UTF-8 (invalid byte at offset {error.start}); pass it as str or UTF-8 bytes"
            ) from None
    if not isinstance(text, str):
        raise InputError(f"the transcript must be a str, not {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("the transcript holds characters that are not valid Unicode (lone surrogates)") from None
    return text


def _unpack(item) -> tuple:
    """(audio, text, sample_rate) of a batch item: a mapping, or audio alone."""
    if isinstance(item, Mapping):
        return item.get("audio"), item.get("text"), item.get("sample_rate")
    if isinstance(item, AUDIO_FILE_TYPES) or isinstance(item, np.ndarray):
        return item, None, None
    raise InputError(
        f"a batch item is a dict with 'audio' and/or 'text' (or audio alone), not {type(item).__name__}"
    )


def _item_name(index: int, audio) -> str | None:
    if isinstance(audio, (str, Path)) or audio is None:
        return None  # a path names itself
    return f"item {index} ({'audio data' if isinstance(audio, AUDIO_FILE_TYPES) else 'waveform'})"


class Recognizer:
    """An exported model (a SavedModel version folder) for Python callers.

    Create one with `Recognizer.from_saved_model(path)`: it reads the export's
    description (labels, inputs, audio settings) and loads its graph once.

    Inputs. `audio` is a path to a file in any format libsndfile or ffmpeg
    reads (WAV of any width and rate, FLAC, MP3, OGG, WebM, M4A; any channel
    count), the bytes of such a file, or a waveform (a numpy array, float in
    [-1, 1] or int16, 1-D or 2-D with channels) with `sample_rate=`. It is
    decoded, averaged to mono and resampled to the model's rate (soxr) here,
    then fed to the graph as 16-bit PCM WAV. `text` is the transcript (str).
    The model's signature says what it takes (`recognizer.info.inputs`):
    bimodal models both, speech models audio, text models text; an input
    the model does not take is not used, and the prediction says so in its
    `notes`.

    Methods.
      predict(audio, text, sample_rate=)   one utterance -> Prediction
      predict_batch(items, batch_size=)    many -> [BatchResult], in order; a bad item
                                           does not stop the others (its `error` says why)
      iter_predict(items, batch_size=)     the same as a stream, for collections of any size
      predict_waveforms(waveforms, texts)  16 kHz waveforms and/or texts -> probabilities [N, C]
      predict_prepared(prepared)           inputs from `prepare_input` -> [BatchResult]
      timeline(path, **options)            emotions over a long recording (`bimer_tf.inference.timeline`)

    Batches make one SavedModel call each; while the model runs, a thread
    pool reads, decodes and resamples the next items.

    Errors. Bad input raises `InputError` (a `ValueError`) whose message names
    the input and the remedy: missing, empty, cut short, undecodable, silent or
    too short audio, a missing transcript, and input the graph's own checks
    reject (the op's reason). Other TensorFlow errors (out of memory, say) are
    not about the input and pass through as `tf.errors.OpError`.

    Threads. A Recognizer holds no state that calls change: any number of
    threads may call it at once (TensorFlow runs concurrent calls of one
    graph safely).
    """

    def __init__(self, serve, info: ExportInfo):
        """`serve`: the loaded `serving_default` function; `info`: `read_export_info` of its folder."""
        inputs = function_input_names(serve)
        if inputs != info.inputs:  # the graph, not the metadata, says what it takes
            info = dataclasses.replace(info, inputs=inputs)
        self.info = info
        self._serve = serve

    @classmethod
    def from_saved_model(cls, path: str | Path) -> Recognizer:
        """Loads an exported version folder, e.g. export/bimer/1 (InputError when it is not one)."""
        info = read_export_info(path)
        serve, _ = load_saved_model(path)
        return cls(serve, info)

    def __repr__(self) -> str:
        return f"Recognizer({self.info.path!r}, {self.info.kind}, labels={list(self.labels)})"

    @property
    def labels(self) -> tuple[str, ...]:
        return self.info.labels

    @property
    def sample_rate(self) -> int:
        """The rate the model hears (and `predict_waveforms` expects by default)."""
        return self.info.sample_rate

    @property
    def takes_audio(self) -> bool:
        return self.info.takes_audio

    @property
    def takes_text(self) -> bool:
        return self.info.takes_text

    # --- one utterance -----------------------------------------------------

    def prepare(self, audio=None, text: str | None = None, *, sample_rate: int | None = None) -> PreparedInput:
        """Checks and converts one utterance without running the model (thread-safe)."""
        return prepare_input(self.info, audio, text, sample_rate=sample_rate)

    def predict(self, audio=None, text: str | None = None, *, sample_rate: int | None = None) -> Prediction:
        """The emotion of one utterance. `sample_rate` is needed (only) when `audio` is a waveform."""
        result = self.predict_prepared([self.prepare(audio, text, sample_rate=sample_rate)])[0]
        if result.error is not None:
            raise InputError(result.error)
        return result.prediction

    def predict_prepared(self, prepared: Sequence[PreparedInput]) -> list[BatchResult]:
        """Runs already prepared inputs in one SavedModel call (one per item only if the graph rejects one)."""
        scored = self._score([(i, item) for i, item in enumerate(prepared)])
        return [self._result(*outcome) for outcome in scored]

    # --- many utterances ---------------------------------------------------

    def predict_batch(
        self,
        items: Iterable,
        batch_size: int = DEFAULT_BATCH_SIZE,
        *,
        workers: int | None = None,
        load: Callable | None = None,
    ) -> list[BatchResult]:
        """Predicts every item; see `iter_predict`."""
        return list(self.iter_predict(items, batch_size, workers=workers, load=load))

    def iter_predict(
        self,
        items: Iterable,
        batch_size: int = DEFAULT_BATCH_SIZE,
        *,
        workers: int | None = None,
        load: Callable | None = None,
    ) -> Iterator[BatchResult]:
        """Yields a BatchResult per item, in input order, as batches finish.

        An item is a dict with `audio` and/or `text` (and `sample_rate` for a
        waveform; other keys, such as a manifest row's, are ignored) or audio
        alone. `load`, when given, turns an item into such a dict in a worker
        thread (reading a transcript file, say); an InputError or OSError it
        raises becomes that item's error. `workers` threads (default: the
        cores, at most 4) prepare up to max(2 x batch_size, 4 x workers) items
        ahead of the model; each batch of `batch_size` good items is one
        SavedModel call. `items` is read lazily, so it may be a generator.
        """
        for outcome in self._iter_scored(items, batch_size, workers, load):
            yield self._result(*outcome)

    def predict_waveforms(
        self,
        waveforms: Sequence | None = None,
        texts: Sequence[str] | None = None,
        *,
        sample_rate: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        on_error: str = "raise",
    ) -> np.ndarray:
        """Probabilities [N, C] (columns in `labels` order) for decoded waveforms and/or texts.

        `waveforms`: mono (or [samples, channels]) arrays at `sample_rate`
        (default: the model's, `self.sample_rate`); `texts`: one transcript per
        item. Give what the model takes; an input it does not take is ignored.
        One SavedModel call per batch of `batch_size`. A waveform or text the
        model cannot use (silent, too short, ...) raises InputError naming the
        item, or with `on_error="nan"` gives a row of NaN.
        """
        if on_error not in ("raise", "nan"):
            raise InputError(f"on_error must be 'raise' or 'nan', not {on_error!r}")
        count = len(waveforms) if waveforms is not None else len(texts) if texts is not None else 0
        if waveforms is not None and texts is not None and len(texts) != count:
            raise InputError(f"{count} waveforms but {len(texts)} texts; give one text per waveform")
        rate = sample_rate or self.sample_rate
        items = (
            {
                "audio": None if waveforms is None else np.asarray(waveforms[i]),
                "text": None if texts is None else texts[i],
                "sample_rate": rate,
            }
            for i in range(count)
        )
        output = np.full((count, len(self.labels)), np.nan, dtype=np.float32)
        for index, _, probabilities, error in self._iter_scored(items, batch_size, None, None):
            if error is not None:
                if on_error == "raise":
                    raise InputError(error if error.startswith(f"item {index} ") else f"item {index}: {error}")
                continue
            output[index] = probabilities
        return output

    def timeline(self, path, **options):
        """Emotions over a long recording; see `bimer_tf.inference.timeline.emotion_timeline`."""
        from bimer_tf.inference.timeline import emotion_timeline

        return emotion_timeline(self, path, **options)

    # --- the machinery -----------------------------------------------------

    def _result(self, index: int, prepared, probabilities, error) -> BatchResult:
        if error is not None:
            return BatchResult(index, None, error)
        return BatchResult(index, self._prediction(probabilities, prepared))

    def _prediction(self, probabilities: np.ndarray, prepared: PreparedInput) -> Prediction:
        labels = self.labels or tuple(str(i) for i in range(len(probabilities)))
        values = [float(p) for p in probabilities]
        return Prediction(
            labels[int(np.argmax(probabilities))], dict(zip(labels, values)), prepared.notes, prepared.duration_s
        )

    def _prepare_item(self, index: int, item, load: Callable | None):
        """(index, PreparedInput) or (index, the reason it cannot be used)."""
        try:
            if load is not None:
                item = load(item)
            audio, text, sample_rate = _unpack(item)
            return index, prepare_input(
                self.info, audio, text, sample_rate=sample_rate, name=_item_name(index, audio)
            )
        except InputError as error:
            return index, str(error)
        except OSError as error:
            where = f" {error.filename}" if getattr(error, "filename", None) else ""
            return index, f"cannot read{where}: {error.strerror or error}"

    def _iter_scored(self, items: Iterable, batch_size: int, workers: int | None, load: Callable | None):
        """Yields (index, PreparedInput | None, probabilities | None, error | None) in input order."""
        if int(batch_size) < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        batch_size = int(batch_size)
        workers = workers or default_workers()
        depth = max(2 * batch_size, 4 * workers)  # items prepared ahead of the model
        source = enumerate(items)
        pending, batch, ready = deque(), [], 0
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bimer-prepare") as pool:
            try:
                while True:
                    while len(pending) < depth:
                        entry = next(source, None)
                        if entry is None:
                            break
                        pending.append(pool.submit(self._prepare_item, *entry, load))
                    if not pending:
                        break
                    entry = pending.popleft().result()
                    batch.append(entry)
                    ready += isinstance(entry[1], PreparedInput)
                    if ready == batch_size:
                        yield from self._score(batch)
                        batch, ready = [], 0
                yield from self._score(batch)
            finally:
                for future in pending:
                    future.cancel()

    def _score(self, batch: list):
        """Runs the prepared entries of `batch` in one call; yields every entry's outcome in order."""
        ready = [(index, item) for index, item in batch if isinstance(item, PreparedInput)]
        outcomes = {}
        if ready:
            inputs = [item for _, item in ready]
            results = serve_each(
                self._serve,
                [item.audio_wav for item in inputs] if self.takes_audio else None,
                [item.text for item in inputs] if self.takes_text else None,
            )
            outcomes = {index: result for (index, _), result in zip(ready, results)}
        for index, item in batch:
            if not isinstance(item, PreparedInput):
                yield index, None, None, item
            elif isinstance(outcomes[index], InputError):
                yield index, item, None, str(outcomes[index])
            else:
                yield index, item, outcomes[index], None
