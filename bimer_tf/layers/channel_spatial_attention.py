"""Parameter-free spatial attention over a CNN feature map."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="bimer_tf")
class ChannelSpatialAttention(keras.layers.Layer):
    """Re-weights the positions of `[batch, h, w, channels]` by their energy.

    The BiMER ResNet50-CRNN+AT attention (paper Fig. 13): the channel mean
    `[batch, h, w, 1]` scores each position, a softmax over all `h * w`
    positions of an example turns the scores into weights that sum to 1, and
    every channel of the input is multiplied by its position's weight.

    The weights are multiplied by `h * w` before scaling the input, so that a
    uniform map (all scores equal) leaves the input unchanged and the feature
    scale does not depend on the map size. Without the factor every feature
    would shrink by `1 / (h * w)`, which changes with the number of frames
    (the time axis varies between batches) and would feed a GRU values near
    zero for long utterances. With it the output is at most `h * w` times the
    input at any position. The softmax subtracts each example's maximum score
    and, like the scaling, runs in float32 (also under mixed precision).

    The layer has no weights.

    Args:
        **kwargs: other keyword arguments passed to `keras.layers.Layer`,
            including `name` and `dtype`.

    Call arguments:
        inputs: float tensor `[batch, h, w, channels]`; `h` (time) may vary.
        return_attention_scores: bool. If True, also return the attention
            weights `[batch, h, w]` (float32, summing to 1 over `h * w`).

    Example:
    ```python
    attention = ChannelSpatialAttention()
    outputs, weights = attention(
        np.random.rand(2, 5, 4, 8), return_attention_scores=True
    )  # shapes (2, 5, 4, 8) and (2, 5, 4)
    ```
    """

    def call(self, inputs, return_attention_scores=False):
        # Everything in float32: the softmax over a large map and the `h * w`
        # factor keep their range under mixed precision.
        features = ops.cast(inputs, "float32")
        scores = ops.mean(features, axis=-1)  # [batch, h, w]
        # A softmax over the flattened positions, written out so that a 1 x 1
        # map (a very short input) needs no special case.
        scores = scores - ops.max(scores, axis=(1, 2), keepdims=True)
        exponentials = ops.exp(scores)
        weights = exponentials / ops.sum(exponentials, axis=(1, 2), keepdims=True)
        shape = ops.shape(weights)
        positions = ops.cast(shape[1] * shape[2], "float32")
        outputs = ops.cast(features * (weights * positions)[..., None], inputs.dtype)
        if return_attention_scores:
            return outputs, weights
        return outputs
