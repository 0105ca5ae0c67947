"""Building the Whisper speech branch from a `SpeechModelConfig`."""

from __future__ import annotations

from bimer_tf.errors import InputError


def whisper_encoder_parts(speech_config):
    """(frozen lower encoder, fine-tuned top encoder or None, hidden width).

    Each call loads the pretrained weights of `whisper_source` afresh, so a
    model built for one run never starts from another run's fine-tuned layers.
    """
    from bimer_tf.models.whisper_encoder import (
        load_whisper_encoder,
        split_whisper_encoder,
        whisper_encoder_dims,
    )

    encoder = load_whisper_encoder(speech_config.whisper_source)
    dims = whisper_encoder_dims(encoder)
    used = speech_config.whisper_layers or dims["num_layers"]
    if used > dims["num_layers"]:
        raise InputError(
            f"model.speech.whisper_layers={used} but {speech_config.whisper_source} has "
            f"{dims['num_layers']} encoder layers"
        )
    if speech_config.whisper_trainable_layers > used:
        raise InputError(
            f"model.speech.whisper_trainable_layers={speech_config.whisper_trainable_layers} but "
            f"{speech_config.whisper_source} has {used} encoder layers in use"
        )
    bottom, top = split_whisper_encoder(encoder, speech_config.whisper_trainable_layers, used)
    return bottom, top, dims["hidden_dim"]
