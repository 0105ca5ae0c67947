"""Models, and building them from an `ExperimentConfig`.

One registry, three axes: `config.model.type` picks the task (which branches
are combined and how), `config.model.speech.type` the speech backbone and
`config.model.text.type` the text backbone. A new model is one builder
function added to `TASK_BUILDERS`, `SPEECH_BACKBONE_BUILDERS` or
`TEXT_BACKBONES`; a new speech backbone also gets its config section in
`bimer_tf.config.SpeechModelConfig`, named like its builder's key.
"""

from __future__ import annotations

import dataclasses

import keras
import keras_hub

from bimer_tf.errors import InputError
from bimer_tf.models.bimer_classifier import BiMERClassifier
from bimer_tf.pretrained.imagenet_weights import resolve_imagenet_weights
from bimer_tf.models.mm_emor_classifier import MMEMORClassifier
from bimer_tf.pretrained.text_presets import resolve_text_preset
from bimer_tf.models.ser_classifier import SERClassifier
from bimer_tf.models.speech_resnet_crnn_backbone import SpeechResNetCRNNBackbone
from bimer_tf.models.speech_mobilenet_backbone import SpeechMobileNetBackbone
from bimer_tf.models.speech_resnet50_crnn_backbone import SpeechResNet50CRNNBackbone
from bimer_tf.models.speech_resnet_cnn_backbone import SpeechResNetCNNBackbone
from bimer_tf.models.speech_whisper_backbone import SpeechWhisperBackbone
from bimer_tf.models.ter_classifier import TERClassifier


def _lookup(registry: dict, key: str, config_key: str):
    if key not in registry:
        raise InputError(
            f"unknown {config_key} '{key}'; valid values: {', '.join(sorted(registry))}"
        )
    return registry[key]


def _frequency_bins(config) -> int:
    """Bins of the log-mel image: mels, plus 12 chroma bins when `audio.chroma`."""
    return config.audio.n_mels + (12 if config.audio.chroma else 0)


# --- speech backbones --------------------------------------------------------
# Each builder passes its section of `config.model.speech` (named after the
# type) as keyword arguments; the input shape comes from `config.audio`.


def _section(config) -> dict:
    """The fields of the selected speech backbone's config section."""
    return dataclasses.asdict(config.model.speech.selected())


def _resnet_cnn_backbone(config) -> keras.Model:
    return SpeechResNetCNNBackbone(
        **_section(config), n_mels=_frequency_bins(config), channels=config.audio.channels, name="speech_backbone"
    )


def _resnet_crnn_at_backbone(config) -> keras.Model:
    return SpeechResNetCRNNBackbone(
        **_section(config), n_mels=_frequency_bins(config), channels=config.audio.channels, name="speech_backbone"
    )


def _resnet50_crnn_at_backbone(config) -> keras.Model:
    section = _section(config)
    section["weights"] = resolve_imagenet_weights(section["weights"], "resnet50")
    return SpeechResNet50CRNNBackbone(
        **section, n_mels=_frequency_bins(config), channels=config.audio.channels, name="speech_backbone"
    )


def _mobilenet_backbone(config) -> keras.Model:
    section = _section(config)
    section["weights"] = resolve_imagenet_weights(section["weights"], "mobilenet", alpha=section["alpha"])
    return SpeechMobileNetBackbone(
        **section, n_mels=_frequency_bins(config), channels=config.audio.channels, name="speech_backbone"
    )


def _whisper_backbone(config) -> keras.Model:
    from bimer_tf.pretrained.whisper_branch import whisper_encoder_parts

    section = _section(config)
    layer_sum = section.pop("layer_sum")
    bottom, top, hidden_dim = whisper_encoder_parts(
        section.pop("source"), section.pop("layers"), section.pop("trainable_layers"), layer_sum
    )
    num_states = bottom.output.shape[2] if layer_sum else 0  # the stacked states the front end caches
    return SpeechWhisperBackbone(
        hidden_dim=hidden_dim, top_encoder=top, num_states=num_states, **section, name="speech_backbone"
    )


# config.model.speech.type -> builder(config) returning a speech backbone.
SPEECH_BACKBONE_BUILDERS = {
    "resnet_cnn": _resnet_cnn_backbone,
    "resnet_crnn_at": _resnet_crnn_at_backbone,
    "resnet50_crnn_at": _resnet50_crnn_at_backbone,
    "mobilenet": _mobilenet_backbone,
    "whisper": _whisper_backbone,
}


def build_speech_backbone(config) -> keras.Model:
    """The speech backbone named by `config.model.speech.type`."""
    builder = _lookup(SPEECH_BACKBONE_BUILDERS, config.model.speech.type, "model.speech.type")
    return builder(config)


# --- text backbones ----------------------------------------------------------

# config.model.text.type -> (keras-hub backbone class, its classifier preprocessor class).
TEXT_BACKBONES = {
    "bert": (keras_hub.models.BertBackbone, keras_hub.models.BertTextClassifierPreprocessor),
    "roberta": (keras_hub.models.RobertaBackbone, keras_hub.models.RobertaTextClassifierPreprocessor),
}


def _text_load_error(config, what: str, error: Exception) -> InputError:
    kind = config.model.text.type
    remedy = (
        "use 'minilm-offline', a keras-hub BERT preset name, or a local preset folder"
        if kind == "bert"
        else "RoBERTa weights are not installed offline: a keras-hub preset such as "
        "'roberta_base_en' is downloaded once and needs the network; offline, train "
        "`--model ter_bert` (the offline MiniLM BERT) instead, or give a local preset folder"
    )
    return InputError(f"cannot load the {what} of text.preset '{config.text.preset}' ({error}); {remedy}")


def build_text_backbone(config) -> keras.Model:
    """The pretrained encoder of `config.text.preset`, (un)frozen per config."""
    backbone_class, _ = _lookup(TEXT_BACKBONES, config.model.text.type, "model.text.type")
    preset = resolve_text_preset(config.text.preset)
    try:
        backbone = backbone_class.from_preset(preset)
    except Exception as error:  # keras-hub raises many types for a missing/offline preset
        raise _text_load_error(config, f"{config.model.text.type} encoder", error) from None
    backbone.trainable = config.model.text.trainable
    return backbone


# The config settings `build_text_preprocessor` builds from.
TEXT_PREPROCESSOR_SETTINGS = ("text", "model.text.type")


def build_text_preprocessor(config):
    """The tokenizer + packer matching the text backbone: the one place it is made.

    Maps strings to the backbone's inputs (BERT: `token_ids`, `segment_ids`,
    `padding_mask`; RoBERTa: `token_ids`, `padding_mask`) of length
    `config.text.sequence_length`; runs inside tf.data and the serving graph.
    """
    _, preprocessor_class = _lookup(TEXT_BACKBONES, config.model.text.type, "model.text.type")
    preset = resolve_text_preset(config.text.preset)
    try:
        return preprocessor_class.from_preset(preset, sequence_length=config.text.sequence_length)
    except Exception as error:
        raise _text_load_error(config, "tokenizer", error) from None


# --- tasks -------------------------------------------------------------------


def _bimer(config) -> keras.Model:
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


def _mm_emor(config) -> keras.Model:
    return MMEMORClassifier(
        speech_backbone=build_speech_backbone(config),
        text_backbone=build_text_backbone(config),
        num_classes=len(config.data.labels),
        head_units=config.model.head_units,
        head_l2=config.model.head_l2,
        dropout=config.model.fusion_dropout,
        name="mm_emor_classifier",
    )


def _ser(config) -> keras.Model:
    return SERClassifier(
        speech_backbone=build_speech_backbone(config),
        num_classes=len(config.data.labels),
        dropout=config.model.classifier_dropout,
        name="ser_classifier",
    )


def _ter(config) -> keras.Model:
    return TERClassifier(
        text_backbone=build_text_backbone(config),
        num_classes=len(config.data.labels),
        text_pooling=config.model.text.pooling,
        dropout=config.model.classifier_dropout,
        name="ter_classifier",
    )


# config.model.type -> (builder(config) returning the full model, uses speech, uses text).
TASK_BUILDERS = {
    "bimer": (_bimer, True, True),
    "mm_emor": (_mm_emor, True, True),
    "ser": (_ser, True, False),
    "ter": (_ter, False, True),
}


def task_modalities(config) -> tuple[bool, bool]:
    """(needs audio, needs text) for `config.model.type`."""
    _, speech, text = _lookup(TASK_BUILDERS, config.model.type, "model.type")
    return speech, text


def build_model(config) -> keras.Model:
    """The model described by an `ExperimentConfig` (not compiled, freshly initialised).

    Training then copies in the branches `model.init` names
    (`bimer_tf.training.initialization`).
    """
    builder, _, _ = _lookup(TASK_BUILDERS, config.model.type, "model.type")
    return builder(config)


__all__ = [
    "BiMERClassifier",
    "MMEMORClassifier",
    "SERClassifier",
    "SPEECH_BACKBONE_BUILDERS",
    "SpeechResNetCRNNBackbone",
    "SpeechMobileNetBackbone",
    "SpeechResNet50CRNNBackbone",
    "SpeechResNetCNNBackbone",
    "SpeechWhisperBackbone",
    "TASK_BUILDERS",
    "TERClassifier",
    "TEXT_BACKBONES",
    "build_model",
    "build_speech_backbone",
    "build_text_backbone",
    "build_text_preprocessor",
    "task_modalities",
]
