"""The exported model, in this process or behind a TensorFlow Serving endpoint.

Both clients take the same request (`audio_wav`: 16 kHz mono PCM16 WAV bytes,
`text`: a str, each None when the model does not take it) and give back the
same `Prediction`. The version folder (`--saved-model`) always says what the model
is: its labels, its inputs and its audio limits (`assets.extra/bimer_tf.json`
and the signature in `saved_model.pb`); with `--serving-url` no graph is
loaded here.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bimer_tf.errors import InputError
from bimer_tf.serving.export_dir import (
    AUDIO_INPUT,
    TEXT_INPUT,
    ExportInfo,
    function_input_names,
    load_saved_model,
    read_export_info,
)


class ModelUnavailable(Exception):
    """The model server cannot be reached (HTTP 503)."""


class ModelFailed(Exception):
    """The model server answered with an error (HTTP 502)."""


@dataclass(frozen=True)
class Prediction:
    label: str
    probabilities: dict  # label -> probability, in the model's label order


def _prediction(info: ExportInfo, label: str, probabilities) -> Prediction:
    probabilities = [float(p) for p in probabilities]
    if len(probabilities) != len(info.labels):
        raise ModelFailed(
            f"the model returned {len(probabilities)} probabilities for {len(info.labels)} labels; "
            f"--saved-model must name the version the server runs"
        )
    return Prediction(label, {name: round(p, 6) for name, p in zip(info.labels, probabilities)})


class SavedModelClient:
    """Runs the SavedModel in this process (thread-safe: one graph, many callers)."""

    def __init__(self, model_dir: str | Path):
        self.info = read_export_info(model_dir)
        self.serve, _ = load_saved_model(model_dir)
        inputs = function_input_names(self.serve)
        if inputs != self.info.inputs:  # the graph, not the metadata, says what it takes
            self.info = dataclasses.replace(self.info, inputs=inputs)
        self.source = f"SavedModel {model_dir}"

    def predict(self, audio_wav: bytes | None, text: str | None) -> Prediction:
        import tensorflow as tf

        from bimer_tf.errors import op_error_message

        feeds = {}
        if self.info.takes_audio:
            feeds[AUDIO_INPUT] = tf.constant([audio_wav])
        if self.info.takes_text:
            feeds[TEXT_INPUT] = tf.constant([text.encode("utf-8")])
        try:
            result = self.serve(**feeds)
        except tf.errors.InvalidArgumentError as error:  # the graph's own input checks
            raise InputError(f"the model rejected the input: {op_error_message(error)}") from None
        except tf.errors.OpError as error:
            raise ModelFailed(f"the model failed: {op_error_message(error)}") from None
        return _prediction(
            self.info, result["label"].numpy()[0].decode("utf-8"), result["probabilities"].numpy()[0]
        )

    def health(self) -> dict:
        return {"model": "ok", "model_source": self.source}


class ServingClient:
    """Sends each request to a TensorFlow Serving REST endpoint.

    `url` is the model's REST address, `http://HOST:8501/v1/models/NAME`
    (TF Serving's documented API: `POST <url>:predict` with
    `{"instances": [{"audio_wav": {"b64": ...}, "text": ...}]}`, and
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
                f"TF Serving at {self.url} answered HTTP {error.code}"
                + (f": {message}" if message else "")
            ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ModelUnavailable(
                f"cannot reach TF Serving at {self.url} ({reason}); start it, or check --serving-url"
            ) from None
        except ValueError:
            raise ModelFailed(f"TF Serving at {self.url} sent a reply that is not JSON") from None

    def predict(self, audio_wav: bytes | None, text: str | None) -> Prediction:
        instance = {}
        if self.info.takes_audio:
            instance[AUDIO_INPUT] = {"b64": base64.b64encode(audio_wav).decode("ascii")}
        if self.info.takes_text:
            instance[TEXT_INPUT] = text
        reply = self._call("POST", f"{self.url}:predict", {"instances": [instance]})
        try:
            prediction = reply["predictions"][0]
            return _prediction(self.info, prediction["label"], prediction["probabilities"])
        except (KeyError, IndexError, TypeError):
            raise ModelFailed(
                f"TF Serving at {self.url} replied without predictions[0].label/probabilities; "
                "is it serving a bimer_tf export?"
            ) from None

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


def make_model_client(model_dir: str | Path, serving_url: str | None = None):
    """The in-process client, or the TF Serving client when `serving_url` is given."""
    if serving_url:
        return ServingClient(serving_url, model_dir)
    return SavedModelClient(model_dir)
