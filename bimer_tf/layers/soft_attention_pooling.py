"""Soft (additive) attention pooling of a sequence into one vector."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="bimer_tf")
class SoftAttentionPooling(keras.layers.Layer):
    """Pools `[batch, time, dim]` into `[batch, dim]` with learned attention.

    Each step `h_t` gets a score `v^T tanh(W h_t + b)`; a softmax over time
    turns the scores into weights, and the output is the weighted sum of the
    steps. Masked steps (a Keras mask, or `mask=` passed to the call) get no
    weight. The softmax runs in float32 so that the large negative score
    given to masked steps stays finite under mixed precision.

    Args:
        units: int. Size of the hidden attention projection `W`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`,
            including `name` and `dtype`.

    Call arguments:
        inputs: float tensor `[batch, time, dim]`.
        mask: optional bool tensor `[batch, time]`, True for steps to keep.
        return_attention_scores: bool. If True, also return the attention
            weights `[batch, time]` (float32, summing to 1 over time).

    Example:
    ```python
    pooling = SoftAttentionPooling(units=16)
    pooled, weights = pooling(
        np.ones((2, 5, 8)), return_attention_scores=True
    )  # shapes (2, 8) and (2, 5)
    ```
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.supports_masking = True

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        self.projection_kernel = self.add_weight(
            name="projection_kernel",
            shape=(hidden_dim, self.units),
            initializer="glorot_uniform",
        )
        self.projection_bias = self.add_weight(
            name="projection_bias", shape=(self.units,), initializer="zeros"
        )
        self.score_vector = self.add_weight(
            name="score_vector", shape=(self.units,), initializer="glorot_uniform"
        )
        self.built = True

    def call(self, inputs, mask=None, return_attention_scores=False):
        hidden = ops.tanh(ops.matmul(inputs, self.projection_kernel) + self.projection_bias)
        scores = ops.cast(ops.matmul(hidden, self.score_vector), "float32")
        if mask is not None:
            scores = ops.where(ops.cast(mask, "bool"), scores, -1e9)
        weights = ops.softmax(scores, axis=-1)
        pooled = ops.einsum("bt,btd->bd", ops.cast(weights, inputs.dtype), inputs)
        if return_attention_scores:
            return pooled, weights
        return pooled

    def compute_mask(self, inputs, mask=None):
        # The time axis is pooled away, so no mask goes further.
        return None

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units})
        return config


@keras.saving.register_keras_serializable(package="bimer_tf")
class AttentiveStatisticsPooling(SoftAttentionPooling):
    """Pools `[batch, time, dim]` into `[batch, 2 * dim]`: attention-weighted mean, then std.

    Attentive statistics pooling (Okabe et al., Interspeech 2018): the
    weights of `SoftAttentionPooling` give both the weighted mean and the
    weighted standard deviation `sqrt(sum_t w_t h_t^2 - mean^2)`, so the
    model can both choose the steps that matter and keep how much the states
    vary over them. Masks and `return_attention_scores` work as in the parent.

    Args:
        units: int. Size of the hidden attention projection.
        epsilon: float. Variance floor, so the gradient of the std stays
            finite. Defaults to `1e-6`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`.
    """

    def __init__(self, units, epsilon=1e-6, **kwargs):
        super().__init__(units, **kwargs)
        self.epsilon = epsilon

    def call(self, inputs, mask=None, return_attention_scores=False):
        mean, weights = super().call(inputs, mask=mask, return_attention_scores=True)
        features = ops.cast(inputs, "float32")
        second_moment = ops.einsum("bt,btd->bd", weights, ops.square(features))
        variance = ops.maximum(second_moment - ops.square(ops.cast(mean, "float32")), 0.0)
        std = ops.cast(ops.sqrt(variance + self.epsilon), inputs.dtype)
        pooled = ops.concatenate([mean, std], axis=-1)
        if return_attention_scores:
            return pooled, weights
        return pooled

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
