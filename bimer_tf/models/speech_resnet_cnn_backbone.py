"""ResNet-CNN: the plain convolutional BiMER speech model."""

from __future__ import annotations

import keras
import keras_hub

from bimer_tf.layers import ResidualBlock

# The BiMER paper's six residual blocks (Fig. 7-8): 3 -> 16 -> ... -> 512 channels.
PAPER_STAGE_WIDTHS = (16, 32, 64, 128, 256, 512)


@keras.saving.register_keras_serializable(package="bimer_tf")
class SpeechResNetCNNBackbone(keras_hub.models.Backbone):
    """Residual blocks and global average pooling over a log-mel image.

    The BiMER ResNet-CNN (paper Fig. 7-8). The log-mel "image"
    `[batch, frames, n_mels, channels]` goes straight into one
    `ResidualBlock` per entry of `stage_widths`, without a stem: each block
    is a stride-2 then a stride-1 3x3 convolution, each followed by batch
    normalization and LeakyReLU, with a 1x1 convolution + batch normalization
    shortcut (every block halves time and frequency and changes the width).
    Global average pooling of the last feature map is `pooled_output`, as
    wide as the last stage (512 in the paper).

    The paper's dropout (0.5) and dense softmax classifier are not part of
    the backbone: the task head puts them on `pooled_output`.

    `frames` may vary between batches (the input shape is
    `(None, n_mels, channels)`).

    Args:
        stage_widths: list of ints. Output channels of each residual block.
            Defaults to the paper's `[16, 32, 64, 128, 256, 512]`.
        n_mels: int. Frequency bins of the input. Defaults to `128`.
        channels: int. Channels of the input: 1 for a plain log-mel, 3 for an
            image rendering (the paper's 3 -> 16 first block). Defaults to `1`.
        dtype: string or `keras.DTypePolicy`. The dtype of the layers'
            computations and weights; `None` uses the global policy.
        **kwargs: other keyword arguments passed to `keras.Model`, e.g. `name`.

    Outputs: a dict with `"pooled_output"` `[batch, stage_widths[-1]]`.

    Example:
    ```python
    backbone = SpeechResNetCNNBackbone(stage_widths=[8, 16], n_mels=64)
    backbone(np.zeros((2, 100, 64, 1)))["pooled_output"].shape  # (2, 16)
    ```
    """

    def __init__(
        self,
        stage_widths=PAPER_STAGE_WIDTHS,
        n_mels=128,
        channels=1,
        dtype=None,
        **kwargs,
    ):
        if not stage_widths or min(stage_widths) < 1:
            raise ValueError(
                "SpeechResNetCNNBackbone needs at least one residual block of "
                f"positive width, got stage_widths={stage_widths}; set "
                "model.speech.resnet_cnn.stage_widths"
            )
        if n_mels < 1 or channels < 1:
            raise ValueError(
                f"SpeechResNetCNNBackbone needs n_mels >= 1 and channels >= 1, got "
                f"n_mels={n_mels}, channels={channels}"
            )

        # === Layers ===
        self.residual_blocks = [
            ResidualBlock(width, strides=2, dtype=dtype, name=f"block{index}")
            for index, width in enumerate(stage_widths)
        ]
        self.global_pooling = keras.layers.GlobalAveragePooling2D(
            dtype=dtype, name="global_pooling"
        )

        # === Functional Model ===
        log_mel = keras.Input(shape=(None, n_mels, channels), name="log_mel")
        x = log_mel
        for block in self.residual_blocks:
            x = block(x)
        pooled_output = self.global_pooling(x)
        super().__init__(
            inputs=log_mel,
            outputs={"pooled_output": pooled_output},
            dtype=dtype,
            **kwargs,
        )

        # === Config ===
        self.stage_widths = list(stage_widths)
        self.n_mels = n_mels
        self.channels = channels

    @property
    def feature_dim(self):
        """Size of `pooled_output`: the width of the last block."""
        return self.stage_widths[-1]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "stage_widths": self.stage_widths,
                "n_mels": self.n_mels,
                "channels": self.channels,
            }
        )
        return config
