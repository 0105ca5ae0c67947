"""The export folder format: what `python export.py` writes and everything else reads.

    export/<model>/                  a TF Serving model base path
      <version>/                     an integer version folder
        saved_model.pb, variables/
        assets.extra/bimer_tf.json   labels, the signature's inputs, the model type, the resolved config
        assets.extra/tf_serving_warmup_requests

The signature `serving_default` takes raw inputs:

    audio_wav  string [None]  16 kHz 16-bit PCM WAV bytes   (bimer, mm_emor, ser)
    text       string [None]  UTF-8 transcript              (bimer, mm_emor, ter)

and returns `probabilities` float32 [None, C], `label` string [None] and
`label_id` int64 [None]. TF Serving ignores `assets.extra/bimer_tf.json`.

This module is the one place that knows these names and checks a folder
against them; reading an export's description needs no TensorFlow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from bimer_tf.errors import InputError

SIGNATURE = "serving_default"
AUDIO_INPUT, TEXT_INPUT = "audio_wav", "text"
METADATA_FILE = "assets.extra/bimer_tf.json"
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
# The sorted signature inputs of each kind of model.
KINDS = {
    (AUDIO_INPUT, TEXT_INPUT): "bimodal",
    (AUDIO_INPUT,): "speech",
    (TEXT_INPUT,): "text",
}


def check_version_dir(path: str | Path) -> Path:
    """`path` as a Path when it is a SavedModel version folder; InputError otherwise."""
    path = Path(path)
    if not (path / "saved_model.pb").is_file():
        raise InputError(
            f"{path} is not a SavedModel version folder (no saved_model.pb); "
            "pass e.g. export/bimer/1, written by `python export.py`"
        )
    return path


def next_version(base: str | Path) -> int:
    """The version number after the highest one under a model base path (1 for a new one)."""
    versions = [int(p.name) for p in Path(base).glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def config_inputs(config) -> list[str]:
    """The names of `serving_default`'s inputs for a config's task."""
    from bimer_tf.models import task_modalities

    needs_audio, needs_text = task_modalities(config)
    return [name for name, used in ((AUDIO_INPUT, needs_audio), (TEXT_INPUT, needs_text)) if used]


def signature_input_names(version_dir: str | Path) -> list[str]:
    """The input names of a written SavedModel's signature, read from saved_model.pb."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((check_version_dir(version_dir) / "saved_model.pb").read_bytes())
    return sorted(saved_model.meta_graphs[0].signature_def[SIGNATURE].inputs)


def function_input_names(serve) -> tuple[str, ...]:
    """The input names of a loaded serving function, e.g. ('audio_wav', 'text')."""
    return tuple(sorted(serve.structured_input_signature[1]))


def write_metadata(
    version_dir: str | Path, config, xla: bool = False, runs: list[str] | None = None, average: str | None = None
) -> Path:
    """Writes `assets.extra/bimer_tf.json` for a version exported from `config`.

    `xla` records that the graph holds an XLA-compiled function (TF Serving
    then needs `--xla_cpu_compilation_enabled=true`); `runs`, the run
    directories whose models it holds (more than one: an ensemble), and
    `average`, how their answers were made one ("probabilities", "weights"
    or "encoder"; `bimer_tf.serving.export.AVERAGES`).
    """
    from bimer_tf.config import to_dict

    path = Path(version_dir) / METADATA_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "labels": config.data.labels,
        "inputs": config_inputs(config),
        "model_type": config.model.type,
        "xla": xla,
        "runs": list(runs or []),
        "average": average,
        "config": to_dict(config),
    }
    path.write_text(json.dumps(metadata, indent=1), encoding="utf-8")
    return path


@dataclass(frozen=True)
class ExportInfo:
    """What an export is, read from its folder without loading its graph."""

    path: str
    labels: tuple[str, ...]
    inputs: tuple[str, ...]  # sorted subset of ("audio_wav", "text")
    model_type: str | None = None
    audio: dict = field(default_factory=dict)  # the export's AudioConfig fields
    config: dict = field(default_factory=dict)  # the resolved training config
    xla: bool = False  # the graph holds an XLA-compiled function
    runs: tuple[str, ...] = ()  # the run directories it was exported from (several: an ensemble)
    average: str | None = None  # several runs: "probabilities" (all run), "weights" (one averaged model), "encoder"

    @property
    def kind(self) -> str:
        return KINDS.get(self.inputs, "other")

    @property
    def takes_audio(self) -> bool:
        return AUDIO_INPUT in self.inputs

    @property
    def takes_text(self) -> bool:
        return TEXT_INPUT in self.inputs

    @property
    def sample_rate(self) -> int:
        return int(self.audio["sample_rate"])

    @property
    def max_duration_s(self) -> float:
        return float(self.audio["max_duration_s"])

    def experiment_config(self):
        """The resolved training config as an ExperimentConfig."""
        from bimer_tf.config import from_dict

        return from_dict(self.config)

    def as_json(self) -> dict:
        return {
            "labels": list(self.labels),
            "kind": self.kind,
            "inputs": list(self.inputs),
            "model_type": self.model_type,
            "sample_rate": self.audio.get("sample_rate"),
            "max_model_audio_s": self.audio.get("max_duration_s"),
            "xla": self.xla,
        }


def read_export_info(version_dir: str | Path) -> ExportInfo:
    """A version folder's labels, inputs, audio settings and config; InputError when it is not one."""
    from bimer_tf.config import AudioConfig

    version_dir = check_version_dir(version_dir)
    metadata_file = version_dir / METADATA_FILE
    if not metadata_file.is_file():
        raise InputError(
            f"{version_dir} has no {METADATA_FILE} (labels and audio settings); "
            "export the model with `python export.py`"
        )
    metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
    inputs = metadata.get("inputs")
    if inputs is None:  # exports from before the metadata listed them
        inputs = signature_input_names(version_dir)
    config = metadata.get("config") or {}
    audio = {**vars(AudioConfig()), **(config.get("audio") or {})}
    model_type = metadata.get("model_type") or (config.get("model") or {}).get("type")
    return ExportInfo(
        str(version_dir),
        tuple(metadata["labels"]),
        tuple(sorted(inputs)),
        model_type,
        audio,
        config,
        bool(metadata.get("xla", False)),
        tuple(metadata.get("runs") or ()),
        metadata.get("average"),
    )


def load_saved_model(version_dir: str | Path):
    """Loads an exported version folder; returns (serving function, labels or None)."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  registers the tokenizer ops the graph uses

    version_dir = check_version_dir(version_dir)
    loaded = tf.saved_model.load(str(version_dir))
    labels = None
    if (version_dir / METADATA_FILE).is_file():
        labels = json.loads((version_dir / METADATA_FILE).read_text(encoding="utf-8"))["labels"]
    return loaded.signatures[SIGNATURE], labels
