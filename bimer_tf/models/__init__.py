"""Models, and building them from an `ExperimentConfig`.

`build_model(config)` picks a builder by `config.model.type` (the task: which
backbones are combined and how) and, for the speech branch, by
`config.model.speech.type`. A new model is one builder function added to
`MODEL_BUILDERS` or `SPEECH_BACKBONE_BUILDERS`.
"""

from __future__ import annotations

import keras
import keras_hub

from bimer_tf.errors import InputError
from bimer_tf.models.bimer_classifier import BiMERClassifier
from bimer_tf.models.presets import resolve_text_preset
from bimer_tf.models.speech_crnn_backbone import SpeechCRNNBackbone


def _crnn_backbone(config) -> keras.Model:
    speech = config.model.speech
    return SpeechCRNNBackbone(
        stage_widths=speech.stage_widths,
        blocks_per_stage=speech.blocks_per_stage,
        gru_units=speech.gru_units,
        attention_units=speech.attention_units,
        transformer_heads=speech.transformer_heads,
        transformer_intermediate_dim=speech.transformer_intermediate_dim,
        transformer_layers=speech.transformer_layers,
        dropout=speech.dropout,
        feature_dim=speech.feature_dim,
        n_mels=config.audio.n_mels,
        channels=config.audio.channels,
        name="speech_backbone",
    )


# config.model.speech.type -> builder(config) returning a speech backbone.
SPEECH_BACKBONE_BUILDERS = {"crnn": _crnn_backbone}


def _lookup(registry: dict, key: str, config_key: str):
    if key not in registry:
        raise InputError(
            f"unknown {config_key} '{key}'; valid values: {', '.join(sorted(registry))}"
        )
    return registry[key]


def build_speech_backbone(config) -> keras.Model:
    """The speech backbone named by `config.model.speech.type`."""
    builder = _lookup(SPEECH_BACKBONE_BUILDERS, config.model.speech.type, "model.speech.type")
    return builder(config)


def build_text_backbone(config) -> keras.Model:
    """The pretrained BERT-style encoder of `config.text.preset`, (un)frozen per config."""
    preset = resolve_text_preset(config.text.preset)
    try:
        backbone = keras_hub.models.BertBackbone.from_preset(preset)
    except (ValueError, OSError) as error:
        raise InputError(
            f"cannot load text.preset '{config.text.preset}' ({error}); use "
            "'minilm-offline', a keras-hub BERT preset name, or a local preset folder"
        ) from None
    backbone.trainable = config.model.text.trainable
    return backbone


def _bimer_classifier(config) -> keras.Model:
    return BiMERClassifier(
        speech_backbone=build_speech_backbone(config),
        text_backbone=build_text_backbone(config),
        num_classes=len(config.data.labels),
        text_pooling=config.model.text.pooling,
        text_dropout=config.model.text.dropout,
        text_feature_dim=config.model.text.feature_dim,
        fusion_dropout=config.model.fusion_dropout,
        name="bimer_classifier",
    )


# config.model.type -> builder(config) returning the full model.
MODEL_BUILDERS = {"bimer": _bimer_classifier}


# config.model.type -> (uses speech, uses text).
TASK_MODALITIES = {"bimer": (True, True)}


def task_modalities(config) -> tuple[bool, bool]:
    """(needs audio, needs text) for `config.model.type`."""
    return _lookup(TASK_MODALITIES, config.model.type, "model.type")


def build_model(config) -> keras.Model:
    """The model described by an `ExperimentConfig` (not compiled)."""
    builder = _lookup(MODEL_BUILDERS, config.model.type, "model.type")
    return builder(config)


def build_text_preprocessor(config) -> keras_hub.models.BertTextClassifierPreprocessor:
    """The tokenizer + packer matching the text backbone: the one place it is made.

    Maps strings to `token_ids`, `segment_ids`, `padding_mask` of length
    `config.text.sequence_length`; runs inside tf.data and the serving graph.
    """
    preset = resolve_text_preset(config.text.preset)
    try:
        return keras_hub.models.BertTextClassifierPreprocessor.from_preset(
            preset, sequence_length=config.text.sequence_length
        )
    except (ValueError, OSError) as error:
        raise InputError(
            f"cannot load the tokenizer of text.preset '{config.text.preset}' ({error}); use "
            "'minilm-offline', a keras-hub BERT preset name, or a local preset folder"
        ) from None


__all__ = [
    "BiMERClassifier",
    "MODEL_BUILDERS",
    "SPEECH_BACKBONE_BUILDERS",
    "SpeechCRNNBackbone",
    "build_model",
    "build_speech_backbone",
    "build_text_backbone",
    "build_text_preprocessor",
]
