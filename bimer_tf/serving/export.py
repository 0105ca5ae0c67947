"""SavedModel export for TensorFlow Serving: `export_run` writes a version folder
from a run's best checkpoint (preprocessing in-graph: core TF ops plus the
tensorflow-text tokenizer ops that TF Serving links), adds the warm-up
requests and the metadata, and checks the result in a fresh process.

Given several runs, it exports their ensemble: one graph that decodes,
tokenizes and runs the frozen front end (a frozen Whisper encoder's lower
layers, say) once, runs each run's model on the result and answers the mean
of their probabilities. The runs must agree on everything that shared part
is made from (`check_shared_settings`): the 4 fold models of a
cross-validation, or one config trained with several seeds. With
`average="weights"` it exports instead one model whose weights are the mean
of the runs' (`average_weights`, a uniform "model soup"): one model's cost,
for runs of one architecture fine-tuned a little from the same pretrained
weights. `average="encoder"` sits between the two, for speech models whose
top Whisper layers were trained (`shared_encoder_ensemble`): those layers'
weights are averaged and run once, each run's own pooling and head reads
their output, and the heads' probabilities are averaged.

The folder's format (signature, input names, metadata) is
`bimer_tf.serving.export_dir`.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from bimer_tf.errors import InputError
from bimer_tf.serving.export_dir import (
    AUDIO_INPUT,
    SIGNATURE,
    TEXT_INPUT,
    config_inputs,
    load_saved_model,
    next_version,
    write_metadata,
)


def build_export_archive(model, config, xla: bool = False):
    """An ExportArchive whose `serving_default` maps raw inputs to predictions.

    `model`: a Keras model, or a list of them whose configs pass
    `check_shared_settings` (an ensemble: the shared part runs once, the
    probabilities are averaged).
    The inputs are those of the task: `audio_wav` and/or `text`. With `xla`,
    everything after decoding and tokenizing (the log-mel, any frozen
    encoder, the model) is one XLA-compiled function (`jit_compile=True`):
    the shapes there are fixed (clips are cropped or padded to
    `audio.max_duration_s`, sentences padded to `text.sequence_length`), so it
    compiles once per batch size. TF Serving runs such a graph only with
    `--xla_cpu_compilation_enabled=true`; without the flag it answers every
    request with an error.
    """
    import keras
    import tensorflow as tf

    from bimer_tf.models import build_text_preprocessor, task_modalities
    from bimer_tf.pipeline.frontend import build_speech_frontend

    needs_audio, needs_text = task_modalities(config)
    frontend = build_speech_frontend(config) if needs_audio else None
    preprocessor = build_text_preprocessor(config) if needs_text else None
    labels = tf.constant(config.data.labels)

    models = list(model) if isinstance(model, (list, tuple)) else [model]
    archive = keras.export.ExportArchive()
    for member in models:
        archive.track(member)
    if frontend is not None:
        for trackable in frontend.trackables():  # e.g. the frozen Whisper encoder layers
            archive.track(trackable)
    if preprocessor is not None:
        preprocessor(tf.constant(["build"]))  # builds the tokenizer so the archive can track it
        archive.track(preprocessor)

    def classify(waveforms, tokens):
        """Fixed-shape inputs -> probabilities: the part XLA can compile."""
        features = dict(tokens)
        if frontend is not None:
            features[frontend.input_key] = frontend.batch_features(waveforms)
        outputs = [tf.cast(member(features, training=False), tf.float32) for member in models]
        return outputs[0] if len(outputs) == 1 else tf.add_n(outputs) / len(outputs)

    if xla:
        classify = tf.function(classify, jit_compile=True)

    def predict(audio_wav=None, text=None):
        waveforms = frontend.batch_waveforms(audio_wav) if frontend is not None else None
        tokens = {}
        if preprocessor is not None:
            tokens = preprocessor(text)
            if not xla:  # a varying sequence length would make XLA compile again and again
                tokens = trim_token_padding(tokens)
        probabilities = classify(waveforms, tokens)
        label_id = tf.argmax(probabilities, axis=-1)
        return {
            "probabilities": probabilities,
            "label": tf.gather(labels, label_id),
            "label_id": label_id,
        }

    audio_spec = tf.TensorSpec([None], tf.string, name=AUDIO_INPUT)
    text_spec = tf.TensorSpec([None], tf.string, name=TEXT_INPUT)
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


AVERAGES = ("probabilities", "weights", "encoder")


def export_run(
    run_dir: str | Path | list[str | Path],
    output: str | Path,
    version: int | None = None,
    xla: bool = False,
    average: str = "probabilities",
) -> Path:
    """Writes `output/<version>/` from a run's best checkpoint and checks it.

    `run_dir`: a run directory, or a list of them to export as one ensemble
    (they must pass `check_shared_settings`; the first run's config goes into
    the metadata, every run's path into its `runs`).
    `average`: how several runs become one answer: the mean of their
    probabilities (every model runs), of their weights (one model runs;
    see `average_weights`), or of their trained encoder layers' weights with
    every run's head on them (see `shared_encoder_ensemble`).
    `xla`: compile the model part of the graph with XLA (see `build_export_archive`).
    """
    from bimer_tf.serving.warmup import write_warmup_requests
    from bimer_tf.training.run_dir import load_best_model, read_run_config

    run_dirs = [Path(run) for run in (run_dir if isinstance(run_dir, (list, tuple)) else [run_dir])]
    if not run_dirs:
        raise InputError("no run to export: pass at least one run directory")
    if len(set(map(Path.resolve, run_dirs))) < len(run_dirs):
        raise InputError("a run is given twice: an ensemble averages different runs")
    if average not in AVERAGES:
        raise InputError(f"unknown average '{average}'; choose {' or '.join(AVERAGES)}")
    if average != "probabilities" and len(run_dirs) < 2:
        raise InputError(f"--average {average} takes at least two runs (--run A --run B)")
    configs = [read_run_config(run) for run in run_dirs]
    check_shared_settings(run_dirs, configs)
    config = configs[0]
    output = Path(output)
    version = version if version is not None else next_version(output)
    target = output / str(version)
    if target.exists():
        raise InputError(f"{target} already exists; pass another --version or remove it")

    models = [load_best_model(run) for run in run_dirs]
    if average == "weights":
        models = [average_weights(models, run_dirs)]
    elif average == "encoder":
        models = [shared_encoder_ensemble(models, run_dirs)]
    archive, serve = build_export_archive(models, config, xla=xla)
    archive.write_out(str(target), verbose=False)
    write_warmup_requests(target, config.audio.sample_rate)  # TF Serving replays them on load
    write_metadata(
        target, config, xla=xla, runs=[str(run) for run in run_dirs], average=average if len(run_dirs) > 1 else None
    )
    inputs = config_inputs(config)

    examples = {name: value for name, value in sample_inputs(config).items() if name in inputs}
    expected = serve(**examples)["probabilities"].numpy()
    actual = run_in_fresh_process(target, examples)["probabilities"]
    difference = float(np.max(np.abs(expected - actual)))
    count = len(next(iter(examples.values())))
    print(f"reloaded {target} in a fresh process: max |difference| = {difference:.2e} on {count} inputs")
    if not difference <= 1e-4:
        raise RuntimeError(f"exported model disagrees with the Keras model ({difference:.2e} > 1e-4)")
    return target


def average_weights(models: list, run_dirs: list[Path]):
    """The first model, its every floating-point weight replaced by the mean of
    the models' (batch-norm statistics too; integer state such as a dropout
    seed stays the first model's).

    Averaged weights answer well only where the models lie in one basin of the
    loss: a pretrained model fine-tuned a little from the same starting
    weights (other learning rates or training data), as in a "model soup".
    Runs from other random starts, or a head trained from random weights
    for long, average into a poor model: score the result before serving it.
    Models of another architecture are refused, naming the first weight
    that differs.
    """

    def layout(model):  # paths without the model's own name, which Keras may have made unique
        return [(w.path.split("/", 1)[-1], tuple(w.shape)) for w in model.weights]

    first = models[0]
    reference = layout(first)
    for run, model in zip(run_dirs[1:], models[1:]):
        other = layout(model)
        if other != reference:
            mine, theirs = next((a, b) for a, b in itertools.zip_longest(reference, other) if a != b)
            raise InputError(
                f"{run} cannot be averaged with {run_dirs[0]}: their models differ (weight {theirs} against "
                f"{mine}); average the weights of runs of one model config, or export the ensemble of "
                "their probabilities instead"
            )
    for weights in zip(*(model.weights for model in models)):
        values = [np.asarray(w.numpy()) for w in weights]
        if np.issubdtype(values[0].dtype, np.floating):
            weights[0].assign(np.mean(values, axis=0).astype(values[0].dtype))
    return first


def shared_encoder_ensemble(models: list, run_dirs: list[Path]):
    """One Keras model for runs whose speech model fine-tuned its top Whisper
    encoder layers (`model.speech.whisper.trainable_layers`): those layers
    with the mean of the runs' weights, run once, then each run's own
    pooling and head (`SERClassifier.head_after_encoder`) on their output,
    answering the mean of the heads' probabilities. Its input is the runs'
    (the frozen lower layers' states).

    The costly part (a Whisper layer on every frame) runs once, where an
    ensemble runs it per run, and the heads keep the runs' differences. It
    answers as that ensemble does as far as the runs' trained layers stayed
    close (fine-tuned a little from the same pretrained layers): score it on
    validation data before serving it. Runs of other models, or without
    trained encoder layers, are refused.
    """
    import keras

    from bimer_tf.models.ser_classifier import SERClassifier

    for run, model in zip(run_dirs, models):
        if not isinstance(model, SERClassifier) or getattr(model.speech_backbone, "top_encoder", None) is None:
            raise InputError(
                f"{run} has no trained Whisper encoder layers to share: --average encoder takes speech models "
                "trained with model.speech.whisper.trainable_layers >= 1; export the ensemble of their "
                "probabilities instead (--average probabilities)"
            )
    encoder = average_weights([model.speech_backbone.top_encoder for model in models], run_dirs)
    states = keras.Input(shape=encoder.input.shape[1:], name=models[0].speech_backbone.input.name)
    shared = encoder(states)
    heads = [model.head_after_encoder(name=f"head_{index}")(shared) for index, model in enumerate(models)]
    probabilities = keras.layers.Average(name="probabilities")(heads)
    return keras.Model({states.name: states}, probabilities, name="shared_encoder_ensemble")


def check_shared_settings(run_dirs, configs) -> None:
    """InputError naming the first setting on which a run differs from the
    first run where an ensemble's runs must agree: the task and labels, and
    what the front end (`SPEECH_FRONTEND_SETTINGS`) and the tokenizer
    (`TEXT_PREPROCESSOR_SETTINGS`) are built from, where the task takes them."""
    from bimer_tf.config import to_dict
    from bimer_tf.models import TEXT_PREPROCESSOR_SETTINGS, task_modalities
    from bimer_tf.pipeline.frontend import SPEECH_FRONTEND_SETTINGS

    def setting(values: dict, key: str):
        for part in key.split("."):
            values = values.get(part) if isinstance(values, dict) else None
        return values

    needs_audio, needs_text = task_modalities(configs[0])
    keys = ("model.type", "data.labels")
    keys += SPEECH_FRONTEND_SETTINGS if needs_audio else ()
    keys += TEXT_PREPROCESSOR_SETTINGS if needs_text else ()
    first = to_dict(configs[0])
    for run, config in zip(run_dirs[1:], configs[1:]):
        values = to_dict(config)
        for key in keys:
            if setting(first, key) != setting(values, key):
                raise InputError(
                    f"{run} cannot join {run_dirs[0]} in one export: their {key} differ "
                    f"({setting(values, key)!r} against {setting(first, key)!r}); an ensemble shares the "
                    "front end, tokenizer and labels, so export them apart"
                )


def sample_inputs(config, count: int = 4) -> dict:
    """{"audio_wav", "text"} arrays to compare the export on: held-out rows, else synthetic."""
    from bimer_tf.pipeline.dataset import validate_rows
    from bimer_tf.pipeline.frontend import AudioFrontend
    from bimer_tf.models import task_modalities
    from bimer_tf.training.run_data import resolve_data

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
            AUDIO_INPUT: np.array(
                [Path(r["audio"]).read_bytes() if needs_audio else b"" for r in rows], dtype=object
            ),
            TEXT_INPUT: np.array([r["text"] or "" for r in rows], dtype=object),
        }
    from bimer_tf.audio.wav import synthetic_wav

    return {
        AUDIO_INPUT: np.array([synthetic_wav(config.audio.sample_rate)], dtype=object),
        TEXT_INPUT: np.array(["thank you"], dtype=object),
    }


def run_in_fresh_process(saved_model: Path, examples: dict) -> dict:
    """Runs the SavedModel on {input name: array} in a new Python process, as a server would."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        inputs, outputs = Path(tmp) / "inputs.npz", Path(tmp) / "outputs.npz"
        np.savez(inputs, **examples)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        command = [sys.executable, "-m", "bimer_tf.serving.export", str(saved_model), str(inputs), str(outputs)]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"reloading {saved_model} failed:\n{done.stderr[-3000:]}")
        with np.load(outputs, allow_pickle=True) as result:
            return {key: result[key] for key in result.files}


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
