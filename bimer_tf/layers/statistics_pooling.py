"""Mean + standard deviation pooling of a sequence over time."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="bimer_tf")
class StatisticsPooling(keras.layers.Layer):
    """Pools `[batch, time, dim]` into `[batch, 2 * dim]`: mean, then std.

    The utterance-level statistics that frozen speech encoders are usually
    read out with (a linear probe on mean + std of Whisper encoder states).
    The standard deviation has a small floor so its gradient stays finite.

    Args:
        epsilon: float. Variance floor. Defaults to `1e-6`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`.
    """

    def __init__(self, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, inputs):
        mean = ops.mean(inputs, axis=1)
        variance = ops.mean(ops.square(inputs - mean[:, None, :]), axis=1)
        return ops.concatenate([mean, ops.sqrt(variance + self.epsilon)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
