"""SavedModel export for TensorFlow Serving, and loading it back.

The exported signature `serving_default` takes raw inputs and runs all
preprocessing in-graph (core TF ops plus the tensorflow-text tokenizer ops
that TF Serving links):

    inputs:  audio_wav  string [None]  16 kHz 16-bit PCM WAV bytes  (bimer, mm_emor, ser)
             text       string [None]  UTF-8 transcript             (bimer, mm_emor, ter)
    outputs: probabilities float32 [None, C], label string [None], label_id int64 [None]

A version folder also holds `assets.extra/bimer_tf.json` (labels, the
signature's inputs, the model type and the resolved config), which TF
Serving ignores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

METADATA_FILE = "assets.extra/bimer_tf.json"
SIGNATURE = "serving_default"


def build_export_archive(model, config):
    """An ExportArchive whose `serving_default` maps raw inputs to predictions.

    The inputs are those of the task: `audio_wav` and/or `text`.
    """
    import keras
    import tensorflow as tf

    from bimer_tf.frontend import build_speech_frontend
    from bimer_tf.models import build_text_preprocessor, task_modalities

    needs_audio, needs_text = task_modalities(config)
    frontend = build_speech_frontend(config) if needs_audio else None
    preprocessor = build_text_preprocessor(config) if needs_text else None
    labels = tf.constant(config.data.labels)

    archive = keras.export.ExportArchive()
    archive.track(model)
    if frontend is not None:
        for trackable in frontend.trackables():  # e.g. the frozen Whisper encoder layers
            archive.track(trackable)
    if preprocessor is not None:
        preprocessor(tf.constant(["build"]))  # builds the tokenizer so the archive can track it
        archive.track(preprocessor)

    def predict(audio_wav=None, text=None):
        features = {}
        if frontend is not None:
            features[frontend.input_key] = frontend.features(audio_wav)
        if preprocessor is not None:
            features.update(trim_token_padding(preprocessor(text)))
        probabilities = tf.cast(model(features, training=False), tf.float32)
        label_id = tf.argmax(probabilities, axis=-1)
        return {
            "probabilities": probabilities,
            "label": tf.gather(labels, label_id),
            "label_id": label_id,
        }

    audio_spec = tf.TensorSpec([None], tf.string, name="audio_wav")
    text_spec = tf.TensorSpec([None], tf.string, name="text")
    # One function per input set: the signature's input names are the
    # function's argument names.
    if needs_audio and needs_text:

        @tf.function(input_signature=[audio_spec, text_spec])
        def serve(audio_wav, text):
            return predict(audio_wav=audio_wav, text=text)

    elif needs_audio:

        @tf.function(input_signature=[audio_spec])
        def serve(audio_wav):
            return predict(audio_wav=audio_wav)

    else:

        @tf.function(input_signature=[text_spec])
        def serve(text):
            return predict(text=text)

    archive.add_endpoint(SIGNATURE, serve)
    return archive, serve


def trim_token_padding(tokens: dict) -> dict:
    """Cuts the packed token tensors to the batch's longest sentence.

    The tokenizer pads every sentence to `text.sequence_length`; the encoder
    masks the padding, so dropping the columns no sentence uses changes
    nothing but the time (a short request no longer pays for 48 tokens).
    """
    import tensorflow as tf

    length = tf.reduce_max(tf.reduce_sum(tf.cast(tokens["padding_mask"], tf.int32), axis=1))
    return {key: value[:, :length] for key, value in tokens.items()}


def signature_inputs(config) -> list[str]:
    """The names of `serving_default`'s inputs for a config's task."""
    from bimer_tf.models import task_modalities

    needs_audio, needs_text = task_modalities(config)
    return [name for name, used in (("audio_wav", needs_audio), ("text", needs_text)) if used]


def next_version(base: Path) -> int:
    versions = [int(p.name) for p in base.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def export_run(run_dir: str | Path, output: str | Path, version: int | None = None) -> Path:
    """Writes `output/<version>/` from a run's best checkpoint and checks it."""
    import keras

    from bimer_tf.config import from_dict, to_dict
    from bimer_tf.errors import InputError
    from bimer_tf.training import BEST_CHECKPOINT

    run_dir = Path(run_dir)
    checkpoint = run_dir / BEST_CHECKPOINT
    config_file = run_dir / "config.yaml"
    if not checkpoint.is_file() or not config_file.is_file():
        raise InputError(
            f"{run_dir} is not a finished run (needs {BEST_CHECKPOINT} and config.yaml); "
            "train one with `python train.py --model bimer`"
        )
    import yaml

    config = from_dict(yaml.safe_load(config_file.read_text(encoding="utf-8")))
    output = Path(output)
    version = version if version is not None else next_version(output)
    target = output / str(version)
    if target.exists():
        raise InputError(f"{target} already exists; pass another --version or remove it")

    import bimer_tf.models  # noqa: F401  registers the model classes for loading

    model = keras.saving.load_model(checkpoint, compile=False)
    archive, serve = build_export_archive(model, config)
    archive.write_out(str(target), verbose=False)
    from bimer_tf.serving_warmup import write_warmup_requests

    write_warmup_requests(target, config.audio.sample_rate)  # TF Serving replays them on load
    metadata = target / METADATA_FILE
    metadata.parent.mkdir(parents=True, exist_ok=True)
    inputs = signature_inputs(config)
    metadata.write_text(
        json.dumps(
            {
                "labels": config.data.labels,
                "inputs": inputs,
                "model_type": config.model.type,
                "config": to_dict(config),
            },
            indent=1,
        ),
        encoding="utf-8",
    )

    examples = {name: value for name, value in sample_inputs(config).items() if name in inputs}
    expected = serve(**examples)["probabilities"].numpy()
    actual = run_in_fresh_process(target, examples)["probabilities"]
    difference = float(np.max(np.abs(expected - actual)))
    count = len(next(iter(examples.values())))
    print(f"reloaded {target} in a fresh process: max |difference| = {difference:.2e} on {count} inputs")
    if not difference <= 1e-4:
        raise RuntimeError(f"exported model disagrees with the Keras model ({difference:.2e} > 1e-4)")
    return target


def sample_inputs(config, count: int = 4) -> dict:
    """{"audio_wav", "text"} arrays to compare the export on: held-out rows, else synthetic."""
    from bimer_tf.data.pipeline import validate_rows
    from bimer_tf.errors import InputError
    from bimer_tf.frontend import AudioFrontend
    from bimer_tf.models import task_modalities
    from bimer_tf.training import resolve_data

    needs_audio, needs_text = task_modalities(config)
    try:
        rows = [r for split in ("test", "val") for r in resolve_data(config).splits[split]]
        # Only rows training would have used: a bad file in the manifest must
        # not fail the comparison. (The WAV checks need no model weights.)
        frontend = AudioFrontend(config.audio) if needs_audio else None
        rows = validate_rows(rows[: 4 * count], config.data.labels, frontend, needs_text).kept[:count]
    except (InputError, OSError):  # the run's data may be gone; the check does not need it
        rows = []
    if rows:
        return {
            "audio_wav": np.array(
                [Path(r["audio"]).read_bytes() if needs_audio else b"" for r in rows], dtype=object
            ),
            "text": np.array([r["text"] or "" for r in rows], dtype=object),
        }
    return {
        "audio_wav": np.array([synthetic_wav(config.audio.sample_rate)], dtype=object),
        "text": np.array(["thank you"], dtype=object),
    }


def synthetic_wav(sample_rate: int, seconds: float = 1.5) -> bytes:
    import io

    import soundfile

    t = np.arange(int(seconds * sample_rate)) / sample_rate
    samples = 0.3 * np.sin(2 * np.pi * 180 * t) * np.hanning(t.size)
    buffer = io.BytesIO()
    soundfile.write(buffer, samples.astype(np.float32), sample_rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def run_in_fresh_process(saved_model: Path, examples: dict) -> dict:
    """Runs the SavedModel on {input name: array} in a new Python process, as a server would."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        inputs, outputs = Path(tmp) / "inputs.npz", Path(tmp) / "outputs.npz"
        np.savez(inputs, **examples)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        command = [sys.executable, "-m", "bimer_tf.serving", str(saved_model), str(inputs), str(outputs)]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"reloading {saved_model} failed:\n{done.stderr[-3000:]}")
        with np.load(outputs, allow_pickle=True) as result:
            return {key: result[key] for key in result.files}


def load_saved_model(path: str | Path):
    """Loads an exported version folder; returns (serving function, labels)."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  registers the tokenizer ops the graph uses

    from bimer_tf.errors import InputError

    path = Path(path)
    if not (path / "saved_model.pb").is_file():
        raise InputError(
            f"{path} is not a SavedModel version folder (no saved_model.pb); "
            "pass e.g. export/bimer/1, written by `python export.py`"
        )
    loaded = tf.saved_model.load(str(path))
    labels = None
    if (path / METADATA_FILE).is_file():
        labels = json.loads((path / METADATA_FILE).read_text(encoding="utf-8"))["labels"]
    return loaded.signatures[SIGNATURE], labels


def _main(argv=None):
    """Fresh-process check: SAVED_MODEL INPUTS.npz OUTPUTS.npz."""
    parser = argparse.ArgumentParser(description=_main.__doc__)
    parser.add_argument("saved_model")
    parser.add_argument("inputs")
    parser.add_argument("outputs")
    args = parser.parse_args(argv)
    import tensorflow as tf

    serve, _ = load_saved_model(args.saved_model)
    with np.load(args.inputs, allow_pickle=True) as data:
        result = serve(**{name: tf.constant(list(data[name])) for name in data.files})
    np.savez(args.outputs, **{key: value.numpy() for key, value in result.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
