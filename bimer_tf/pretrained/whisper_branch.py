"""Building the Whisper speech branch from `model.speech.whisper`."""

from __future__ import annotations

from bimer_tf.errors import InputError


def whisper_encoder_parts(source: str, layers: int = 0, trainable_layers: int = 0, layer_sum: bool = False):
    """(frozen lower encoder, fine-tuned top encoder or None, hidden width).

    `source`, `layers` (0: all), `trainable_layers` and `layer_sum` are the
    fields of `model.speech.whisper` of the same names; with `layer_sum` the
    lower encoder returns every hidden state up to `layers`, stacked. Each
    call loads the pretrained weights of `source` afresh, so a model built
    for one run never starts from another run's fine-tuned layers.
    """
    from bimer_tf.pretrained.whisper_encoder import (
        load_whisper_encoder,
        split_whisper_encoder,
        whisper_encoder_dims,
    )

    encoder = load_whisper_encoder(source)
    dims = whisper_encoder_dims(encoder)
    used = layers or dims["num_layers"]
    if used > dims["num_layers"]:
        raise InputError(
            f"model.speech.whisper.layers={used} but {source} has {dims['num_layers']} encoder layers"
        )
    if trainable_layers > used:
        raise InputError(
            f"model.speech.whisper.trainable_layers={trainable_layers} but {source} has "
            f"{used} encoder layers in use"
        )
    bottom, top = split_whisper_encoder(encoder, trainable_layers, used, all_states=layer_sum)
    return bottom, top, dims["hidden_dim"]
