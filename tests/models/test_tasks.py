"""The task models (SER, TER, MM-EMOR), the Whisper speech backbone, and model.init."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from bimer_tf.config import ExperimentConfig, ResNetCRNNATConfig
from bimer_tf.errors import InputError
from bimer_tf.layers import StatisticsPooling
from bimer_tf.models import (
    MMEMORClassifier,
    SERClassifier,
    SpeechResNetCRNNBackbone,
    SpeechWhisperBackbone,
    TERClassifier,
    build_model,
    build_text_preprocessor,
    task_modalities,
)

N_MELS = 16
SENTENCES = ["i am so happy", "this is not good!", "why", "thank you, what a great day"]
LABELS = np.array([3, 1, 0, 3])
TINY_SPEECH = dict(
    stage_widths=[4, 8], blocks_per_stage=1, gru_units=4, attention_units=4, transformer_heads=2,
    transformer_intermediate_dim=8, transformer_layers=1, dropout=0.1, feature_dim=8,
)


def tiny_config(task: str, text_preset: str, text_type: str = "bert") -> ExperimentConfig:
    config = ExperimentConfig()
    config.model.type = task
    config.audio.n_mels = N_MELS
    config.spec_augment.freq_mask_widths = [2]  # a valid config: masks narrower than the mels
    config.text.preset = text_preset
    config.text.sequence_length = 12
    config.model.text.type = text_type
    config.model.text.feature_dim = 8
    config.model.head_units = 8
    config.model.speech.resnet_crnn_at = ResNetCRNNATConfig(**TINY_SPEECH)
    return config


def inputs_for(model, config, frames: int = 24) -> dict:
    """Real preprocessor output and random log-mels, for whatever `model` takes."""
    inputs = {}
    if "log_mel" in model.input:
        inputs["log_mel"] = np.random.default_rng(0).random((len(SENTENCES), frames, N_MELS, 1), dtype="float32")
    if "token_ids" in model.input:
        tokens = build_text_preprocessor(config)(SENTENCES)
        inputs.update({name: np.asarray(value) for name, value in tokens.items()})
    return inputs


def round_trip(model, tmp_path):
    path = tmp_path / "model.keras"
    model.save(path)
    return keras.saving.load_model(path)


def train_one_step(model, inputs) -> float:
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    return float(model.train_on_batch(inputs, LABELS))


@pytest.mark.parametrize(
    "task, expected",
    [("bimer", (True, True)), ("mm_emor", (True, True)), ("ser", (True, False)), ("ter", (False, True))],
)
def test_task_modalities(task, expected):
    config = ExperimentConfig()
    config.model.type = task
    assert task_modalities(config) == expected


def test_ser_classifier(tiny_bert_preset, tmp_path):
    config = tiny_config("ser", tiny_bert_preset)
    config.model.classifier_dropout = 0.5
    model = build_model(config)
    assert isinstance(model, SERClassifier) and isinstance(model.speech_backbone, SpeechResNetCRNNBackbone)
    assert list(model.input) == ["log_mel"]
    inputs = inputs_for(model, config)
    probabilities = model.predict(inputs, verbose=0)
    assert probabilities.shape == (4, 4) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)
    restored = round_trip(model, tmp_path)
    assert isinstance(restored, SERClassifier) and restored.dropout == 0.5
    np.testing.assert_allclose(restored.predict(inputs, verbose=0), probabilities, atol=1e-6)
    assert np.isfinite(train_one_step(model, inputs))


@pytest.mark.parametrize("text_type", ["bert", "roberta"])
@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_ter_classifier(text_type, pooling, tiny_bert_preset, tiny_roberta_preset, tmp_path):
    config = tiny_config("ter", tiny_bert_preset if text_type == "bert" else tiny_roberta_preset, text_type)
    config.model.text.pooling = pooling
    model = build_model(config)
    assert isinstance(model, TERClassifier)
    expected_inputs = {"token_ids", "padding_mask"} | ({"segment_ids"} if text_type == "bert" else set())
    assert set(model.input) == expected_inputs
    inputs = inputs_for(model, config)
    probabilities = model.predict(inputs, verbose=0)
    assert probabilities.shape == (4, 4)
    restored = round_trip(model, tmp_path)
    np.testing.assert_allclose(restored.predict(inputs, verbose=0), probabilities, atol=1e-6)
    before = [np.array(w) for w in model.text_backbone.trainable_weights]
    assert np.isfinite(train_one_step(model, inputs))
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.text_backbone.trainable_weights))


def test_mm_emor_classifier_pools_text_by_average(tiny_roberta_preset, tmp_path):
    config = tiny_config("mm_emor", tiny_roberta_preset, "roberta")
    config.model.speech.type = "resnet_crnn_at"  # any speech backbone; MobileNet is tested elsewhere
    config.model.head_l2 = 0.01
    model = build_model(config)
    assert isinstance(model, MMEMORClassifier)
    assert sorted(model.input) == ["log_mel", "padding_mask", "token_ids"]
    assert tuple(model.get_layer("fusion").output.shape) == (None, TINY_SPEECH["feature_dim"] + 8)
    assert model.get_layer("head_dense").kernel_regularizer.l2 == pytest.approx(0.01)
    assert model.get_layer("head_dropout").rate == pytest.approx(config.model.fusion_dropout)
    inputs = inputs_for(model, config)
    probabilities = model.predict(inputs, verbose=0)
    # GlobalAveragePooling1D counts real tokens only.
    mask = inputs["padding_mask"].astype(bool)
    junk = {**inputs, "token_ids": np.where(mask, inputs["token_ids"], 7)}
    np.testing.assert_allclose(model.predict(junk, verbose=0), probabilities, rtol=1e-5)
    restored = round_trip(model, tmp_path)
    np.testing.assert_allclose(restored.predict(inputs, verbose=0), probabilities, atol=1e-6)
    # The L2 penalty is part of the loss.
    model(inputs, training=False)
    assert len(model.losses) == 1
    assert np.isfinite(train_one_step(model, inputs))


def test_statistics_pooling():
    x = np.random.default_rng(1).normal(size=(2, 7, 3)).astype("float32")
    pooled = StatisticsPooling()(x).numpy()
    np.testing.assert_allclose(pooled[:, :3], x.mean(axis=1), atol=1e-6)
    np.testing.assert_allclose(pooled[:, 3:], x.std(axis=1), atol=1e-3)


@pytest.fixture(scope="module")
def whisper_tiny_parts():
    from bimer_tf.pretrained.whisper_encoder import load_whisper_encoder, split_whisper_encoder

    encoder = load_whisper_encoder("whisper-tiny-offline")
    return encoder, split_whisper_encoder(encoder, 1)


@pytest.mark.parametrize("pooling", ["attention", "mean_std", "attentive_mean_std"])
def test_whisper_backbone_with_a_fine_tuned_top_layer(whisper_tiny_parts, pooling, tmp_path):
    _, (bottom, top) = whisper_tiny_parts
    backbone = SpeechWhisperBackbone(384, top_encoder=top, pooling=pooling, attention_units=4, feature_dim=8)
    model = SERClassifier(backbone, num_classes=4)
    assert list(model.input) == ["whisper_features"]
    log_mel = np.random.default_rng(2).random((4, 100, 80), dtype="float32")
    states = bottom(log_mel).numpy()
    assert states.shape == (4, 50, 384)
    inputs = {"whisper_features": states}
    probabilities = model.predict(inputs, verbose=0)
    assert probabilities.shape == (4, 4)
    restored = round_trip(model, tmp_path)
    np.testing.assert_allclose(restored.predict(inputs, verbose=0), probabilities, atol=1e-5)
    # The top encoder layer trains.
    before = [np.array(w) for w in top.trainable_weights]
    assert before and np.isfinite(train_one_step(model, inputs))
    assert any(not np.array_equal(a, b) for a, b in zip(before, top.trainable_weights))


def test_whisper_top_layer_with_time_masked_input(whisper_tiny_parts, tmp_path):
    _, (bottom, top) = whisper_tiny_parts
    config = tiny_config("ser", "minilm-offline")
    config.model.speech.type = "whisper"
    whisper = config.model.speech.whisper
    whisper.source, whisper.trainable_layers, whisper.pooling = "whisper-tiny-offline", 1, "attentive_mean_std"
    whisper.time_mask_rate, whisper.time_mask_span = 0.5, 4
    model = build_model(config)
    backbone = model.speech_backbone
    assert backbone.time_mask.rate == 0.5 and backbone.time_mask.span == 4
    states = bottom(np.random.default_rng(4).random((4, 100, 80), dtype="float32")).numpy()
    top_encoder = backbone.top_encoder
    # inference reads the states as they are; training replaces spans of them
    np.testing.assert_allclose(
        backbone(states, training=False)["sequence_output"], top_encoder(states), atol=1e-5
    )
    assert not np.allclose(backbone(states, training=True)["sequence_output"], top_encoder(states), atol=1e-3)
    inputs = {"whisper_features": states}
    probabilities = model.predict(inputs, verbose=0)
    restored = round_trip(model, tmp_path)
    assert restored.speech_backbone.time_mask_rate == 0.5
    np.testing.assert_allclose(restored.predict(inputs, verbose=0), probabilities, atol=1e-5)
    # the mask vector trains with the model
    before = np.array(backbone.time_mask.mask_embedding)
    assert np.isfinite(train_one_step(model, inputs))
    assert not np.array_equal(before, np.array(backbone.time_mask.mask_embedding))


def test_whisper_middle_layer_and_normalized_pooling(whisper_tiny_parts, tmp_path):
    from bimer_tf.pretrained.whisper_encoder import split_whisper_encoder

    encoder, _ = whisper_tiny_parts
    log_mel = np.random.default_rng(3).random((2, 60, 80), dtype="float32")
    two, _ = split_whisper_encoder(encoder, 0, num_layers=2)
    one, top = split_whisper_encoder(encoder, 1, num_layers=2)
    # The top layer of a truncated encoder ends without the final layer norm.
    np.testing.assert_allclose(top(one(log_mel)), two(log_mel), atol=1e-5)
    assert len(two.layers) < len(split_whisper_encoder(encoder, 0)[0].layers)
    backbone = SpeechWhisperBackbone(384, pooling="mean_std", normalize_pooled=True, feature_dim=8)
    model = SERClassifier(backbone, num_classes=4)
    inputs = {"whisper_features": two(log_mel).numpy()}
    restored = round_trip(model, tmp_path)
    assert restored.speech_backbone.normalize_pooled
    np.testing.assert_allclose(restored.predict(inputs, verbose=0), model.predict(inputs, verbose=0), atol=1e-6)


def test_whisper_backbone_rejects_unknown_pooling():
    with pytest.raises(ValueError, match="pooling"):
        SpeechWhisperBackbone(8, pooling="max")


def test_whisper_trainable_layers_beyond_the_encoder():
    config = tiny_config("ser", "minilm-offline")
    config.model.speech.type = "whisper"
    whisper = config.model.speech.whisper
    whisper.source = "whisper-tiny-offline"
    whisper.trainable_layers = 5
    with pytest.raises(InputError, match=r"whisper\.trainable_layers=5 but whisper-tiny-offline has 4"):
        build_model(config)
    whisper.trainable_layers = 0
    whisper.layers = 7
    with pytest.raises(InputError, match=r"whisper\.layers=7 but whisper-tiny-offline has 4"):
        build_model(config)


# --- model.init: BiMER from finished unimodal runs ---------------------------


from bimer_tf.training.initialization import initialize_from_runs  # noqa: E402


def test_bimer_starts_from_ser_and_ter_runs(tiny_bert_preset, tmp_path):
    from bimer_tf.training import BEST_CHECKPOINT

    runs = {}
    for task in ("ser", "ter"):
        model = build_model(tiny_config(task, tiny_bert_preset))
        (tmp_path / task / "checkpoints").mkdir(parents=True)
        model.save(tmp_path / task / BEST_CHECKPOINT)
        from bimer_tf.config import save_config

        save_config(tiny_config(task, tiny_bert_preset), tmp_path / task / "config.yaml")
        runs[task] = model
    config = tiny_config("bimer", tiny_bert_preset)
    config.model.init.speech = str(tmp_path / "ser")
    config.model.init.text = str(tmp_path / "ter")
    bimer = initialize_from_runs(build_model(config), config)
    pairs = ((bimer.speech_backbone, runs["ser"].speech_backbone), (bimer.text_backbone, runs["ter"].text_backbone))
    for ours, theirs in pairs:
        for a, b in zip(ours.get_weights(), theirs.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_model_init_errors(tiny_bert_preset, tmp_path):
    config = tiny_config("bimer", tiny_bert_preset)
    config.model.init.speech = str(tmp_path / "missing")
    with pytest.raises(InputError, match="model.init.speech=.*is not a finished run"):
        initialize_from_runs(build_model(config), config)
    config = tiny_config("ter", tiny_bert_preset)
    config.model.init.speech = str(tmp_path / "missing")
    with pytest.raises(InputError, match="a 'ter' model has no speech branch"):
        initialize_from_runs(build_model(config), config)
