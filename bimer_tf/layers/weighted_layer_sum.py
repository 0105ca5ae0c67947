"""A learned, softmax-weighted sum of a pretrained encoder's hidden states."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="bimer_tf")
class WeightedLayerSum(keras.layers.Layer):
    """Sums `[batch, time, layers, dim]` over its layer axis into `[batch, time, dim]`.

    The read-out of a frozen speech encoder's hidden states used by the
    SUPERB benchmark (Yang et al., 2021): one learned weight per layer,
    softmax-normalised so the sum is a convex combination, each layer's
    state first standardised over its features per frame (a layer norm
    without parameters), because the residual stream of a transformer grows
    with depth and the deepest layers would otherwise dominate whatever the
    weights say. The weights start equal. Computed in float32.

    Args:
        epsilon: float. Variance floor of the per-frame standardisation.
            Defaults to `1e-5`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`.
    """

    def __init__(self, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[2] is None:
            raise ValueError(
                f"WeightedLayerSum expects [batch, time, layers, dim] with a known layer count, got {input_shape}"
            )
        self.layer_logits = self.add_weight(
            shape=(input_shape[2],), initializer="zeros", name="layer_logits"
        )

    def layer_weights(self):
        """The softmax weights, one per layer (they sum to 1)."""
        return ops.softmax(ops.cast(self.layer_logits, "float32"))

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        mean = ops.mean(x, axis=-1, keepdims=True)
        variance = ops.mean(ops.square(x - mean), axis=-1, keepdims=True)
        x = (x - mean) * ops.rsqrt(variance + self.epsilon)
        summed = ops.einsum("btld,l->btd", x, self.layer_weights())
        return ops.cast(summed, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], input_shape[3])

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
