"""SavedModel export for TensorFlow Serving, and loading it back.

The exported signature `serving_default` takes raw inputs and runs all
preprocessing in-graph (core TF ops plus the tensorflow-text tokenizer ops
that TF Serving links):

    inputs:  audio_wav  string [None]  16 kHz 16-bit PCM WAV bytes
             text       string [None]  UTF-8 transcript
    outputs: probabilities float32 [None, C], label string [None], label_id int64 [None]

A version folder also holds `assets.extra/bimer_tf.json` (labels and the
resolved config), which TF Serving ignores.
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
    """An ExportArchive whose `serving_default` maps raw WAV bytes + text to predictions."""
    import keras
    import tensorflow as tf

    from bimer_tf.frontend import AudioFrontend
    from bimer_tf.models import build_text_preprocessor

    frontend = AudioFrontend(config.audio)
    preprocessor = build_text_preprocessor(config)
    labels = tf.constant(config.data.labels)

    preprocessor(tf.constant(["build"]))  # builds the tokenizer so the archive can track it
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(preprocessor)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="audio_wav"),
            tf.TensorSpec([None], tf.string, name="text"),
        ]
    )
    def serve(audio_wav, text):
        features = {"log_mel": frontend.features(audio_wav)}
        features.update(preprocessor(text))
        probabilities = tf.cast(model(features, training=False), tf.float32)
        label_id = tf.argmax(probabilities, axis=-1)
        return {
            "probabilities": probabilities,
            "label": tf.gather(labels, label_id),
            "label_id": label_id,
        }

    archive.add_endpoint(SIGNATURE, serve)
    return archive, serve


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
    metadata = target / METADATA_FILE
    metadata.parent.mkdir(parents=True, exist_ok=True)
    metadata.write_text(
        json.dumps({"labels": config.data.labels, "config": to_dict(config)}, indent=1),
        encoding="utf-8",
    )

    wavs, texts = sample_inputs(config)
    expected = serve(wavs, texts)["probabilities"].numpy()
    actual = run_in_fresh_process(target, wavs, texts)["probabilities"]
    difference = float(np.max(np.abs(expected - actual)))
    print(f"reloaded {target} in a fresh process: max |difference| = {difference:.2e} on {len(texts)} inputs")
    if not difference <= 1e-4:
        raise RuntimeError(f"exported model disagrees with the Keras model ({difference:.2e} > 1e-4)")
    return target


def sample_inputs(config, count: int = 4):
    """WAV bytes and texts to compare the export on: held-out rows, else a synthetic clip."""
    from bimer_tf.data.pipeline import validate_rows
    from bimer_tf.errors import InputError
    from bimer_tf.frontend import AudioFrontend
    from bimer_tf.training import resolve_data

    try:
        rows = [r for split in ("test", "val") for r in resolve_data(config).splits[split]]
        # Only rows training would have used: a bad file in the manifest must
        # not fail the comparison.
        rows = validate_rows(rows[: 4 * count], config.data.labels, AudioFrontend(config.audio), True).kept[:count]
    except (InputError, OSError):  # the run's data may be gone; the check does not need it
        rows = []
    if rows:
        return (
            np.array([Path(r["audio"]).read_bytes() for r in rows], dtype=object),
            np.array([r["text"] for r in rows], dtype=object),
        )
    return np.array([synthetic_wav(config.audio.sample_rate)], dtype=object), np.array(
        ["thank you"], dtype=object
    )


def synthetic_wav(sample_rate: int, seconds: float = 1.5) -> bytes:
    import io

    import soundfile

    t = np.arange(int(seconds * sample_rate)) / sample_rate
    samples = 0.3 * np.sin(2 * np.pi * 180 * t) * np.hanning(t.size)
    buffer = io.BytesIO()
    soundfile.write(buffer, samples.astype(np.float32), sample_rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def run_in_fresh_process(saved_model: Path, wavs, texts) -> dict:
    """Runs the SavedModel in a new Python process, as a server would see it."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        inputs, outputs = Path(tmp) / "inputs.npz", Path(tmp) / "outputs.npz"
        np.savez(inputs, audio_wav=wavs, text=texts)
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
        result = serve(
            audio_wav=tf.constant(list(data["audio_wav"])), text=tf.constant(list(data["text"]))
        )
    np.savez(args.outputs, **{key: value.numpy() for key, value in result.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
