"""One text feature from a BERT- or RoBERTa-style backbone, shared by the tasks."""

from __future__ import annotations

import keras

TEXT_POOLINGS = ("mean", "cls")


def check_text_pooling(pooling: str) -> None:
    if pooling not in TEXT_POOLINGS:
        raise ValueError(f"text_pooling must be 'mean' or 'cls', got '{pooling}'")


def freeze_unused_cls_head(text_backbone) -> None:
    """Freezes BERT's [CLS] head, which gets no gradient under mean pooling.

    Spares a "Gradients do not exist" warning on every step.
    """
    for layer in text_backbone.layers:
        if layer.name == "pooled_dense":
            layer.trainable = False


def sequence_output(outputs):
    """The token sequence of a backbone's outputs (BERT: a dict; RoBERTa: a tensor)."""
    return outputs["sequence_output"] if isinstance(outputs, dict) else outputs


def pool_text(outputs, text_inputs, pooling: str, mean_layer: keras.layers.Layer):
    """`[batch, hidden]` from a text backbone's outputs.

    `"mean"`: the mean of the token sequence over real tokens (the pooling
    sentence encoders such as MiniLM are trained with; MM-EMOR's
    GlobalAveragePooling1D). `"cls"`: BERT's `pooled_output`, or the first
    token for backbones without one (RoBERTa's `<s>`).
    """
    if pooling == "mean":
        token_mask = keras.ops.cast(text_inputs["padding_mask"], "bool")
        return mean_layer(sequence_output(outputs), mask=token_mask)
    if isinstance(outputs, dict) and "pooled_output" in outputs:
        return outputs["pooled_output"]
    return sequence_output(outputs)[:, 0, :]
