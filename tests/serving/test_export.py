"""The exported SavedModel: the serving contract, stock-serving ops, REST format."""

import base64
import json

import numpy as np
import pytest
import tensorflow as tf

from bimer_tf.errors import InputError
from bimer_tf.audio.wav import synthetic_wav
from bimer_tf.serving.export import export_run
from bimer_tf.serving.export_dir import METADATA_FILE, load_saved_model

from conftest import TINY_LABELS, TINY_TEXTS, synth_tone, tiny_overrides

# Ops of tensorflow-text, which TF Serving links; anything else outside core TF
# (a tensorflow-io op, say) would fail to load in a stock server.
TF_TEXT_OPS = {"CaseFoldUTF8", "FastWordpieceTokenizeWithOffsets", "RegexSplitWithOffsets",
               "WordpieceTokenizeWithOffsets", "NormalizeUTF8", "TFText>RoundRobinTrim",
               "TFText>RoundRobinGenerateMasks"}


def _wav_bytes(samples, sample_rate=16000):
    import io

    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, samples, sample_rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def test_version_folder_layout(tiny_export):
    assert tiny_export.name == "1"
    assert (tiny_export / "saved_model.pb").is_file()
    assert (tiny_export / "variables").is_dir()
    metadata = json.loads((tiny_export / METADATA_FILE).read_text())
    assert metadata["labels"] == TINY_LABELS


def test_serving_signature_contract(tiny_export):
    serve, _ = load_saved_model(tiny_export)
    inputs = serve.structured_input_signature[1]
    assert set(inputs) == {"audio_wav", "text"}
    for spec in inputs.values():
        assert spec.dtype == tf.string and spec.shape.as_list() == [None]
    outputs = serve.structured_outputs
    assert set(outputs) == {"probabilities", "label", "label_id"}
    assert outputs["probabilities"].dtype == tf.float32
    assert outputs["probabilities"].shape.as_list() == [None, len(TINY_LABELS)]
    assert outputs["label"].dtype == tf.string
    assert outputs["label_id"].dtype.is_integer


def test_graph_uses_only_core_and_tf_text_ops(tiny_export):
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.framework import op_def_registry

    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((tiny_export / "saved_model.pb").read_bytes())
    graph = saved_model.meta_graphs[0].graph_def
    ops = {node.op for node in graph.node}
    ops |= {node.op for function in graph.library.function for node in function.node_def}
    import tensorflow_text  # noqa: F401  registers its ops so they count as known

    unknown = {op for op in ops if op_def_registry.get(op) is None}
    assert not unknown, f"ops no TensorFlow Serving build has: {unknown}"
    custom = {op for op in ops if op.startswith("TFText>") or "Wordpiece" in op or "UTF8" in op}
    assert custom <= TF_TEXT_OPS
    assert not any("IO>" in op for op in ops)  # no tensorflow-io


def test_rest_request_format(tiny_export):
    """A TF Serving REST body, decoded the way the server does ({"b64": ...} -> bytes)."""
    wav = _wav_bytes(synth_tone(0.8, freq=300.0, lead_silence=0.1))
    body = json.dumps(
        {"instances": [{"audio_wav": {"b64": base64.b64encode(wav).decode()}, "text": TINY_TEXTS["angry"]}]}
    )
    instances = json.loads(body)["instances"]
    columns = {
        key: tf.constant(
            [base64.b64decode(i[key]["b64"]) if isinstance(i[key], dict) else i[key].encode() for i in instances]
        )
        for key in instances[0]
    }
    serve, labels = load_saved_model(tiny_export)
    result = serve(**columns)
    probabilities = result["probabilities"].numpy()
    assert probabilities.shape == (1, len(TINY_LABELS))
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    label_id = int(result["label_id"].numpy()[0])
    assert result["label"].numpy()[0].decode() == labels[label_id] == TINY_LABELS[int(probabilities.argmax())]


def test_batch_of_different_lengths_matches_single_requests(tiny_export):
    serve, _ = load_saved_model(tiny_export)
    wavs = [_wav_bytes(synth_tone(s, freq=200.0)) for s in (0.5, 0.9, 1.6)]
    texts = [TINY_TEXTS["sad"], TINY_TEXTS["happy"], ""]
    batch = serve(audio_wav=tf.constant(wavs), text=tf.constant(texts))["probabilities"].numpy()
    for i in range(3):
        single = serve(audio_wav=tf.constant(wavs[i : i + 1]), text=tf.constant(texts[i : i + 1]))
        np.testing.assert_allclose(single["probabilities"].numpy()[0], batch[i], atol=1e-5)


@pytest.mark.parametrize(
    "wav, message",
    [
        (lambda: _wav_bytes(synth_tone(0.5), 44100), "expected 16000 Hz"),
        (lambda: _wav_bytes(np.zeros(8000, np.float32)), "silent"),
        (lambda: _wav_bytes(np.zeros(0, np.float32)), "no samples"),
    ],
    ids=["wrong-rate", "silent", "empty"],
)
def test_served_graph_rejects_bad_audio_with_its_reason(tiny_export, wav, message):
    serve, _ = load_saved_model(tiny_export)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        serve(audio_wav=tf.constant([wav()]), text=tf.constant(["hello"]))


def test_synthetic_wav_is_valid_input(tiny_export):
    serve, _ = load_saved_model(tiny_export)
    result = serve(audio_wav=tf.constant([synthetic_wav(16000)]), text=tf.constant(["thank you"]))
    assert result["probabilities"].shape == (1, len(TINY_LABELS))


def test_export_refuses_existing_version_and_unfinished_runs(tiny_run, tiny_export, tmp_path):
    with pytest.raises(InputError, match="already exists"):
        export_run(tiny_run, tiny_export.parent, version=1)
    with pytest.raises(InputError, match="not a finished run"):
        export_run(tmp_path, tmp_path / "export")


def test_load_saved_model_names_the_folder(tmp_path):
    with pytest.raises(InputError, match="not a SavedModel version folder"):
        load_saved_model(tmp_path)


def test_xla_export_agrees_with_the_plain_one(tiny_run, tiny_export, tmp_path):
    """`export_run(..., xla=True)` checks itself in a fresh process (<= 1e-4); here it
    must also give the plain export's probabilities and say in its metadata that it is XLA."""
    from bimer_tf.serving.export_dir import read_export_info

    target = export_run(tiny_run, tmp_path / "bimer", xla=True)
    assert read_export_info(target).xla and not read_export_info(tiny_export).xla
    wavs = tf.constant([synthetic_wav(16000), _wav_bytes(synth_tone(0.7, freq=300.0))])
    texts = tf.constant([TINY_TEXTS["happy"], TINY_TEXTS["sad"]])
    plain, _ = load_saved_model(tiny_export)
    compiled, _ = load_saved_model(target)
    np.testing.assert_allclose(
        compiled(audio_wav=wavs, text=texts)["probabilities"].numpy(),
        plain(audio_wav=wavs, text=texts)["probabilities"].numpy(),
        atol=1e-4,
    )


def test_loudness_normalised_export_ignores_the_request_gain(tiny_run, tmp_path):
    """With `audio.loudness_dbfs` the served graph answers a quiet copy of a clip as the
    clip itself; the export's metadata carries both front-end options."""
    import shutil

    import yaml

    from bimer_tf.serving.export_dir import read_export_info

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["audio"].update(loudness_dbfs=-23.0, pad_mode="repeat")
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    target = export_run(run, tmp_path / "bimer")
    assert read_export_info(target).audio["loudness_dbfs"] == -23.0
    assert read_export_info(target).audio["pad_mode"] == "repeat"

    clip = synth_tone(0.6, freq=220.0, amplitude=0.5)
    wavs = tf.constant([_wav_bytes(clip), _wav_bytes(clip * 0.1)])
    texts = tf.constant([TINY_TEXTS["sad"]] * 2)
    normalised, _ = load_saved_model(target)
    loud, quiet = normalised(audio_wav=wavs, text=texts)["probabilities"].numpy()
    np.testing.assert_allclose(loud, quiet, atol=1e-3)


# --- ensembles: several runs in one export -----------------------------------


def _run_copy(tiny_run, folder, scale=None, config_change=None):
    """A copy of the tiny run; `scale` multiplies its output layer's weights (another
    member that answers differently), `config_change(dict)` edits its config.yaml."""
    import shutil

    import yaml

    from bimer_tf.training.run_dir import load_best_model

    shutil.copytree(tiny_run, folder)
    if scale is not None:
        model = load_best_model(folder)
        kernel = [weight for weight in model.trainable_weights if len(weight.shape) == 2][-1]  # the output layer's
        kernel.assign(kernel * scale)
        model.save(folder / "checkpoints" / "best.keras")
    if config_change is not None:
        config = yaml.safe_load((folder / "config.yaml").read_text())
        config_change(config)
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


def _export_command(argv) -> int:
    """`python export.py ARGV` in this process (its exit code)."""
    import importlib.util

    from bimer_tf.cli import run_main

    from conftest import REPO_ROOT

    spec = importlib.util.spec_from_file_location("export_command", REPO_ROOT / "export.py")
    command = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(command)
    return run_main(command.main, [str(arg) for arg in argv])


def test_an_ensemble_answers_the_mean_of_its_runs(tiny_run, tiny_export, tmp_path, capsys):
    """`export.py --run A --run B`: one graph (its fresh-process check passes) that
    answers the mean of what each run's own export answers; its metadata names both runs."""
    from bimer_tf.serving.export_dir import read_export_info

    other = _run_copy(tiny_run, tmp_path / "other", scale=3.0)
    other_export = export_run(other, tmp_path / "other_export")
    assert _export_command(["--run", tiny_run, "--run", other, "--output", tmp_path / "ensemble"]) == 0
    ensemble = tmp_path / "ensemble" / "1"
    assert f"exported {ensemble}" in capsys.readouterr().out
    assert read_export_info(ensemble).runs == (str(tiny_run), str(other))
    assert read_export_info(tiny_export).runs == (str(tiny_run),)

    wavs = tf.constant([synthetic_wav(16000), _wav_bytes(synth_tone(0.7, freq=300.0))])
    texts = tf.constant([TINY_TEXTS["happy"], TINY_TEXTS["sad"]])
    answers = [
        load_saved_model(folder)[0](audio_wav=wavs, text=texts)["probabilities"].numpy()
        for folder in (tiny_export, other_export, ensemble)
    ]
    assert np.max(np.abs(answers[0] - answers[1])) > 1e-3  # the members differ
    np.testing.assert_allclose(answers[2], (answers[0] + answers[1]) / 2, atol=1e-5)


def test_an_ensemble_needs_one_front_end_and_different_runs(tiny_run, tmp_path, capsys):
    mels = _run_copy(tiny_run, tmp_path / "mels", config_change=lambda c: c["audio"].update(n_mels=16))
    with pytest.raises(InputError, match=r"mels cannot join .* their audio differ"):
        export_run([tiny_run, mels], tmp_path / "export")
    labels = _run_copy(tiny_run, tmp_path / "labels", config_change=lambda c: c["data"].update(
        labels=list(reversed(c["data"]["labels"]))))
    with pytest.raises(InputError, match="their data.labels differ"):
        export_run([tiny_run, labels], tmp_path / "export")
    with pytest.raises(InputError, match="a run is given twice"):
        export_run([tiny_run, tiny_run], tmp_path / "export")
    assert not (tmp_path / "export").exists()
    assert _export_command(["--run", tiny_run, "--run", tmp_path / "missing", "--output", tmp_path / "export"]) == 2
    assert "missing is not a finished run" in capsys.readouterr().err


def test_averaged_weights_export_one_model_with_the_mean_weights(tiny_run, tmp_path, capsys):
    """`--average weights`: one model whose output layer is the mean of the two
    runs' (x1 and x3) answers as a run whose output layer is x2."""
    from bimer_tf.serving.export_dir import read_export_info

    other = _run_copy(tiny_run, tmp_path / "other", scale=3.0)
    middle = export_run(_run_copy(tiny_run, tmp_path / "middle", scale=2.0), tmp_path / "middle_export")
    argv = ["--run", tiny_run, "--run", other, "--average", "weights", "--output", tmp_path / "soup"]
    assert _export_command(argv) == 0
    soup = tmp_path / "soup" / "1"
    info = read_export_info(soup)
    assert info.runs == (str(tiny_run), str(other)) and info.average == "weights"

    wavs = tf.constant([synthetic_wav(16000), _wav_bytes(synth_tone(0.7, freq=300.0))])
    texts = tf.constant([TINY_TEXTS["happy"], TINY_TEXTS["sad"]])
    answers = [
        load_saved_model(folder)[0](audio_wav=wavs, text=texts)["probabilities"].numpy() for folder in (middle, soup)
    ]
    np.testing.assert_allclose(answers[1], answers[0], atol=1e-5)

    assert _export_command(["--run", tiny_run, "--average", "weights", "--output", tmp_path / "one"]) == 2
    assert "--average weights takes at least two runs" in capsys.readouterr().err
    with pytest.raises(InputError, match="unknown average 'median'"):
        export_run([tiny_run, other], tmp_path / "median", average="median")


def test_weights_of_other_architectures_are_not_averaged():
    import keras

    from bimer_tf.serving.export import average_weights

    def model(units):
        return keras.Sequential([keras.Input((3,)), keras.layers.Dense(units, name="hidden"), keras.layers.Dense(2, name="out")])

    a, b = model(4), model(4)
    mean = [(np.asarray(x) + np.asarray(y)) / 2 for x, y in zip(a.weights, b.weights)]
    averaged = average_weights([a, b], ["runs/a", "runs/b"])
    for got, want in zip(averaged.weights, mean):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)
    with pytest.raises(InputError, match=r"runs/c cannot be averaged with runs/a: their models differ \(weight \('hidden/kernel', \(3, 5\)\)"):
        average_weights([model(4), model(5)], ["runs/a", "runs/c"])


def test_an_ensemble_shares_only_what_its_task_reads():
    """A speech model's ensemble may differ in text settings and in anything after
    the frozen encoder; not in the encoder layers the front end runs."""
    from bimer_tf.config import load_config
    from bimer_tf.serving.export import check_shared_settings

    def ser(*overrides):
        return load_config(model="ser_whisper", overrides=list(overrides))

    runs = ["runs/a", "runs/b"]
    check_shared_settings(runs, [ser(), ser("text.preset=other", "model.speech.whisper.pooling=attention",
                                            "trainer.seed=7")])
    with pytest.raises(InputError, match="their model.speech.whisper.layers differ"):
        check_shared_settings(runs, [ser(), ser("model.speech.whisper.layers=3")])
    with pytest.raises(InputError, match="their text differ"):
        check_shared_settings(runs, [load_config(model="ter_bert"), load_config(model="ter_bert", overrides=[
            "text.sequence_length=16"])])

# --- --average encoder: the runs' trained Whisper layers averaged and run once,
# each run's own pooling and head on their output.


def whisper_config(tiny_corpus, preset, trainable_layers=1):
    """ser_whisper on tiny.en's first two layers, the second one trained."""
    from bimer_tf.config import load_config

    return load_config(model="ser_whisper", overrides=[
        *tiny_overrides(tiny_corpus, preset),
        "model.speech.whisper.source=whisper-tiny-offline",
        "model.speech.whisper.layers=2",
        f"model.speech.whisper.trainable_layers={trainable_layers}",
        "model.speech.whisper.pooling=attentive_mean_std",
        "model.speech.whisper.feature_dim=8",
    ])


def fine_tuned(config, seed, scale):
    """A model of `config` with its own head (seed) and its trained layer's
    weights moved from the pretrained ones (scaled by `scale`)."""
    import keras

    from bimer_tf.models import build_model

    keras.utils.set_random_seed(seed)
    model = build_model(config)
    for weight in model.speech_backbone.top_encoder.weights:
        weight.assign(weight * scale)
    return model


def with_encoder(config, model, encoder_weights):
    """A copy of `model` (of `config`) whose trained layer holds `encoder_weights`."""
    from bimer_tf.models import build_model

    copy = build_model(config)
    copy.set_weights(model.get_weights())
    for weight, value in zip(copy.speech_backbone.top_encoder.weights, encoder_weights):
        weight.assign(value)
    return copy


def make_run(folder, model, config):
    from bimer_tf.config import save_config

    (folder / "checkpoints").mkdir(parents=True)
    model.save(folder / "checkpoints" / "best.keras")
    save_config(config, folder / "config.yaml")
    return folder


@pytest.fixture(scope="module")
def fine_tuned_models(tiny_corpus, tiny_bert_preset):
    config = whisper_config(tiny_corpus, tiny_bert_preset)
    return config, [fine_tuned(config, seed, scale) for seed, scale in ((0, 0.97), (1, 1.05))]


def frozen_states(config, wavs):
    """The frozen lower layer's states of the clips, as the front end computes them."""
    from bimer_tf.pipeline.frontend import build_speech_frontend

    frontend = build_speech_frontend(config)
    return {frontend.input_key: frontend.batch_features(frontend.batch_waveforms(wavs)).numpy()}


def clips():
    return tf.constant([synthetic_wav(16000), _wav_bytes(synth_tone(0.7, freq=300.0)), _wav_bytes(synth_tone(0.9, freq=520.0))])


def mean_encoder_weights(models):
    return [
        np.mean([w.numpy() for w in weights], axis=0)
        for weights in zip(*(model.speech_backbone.top_encoder.weights for model in models))
    ]


def test_the_heads_of_the_runs_answer_on_their_mean_trained_layer(fine_tuned_models):
    from bimer_tf.serving.export import shared_encoder_ensemble

    config, models = fine_tuned_models
    inputs = frozen_states(config, clips())
    plain = np.mean([model.predict(inputs, verbose=0) for model in models], axis=0)
    mean_encoder = mean_encoder_weights(models)
    # The runs' whole models, each with the mean layer in place of its own.
    expected = np.mean([with_encoder(config, model, mean_encoder).predict(inputs, verbose=0) for model in models], axis=0)

    copies = [with_encoder(config, model, [w.numpy() for w in model.speech_backbone.top_encoder.weights]) for model in models]
    shared = shared_encoder_ensemble(copies, ["runs/a", "runs/b"])
    answer = shared.predict(inputs, verbose=0)
    np.testing.assert_allclose(answer, expected, atol=1e-5)
    assert np.max(np.abs(answer - plain)) > 1e-4  # the runs' own layers differed
    np.testing.assert_allclose(answer.sum(axis=1), 1.0, atol=1e-5)
    # One trained layer (the first run's, holding the mean), then one head per run without a layer of its own.
    first_encoder, second_encoder = (copy.speech_backbone.top_encoder for copy in copies)
    assert [layer.name for layer in shared.layers[2:]] == ["head_0", "head_1", "probabilities"]
    assert shared.layers[1] is first_encoder
    heads = shared.layers[2:4]
    assert not any(layer in (first_encoder, second_encoder) for head in heads for layer in head.layers)


def test_export_average_encoder(fine_tuned_models, tmp_path, capsys):
    """The export (its fresh-process check passes) answers what the runs' heads
    on their mean trained layer answer, and says how it was averaged."""
    from bimer_tf.serving.export_dir import read_export_info

    config, models = fine_tuned_models
    runs = [make_run(tmp_path / name, model, config) for name, model in zip("ab", models)]
    argv = ["--run", runs[0], "--run", runs[1], "--average", "encoder", "--output", tmp_path / "shared"]
    assert _export_command(argv) == 0
    export = tmp_path / "shared" / "1"
    assert f"exported {export}" in capsys.readouterr().out
    info = read_export_info(export)
    assert info.average == "encoder" and info.runs == tuple(map(str, runs))

    wavs = clips()
    served = load_saved_model(export)[0](audio_wav=wavs)["probabilities"].numpy()
    inputs = frozen_states(config, wavs)
    mean_encoder = mean_encoder_weights(models)
    expected = np.mean([with_encoder(config, model, mean_encoder).predict(inputs, verbose=0) for model in models], axis=0)
    np.testing.assert_allclose(served, expected, atol=1e-5)


def test_runs_without_a_trained_encoder_are_refused(tiny_corpus, tiny_bert_preset, fine_tuned_models, tmp_path, capsys):
    from bimer_tf.config import load_config
    from bimer_tf.models import build_model
    from bimer_tf.serving.export import shared_encoder_ensemble

    config, models = fine_tuned_models
    frozen = build_model(whisper_config(tiny_corpus, tiny_bert_preset, trainable_layers=0))
    with pytest.raises(InputError, match=r"runs/frozen has no trained Whisper encoder layers to share: .*trainable_layers >= 1"):
        shared_encoder_ensemble([models[0], frozen], ["runs/tuned", "runs/frozen"])
    with pytest.raises(ValueError, match="pooling_head needs top_encoder"):
        frozen.head_after_encoder()
    spectrogram = build_model(load_config(model="ser_resnet_crnn_at", overrides=tiny_overrides(tiny_corpus, tiny_bert_preset)))
    with pytest.raises(InputError, match="runs/resnet has no trained Whisper encoder layers"):
        shared_encoder_ensemble([spectrogram, spectrogram], ["runs/resnet", "runs/resnet2"])
    one = make_run(tmp_path / "one", models[0], config)
    assert _export_command(["--run", one, "--average", "encoder", "--output", tmp_path / "export"]) == 2
    assert "--average encoder takes at least two runs" in capsys.readouterr().err
    assert not (tmp_path / "export").exists()
