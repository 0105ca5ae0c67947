"""SpeechResNetCRNNBackbone, BiMERClassifier and building them from a config."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from bimer_tf.config import ExperimentConfig, ResNetCRNNATConfig
from bimer_tf.errors import InputError
from bimer_tf.models import (
    BiMERClassifier,
    SpeechResNetCRNNBackbone,
    build_model,
    build_text_preprocessor,
)

N_MELS = 16
SENTENCES = ["i am so happy", "this is not good!", "why", "thank you, what a great day"]

TINY_SPEECH = dict(
    stage_widths=[4, 8],
    blocks_per_stage=1,
    gru_units=4,
    attention_units=4,
    transformer_heads=2,
    transformer_intermediate_dim=8,
    transformer_layers=1,
    dropout=0.1,
    feature_dim=8,
)


def tiny_config(text_preset: str, **text_model) -> ExperimentConfig:
    config = ExperimentConfig()
    config.audio.n_mels = N_MELS
    config.text.preset = text_preset
    config.text.sequence_length = 12
    config.model.speech.resnet_crnn_at = ResNetCRNNATConfig(**TINY_SPEECH)
    config.model.text.feature_dim = 8
    for key, value in text_model.items():
        setattr(config.model.text, key, value)
    return config


def log_mel(batch: int, frames: int) -> np.ndarray:
    return np.random.default_rng(frames).random((batch, frames, N_MELS, 1), dtype="float32")


def model_inputs(config: ExperimentConfig, frames: int = 24) -> dict:
    """Real preprocessor output for SENTENCES plus random log-mels."""
    text = build_text_preprocessor(config)(SENTENCES)
    inputs = {name: np.asarray(value) for name, value in text.items()}
    inputs["log_mel"] = log_mel(len(SENTENCES), frames)
    return inputs


@pytest.fixture(scope="module")
def config(tiny_bert_preset) -> ExperimentConfig:
    return tiny_config(tiny_bert_preset)


@pytest.fixture(scope="module")
def inputs(config) -> dict:
    return model_inputs(config)


def _save_and_reload(model, tmp_path):
    path = tmp_path / "model.keras"
    model.save(path)
    return keras.saving.load_model(path)


# --- SpeechResNetCRNNBackbone ----------------------------------------------------


def test_speech_backbone_outputs_for_variable_frames():
    backbone = SpeechResNetCRNNBackbone(n_mels=N_MELS, **TINY_SPEECH)
    assert tuple(backbone.input.shape) == (None, None, N_MELS, 1)
    assert backbone.input.name == "log_mel"
    for frames, reduced in [(24, 6), (37, 10)]:  # two stride-2 stages: ceil(frames / 4)
        outputs = backbone(log_mel(3, frames))
        assert tuple(outputs["sequence_output"].shape) == (3, reduced, 2 * TINY_SPEECH["gru_units"])
        assert tuple(outputs["pooled_output"].shape) == (3, TINY_SPEECH["feature_dim"])


def test_speech_backbone_blocks_and_channels():
    backbone = SpeechResNetCRNNBackbone(
        n_mels=N_MELS, channels=3, **{**TINY_SPEECH, "blocks_per_stage": 2, "transformer_layers": 2}
    )
    blocks = backbone.residual_blocks
    assert [block.name for block in blocks] == [
        "stage0_block0", "stage0_block1", "stage1_block0", "stage1_block1"
    ]
    assert [block.strides for block in blocks] == [2, 1, 2, 1]
    assert [block.shortcut_conv is not None for block in blocks] == [True, False, True, False]
    assert len(backbone.transformer_encoders) == 2
    outputs = backbone(np.random.rand(2, 20, N_MELS, 3).astype("float32"))
    assert tuple(outputs["pooled_output"].shape) == (2, TINY_SPEECH["feature_dim"])


def test_speech_backbone_rejects_heads_not_dividing_width():
    with pytest.raises(ValueError, match="transformer_heads"):
        SpeechResNetCRNNBackbone(n_mels=N_MELS, **{**TINY_SPEECH, "transformer_heads": 3})


def test_speech_backbone_config_round_trip():
    backbone = SpeechResNetCRNNBackbone(n_mels=N_MELS, **TINY_SPEECH)
    restored = SpeechResNetCRNNBackbone.from_config(backbone.get_config())
    assert restored.get_config() == backbone.get_config()
    assert restored.count_params() == backbone.count_params()


def test_speech_backbone_keras_file_round_trip(tmp_path):
    backbone = SpeechResNetCRNNBackbone(n_mels=N_MELS, **TINY_SPEECH)
    restored = _save_and_reload(backbone, tmp_path)
    assert isinstance(restored, SpeechResNetCRNNBackbone)
    x = log_mel(2, 30)
    for key in ("sequence_output", "pooled_output"):
        np.testing.assert_allclose(restored(x)[key], backbone(x)[key], atol=1e-6)


def test_checkpoint_from_before_the_rename_loads(tmp_path):
    """A .keras file naming the backbone by its old class name, SpeechCRNNBackbone, loads."""
    import zipfile

    backbone = SpeechResNetCRNNBackbone(n_mels=N_MELS, **TINY_SPEECH)
    new = tmp_path / "new.keras"
    backbone.save(new)
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(new) as source, zipfile.ZipFile(old, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                data = data.replace(b"SpeechResNetCRNNBackbone", b"SpeechCRNNBackbone")
            target.writestr(item, data)
    restored = keras.saving.load_model(old)
    assert isinstance(restored, SpeechResNetCRNNBackbone)
    x = log_mel(2, 30)
    np.testing.assert_allclose(restored(x)["pooled_output"], backbone(x)["pooled_output"], atol=1e-6)


# --- BiMERClassifier -------------------------------------------------------


@pytest.fixture(scope="module")
def model(config) -> BiMERClassifier:
    return build_model(config)


def test_build_model_gives_probabilities(model, config, inputs):
    assert isinstance(model, BiMERClassifier)
    assert sorted(model.input) == ["log_mel", "padding_mask", "segment_ids", "token_ids"]
    assert model.text_backbone.trainable
    # The unused [CLS] head is frozen under mean pooling (it gets no gradient).
    assert not model.text_backbone.get_layer("pooled_dense").trainable
    probabilities = model.predict(inputs, verbose=0)
    assert probabilities.shape == (len(SENTENCES), len(config.data.labels))
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-5)
    # Variable frames through the whole model.
    longer = {**inputs, "log_mel": log_mel(len(SENTENCES), 41)}
    assert model.predict(longer, verbose=0).shape == probabilities.shape


def test_fused_feature_sizes(model):
    fusion = model.get_layer("fusion")
    assert tuple(fusion.output.shape) == (None, TINY_SPEECH["feature_dim"] + 8)


def test_padding_mask_bool_or_int_and_padded_tokens_ignored(model, inputs):
    padding_mask = inputs["padding_mask"].astype(bool)
    assert not padding_mask.all(), "the test sentences should need padding"
    expected = model(inputs, training=False)
    as_int = {**inputs, "padding_mask": padding_mask.astype("int32")}
    np.testing.assert_allclose(model(as_int, training=False), expected, rtol=1e-6)
    # Mean pooling counts real tokens only: what sits under padding is irrelevant.
    junk = {**inputs, "token_ids": np.where(padding_mask, inputs["token_ids"], 7)}
    np.testing.assert_allclose(model(junk, training=False), expected, rtol=1e-5)


def test_cls_pooling(tiny_bert_preset):
    config = tiny_config(tiny_bert_preset, pooling="cls")
    model = build_model(config)
    assert model.text_pooling == "cls"
    assert model.predict(model_inputs(config), verbose=0).shape == (len(SENTENCES), 4)
    with pytest.raises(ValueError, match="text_pooling"):
        BiMERClassifier(model.speech_backbone, model.text_backbone, 4, text_pooling="max")


def test_classifier_config_round_trip(model):
    restored = BiMERClassifier.from_config(model.get_config())
    assert isinstance(restored.speech_backbone, SpeechResNetCRNNBackbone)
    assert restored.get_config() == model.get_config()
    assert restored.count_params() == model.count_params()


def test_classifier_keras_file_round_trip(model, inputs, tmp_path):
    restored = _save_and_reload(model, tmp_path)
    assert isinstance(restored, BiMERClassifier)
    np.testing.assert_allclose(
        restored.predict(inputs, verbose=0), model.predict(inputs, verbose=0), atol=1e-6
    )


def _fit_one_epoch(model, inputs):
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    labels = np.arange(len(SENTENCES)) % 4
    history = model.fit(inputs, labels, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def _snapshot(layer):
    return [np.array(weight) for weight in layer.trainable_weights]


def _changed(before, layer):
    return any(not np.array_equal(old, new) for old, new in zip(before, layer.trainable_weights))


def test_training_step_updates_both_branches(tiny_bert_preset):
    config = tiny_config(tiny_bert_preset)
    model = build_model(config)
    speech, text = _snapshot(model.speech_backbone), _snapshot(model.text_backbone)
    _fit_one_epoch(model, model_inputs(config))
    assert _changed(speech, model.speech_backbone)
    assert _changed(text, model.text_backbone)


def test_frozen_text_backbone_stays_fixed(tiny_bert_preset):
    config = tiny_config(tiny_bert_preset, trainable=False)
    model = build_model(config)
    assert not model.text_backbone.trainable
    assert model.text_backbone.trainable_weights == []
    text = [np.array(weight) for weight in model.text_backbone.weights]
    speech = _snapshot(model.speech_backbone)
    _fit_one_epoch(model, model_inputs(config))
    assert _changed(speech, model.speech_backbone)
    for old, new in zip(text, model.text_backbone.weights):
        np.testing.assert_array_equal(old, new)


# --- build_model errors ----------------------------------------------------


@pytest.mark.parametrize(
    "section, key, valid",
    [("model", "type", "bimer"), ("model.speech", "type", "resnet_crnn_at")],
)
def test_unknown_model_types_are_input_errors(config, section, key, valid):
    bad = tiny_config(config.text.preset)
    target = bad.model if section == "model" else bad.model.speech
    setattr(target, key, "nonesuch")
    with pytest.raises(InputError, match=rf"{section}\.{key} 'nonesuch'.*{valid}"):
        build_model(bad)


def test_missing_text_preset_is_input_error(tmp_path):
    config = tiny_config(str(tmp_path / "no_such_preset"))
    with pytest.raises(InputError, match="text.preset"):
        build_model(config)
    with pytest.raises(InputError, match="text.preset"):
        build_text_preprocessor(config)


# --- the real offline text encoder -----------------------------------------


def test_build_model_with_offline_minilm():
    config = tiny_config("minilm-offline")
    model = build_model(config)
    assert model.text_backbone.hidden_dim == 384
    probabilities = model.predict(model_inputs(config), verbose=0)
    assert probabilities.shape == (len(SENTENCES), len(config.data.labels))
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-5)
