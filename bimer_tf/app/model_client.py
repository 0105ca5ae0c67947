"""The exported model, in this process or behind a TensorFlow Serving endpoint.

Both clients take the same request (`audio_wav`: 16-bit PCM WAV bytes at the
model's rate, `text`: a str, each None when the model does not take it) and
give back the same `Prediction` (`bimer_tf.inference.Prediction`: label,
probabilities, notes, duration). Both also draw a long recording's emotion
timeline (`timeline`), through the library's `emotion_timeline`.

- `SavedModelClient` is a thin layer over one `bimer_tf.Recognizer`: the
  checks, the conversion, the batching and the error messages are the
  Recognizer's. The app only turns TensorFlow's own failures into HTTP 502.
- `ServingClient` sends requests to TF Serving's REST API; each input is
  checked and converted here first, as the Recognizer does it
  (`prepare_input`), so both clients reject bad input with the same words.
  A timeline's windows go to TF Serving `batch_size` instances per request
  (`ServingRecognizer`).

The version folder (`--saved-model`) always says what the model is: its
labels, its inputs and its audio limits (`assets.extra/bimer_tf.json` and
the signature in `saved_model.pb`); with `--serving-url` no graph is loaded
here.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from bimer_tf.errors import InputError
from bimer_tf.inference.recognizer import (
    DEFAULT_BATCH_SIZE,
    BatchResult,
    Prediction,
    PreparedInput,
    Recognizer,
    prepare_input,
)
from bimer_tf.serving.export_dir import AUDIO_INPUT, TEXT_INPUT, ExportInfo, read_export_info

__all__ = [
    "ModelFailed",
    "ModelUnavailable",
    "Prediction",
    "SavedModelClient",
    "ServingClient",
    "ServingRecognizer",
    "make_model_client",
]


class ModelUnavailable(Exception):
    """The model server cannot be reached (HTTP 503)."""


class ModelFailed(Exception):
    """The model or the model server failed (HTTP 502). `status`: TF Serving's HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def _prediction(info: ExportInfo, label: str, probabilities, prepared: PreparedInput | None = None) -> Prediction:
    probabilities = [float(p) for p in probabilities]
    if len(probabilities) != len(info.labels):
        raise ModelFailed(
            f"the model returned {len(probabilities)} probabilities for {len(info.labels)} labels; "
            f"--saved-model must name the version the server runs"
        )
    return Prediction(
        label,
        {name: round(p, 6) for name, p in zip(info.labels, probabilities)},
        prepared.notes if prepared is not None else (),
        prepared.duration_s if prepared is not None else None,
    )


class SavedModelClient:
    """Runs the SavedModel in this process through one `Recognizer` (thread-safe: one graph, many callers)."""

    def __init__(self, model_dir: str | Path, recognizer: Recognizer | None = None):
        self.recognizer = recognizer or Recognizer.from_saved_model(model_dir)
        self.info = self.recognizer.info  # the graph's own inputs, not only the metadata's
        self.source = f"SavedModel {model_dir}"

    def predict(self, audio_wav: bytes | None, text: str | None) -> Prediction:
        """One utterance; InputError (HTTP 400) when the Recognizer or the graph rejects it."""
        import tensorflow as tf

        from bimer_tf.errors import op_error_message

        try:
            return self.recognizer.predict(audio=audio_wav, text=text)
        except tf.errors.OpError as error:  # not about the input: out of memory, a broken graph
            raise ModelFailed(f"the model failed: {op_error_message(error)}") from None

    def timeline(self, samples, sample_rate: int, **options):
        """`emotion_timeline` of decoded samples (`options`: `segment`, `asr`, ...)."""
        import tensorflow as tf

        from bimer_tf.errors import op_error_message
        from bimer_tf.inference.timeline import emotion_timeline

        try:
            return emotion_timeline(self.recognizer, samples, sample_rate=sample_rate, **options)
        except tf.errors.OpError as error:
            raise ModelFailed(f"the model failed: {op_error_message(error)}") from None

    def health(self) -> dict:
        return {"model": "ok", "model_source": self.source}


class ServingClient:
    """Sends each request to a TensorFlow Serving REST endpoint.

    `url` is the model's REST address, `http://HOST:8501/v1/models/NAME`
    (TF Serving's documented API: `POST <url>:predict` with
    `{"instances": [{"audio_wav": {"b64": ...}, "text": ...}, ...]}`, and
    `GET <url>` for the version status).
    """

    def __init__(self, url: str, model_dir: str | Path, timeout_s: float = 30.0):
        url = url.rstrip("/")
        if url.endswith(":predict"):
            url = url[: -len(":predict")]
        if not url.startswith(("http://", "https://")) or "/v1/models/" not in url:
            raise InputError(
                f"--serving-url {url} is not a TF Serving model address; "
                "pass e.g. http://127.0.0.1:8501/v1/models/bimer"
            )
        self.url = url
        self.timeout_s = timeout_s
        self.info = read_export_info(model_dir)
        self.source = f"TF Serving {url}"
        self.recognizer = ServingRecognizer(self)
        # Straight to the server: an http_proxy meant for the internet must not relay it.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, method: str, url: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                return json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as error:
            try:
                message = json.loads(error.read().decode("utf-8")).get("error", "")
            except (ValueError, AttributeError, OSError):
                message = ""
            raise ModelFailed(
                f"TF Serving at {self.url} answered HTTP {error.code}" + (f": {message}" if message else ""),
                status=error.code,
            ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ModelUnavailable(
                f"cannot reach TF Serving at {self.url} ({reason}); start it, or check --serving-url"
            ) from None
        except ValueError:
            raise ModelFailed(f"TF Serving at {self.url} sent a reply that is not JSON") from None

    def _instance(self, prepared: PreparedInput) -> dict:
        instance = {}
        if self.info.takes_audio:
            instance[AUDIO_INPUT] = {"b64": base64.b64encode(prepared.audio_wav).decode("ascii")}
        if self.info.takes_text:
            instance[TEXT_INPUT] = prepared.text
        return instance

    def predict_prepared(self, prepared: list[PreparedInput]) -> list[Prediction]:
        """One `:predict` request for all of `prepared`; a Prediction each, in order."""
        reply = self._call("POST", f"{self.url}:predict", {"instances": [self._instance(p) for p in prepared]})
        try:
            predictions = reply["predictions"]
            if len(predictions) != len(prepared):
                raise ValueError
            return [
                _prediction(self.info, row["label"], row["probabilities"], item)
                for row, item in zip(predictions, prepared)
            ]
        except (KeyError, IndexError, TypeError, ValueError):
            raise ModelFailed(
                f"TF Serving at {self.url} replied without predictions[i].label/probabilities for each "
                "instance; is it serving a bimer_tf export?"
            ) from None

    def predict(self, audio_wav: bytes | None, text: str | None) -> Prediction:
        return self.predict_prepared([prepare_input(self.info, audio_wav, text, name="the audio")])[0]

    def timeline(self, samples, sample_rate: int, **options):
        """`emotion_timeline` of decoded samples, its windows scored by TF Serving in batches."""
        from bimer_tf.inference.timeline import emotion_timeline

        return emotion_timeline(self.recognizer, samples, sample_rate=sample_rate, **options)

    def health(self) -> dict:
        start = time.perf_counter()
        status = self._call("GET", self.url)
        versions = status.get("model_version_status") or []
        available = [v.get("version") for v in versions if v.get("state") == "AVAILABLE"]
        if not available:
            raise ModelUnavailable(f"TF Serving at {self.url} has no AVAILABLE version yet: {versions}")
        return {
            "model": "ok",
            "model_source": self.source,
            "serving_versions": available,
            "serving_ms": round(1000 * (time.perf_counter() - start), 1),
        }


class ServingRecognizer:
    """What the timeline asks of a `Recognizer` (`info`, `labels`, `iter_predict`), served by TF Serving.

    Each item is checked and converted here as the Recognizer does it
    (`prepare_input`: decoding, resampling, the silence and length checks);
    every `batch_size` good items are one `:predict` request. An item TF
    Serving rejects (HTTP 400, the graph's own input checks) is found by
    sending that batch's items one at a time, and becomes that item's
    error; any other failure (unreachable, another model) stops the whole
    timeline with ModelUnavailable or ModelFailed.
    """

    def __init__(self, client: ServingClient):
        self.client = client
        self.info = client.info

    @property
    def labels(self) -> tuple[str, ...]:
        return self.info.labels

    @property
    def sample_rate(self) -> int:
        return self.info.sample_rate

    def _prepare(self, index: int, item):
        if isinstance(item, Mapping):
            audio, text, rate = item.get("audio"), item.get("text"), item.get("sample_rate")
        else:
            audio, text, rate = item, None, None
        try:
            return prepare_input(self.info, audio, text, sample_rate=rate, name=f"item {index}")
        except InputError as error:
            return str(error)

    def _send(self, batch: list) -> Iterator[BatchResult]:
        ready = [(index, item) for index, item in batch if isinstance(item, PreparedInput)]
        outcomes = {}
        if ready:
            try:
                predictions = self.client.predict_prepared([item for _, item in ready])
                outcomes = {index: p for (index, _), p in zip(ready, predictions)}
            except ModelFailed as error:
                if error.status != 400:
                    raise
                for index, item in ready:  # one rejected instance fails the request: find it
                    try:
                        outcomes[index] = self.client.predict_prepared([item])[0]
                    except ModelFailed as alone:
                        if alone.status != 400:
                            raise
                        outcomes[index] = f"the model rejected the input: {alone}"
        for index, item in batch:
            outcome = item if not isinstance(item, PreparedInput) else outcomes[index]
            if isinstance(outcome, str):
                yield BatchResult(index, None, outcome)
            else:
                yield BatchResult(index, outcome)

    def iter_predict(self, items: Iterable, batch_size: int = DEFAULT_BATCH_SIZE, **_) -> Iterator[BatchResult]:
        """A BatchResult per item, in input order; `batch_size` items per TF Serving request."""
        if int(batch_size) < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        batch, ready = [], 0
        for index, item in enumerate(items):
            prepared = self._prepare(index, item)
            batch.append((index, prepared))
            ready += isinstance(prepared, PreparedInput)
            if ready == int(batch_size):
                yield from self._send(batch)
                batch, ready = [], 0
        yield from self._send(batch)

    def predict_batch(self, items: Iterable, batch_size: int = DEFAULT_BATCH_SIZE, **_) -> list[BatchResult]:
        return list(self.iter_predict(items, batch_size))


def make_model_client(model_dir: str | Path, serving_url: str | None = None):
    """The in-process client, or the TF Serving client when `serving_url` is given."""
    if serving_url:
        return ServingClient(serving_url, model_dir)
    return SavedModelClient(model_dir)
