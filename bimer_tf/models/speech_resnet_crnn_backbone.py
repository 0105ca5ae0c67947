"""ResNet-CRNN+AT: the BiMER speech branch over log-mel spectrograms."""

from __future__ import annotations

import math

import keras
import keras_hub

from bimer_tf.layers import ResidualBlock, SoftAttentionPooling


@keras.saving.register_keras_serializable(package="bimer_tf")
class SpeechResNetCRNNBackbone(keras_hub.models.Backbone):
    """A residual CNN, a BiGRU, Transformer encoders and attention pooling.

    The log-mel "image" `[batch, frames, n_mels, channels]` goes through a
    3x3 convolution stem and one stage of `ResidualBlock`s per entry of
    `stage_widths` (the first block of each stage halves time and
    frequency). The feature map `[batch, frames', mels', width]` is read as a
    sequence over time, each step the flattened `mels' * width` features;
    a bidirectional GRU and `transformer_layers` Transformer encoder layers
    model it, soft attention pools it into one vector, and a dense layer
    projects that vector to `feature_dim` (512 in the BiMER paper).

    `frames` may vary between batches (the input shape is
    `(None, n_mels, channels)`).

    Args:
        stage_widths: list of ints. Channels of each residual stage.
        blocks_per_stage: int. Residual blocks per stage.
        gru_units: int. GRU units per direction; sequences are
            `2 * gru_units` wide after the BiGRU.
        attention_units: int. Hidden size of the soft attention pooling.
        transformer_heads: int. Attention heads per Transformer layer; must
            divide `2 * gru_units`.
        transformer_intermediate_dim: int. Width of the Transformer
            feedforward layers.
        transformer_layers: int. Number of Transformer encoder layers.
        dropout: float. Dropout of the Transformer layers and before the
            feature projection.
        feature_dim: int. Size of `pooled_output`.
        n_mels: int. Mel bands of the input.
        channels: int. Channels of the input (1 for a plain log-mel, 3 for
            an image rendering). Defaults to `1`.
        dtype: string or `keras.DTypePolicy`. The dtype of the layers'
            computations and weights; `None` uses the global policy.
        **kwargs: other keyword arguments passed to `keras.Model`, e.g. `name`.

    Outputs: a dict with `"sequence_output"` `[batch, frames', 2 * gru_units]`
    and `"pooled_output"` `[batch, feature_dim]`.

    Example:
    ```python
    backbone = SpeechResNetCRNNBackbone(
        stage_widths=[16, 32], blocks_per_stage=1, gru_units=32,
        attention_units=16, transformer_heads=4,
        transformer_intermediate_dim=64, transformer_layers=1, dropout=0.1,
        feature_dim=64, n_mels=64,
    )
    backbone(np.zeros((2, 100, 64, 1)))["pooled_output"].shape  # (2, 64)
    ```
    """

    def __init__(
        self,
        stage_widths,
        blocks_per_stage,
        gru_units,
        attention_units,
        transformer_heads,
        transformer_intermediate_dim,
        transformer_layers,
        dropout,
        feature_dim,
        n_mels,
        channels=1,
        dtype=None,
        **kwargs,
    ):
        if not stage_widths or blocks_per_stage < 1:
            raise ValueError(
                "SpeechResNetCRNNBackbone needs at least one stage and one block per "
                f"stage, got stage_widths={stage_widths}, blocks_per_stage={blocks_per_stage}"
            )
        if (2 * gru_units) % transformer_heads != 0:
            raise ValueError(
                f"transformer_heads ({transformer_heads}) must divide the BiGRU "
                f"output width 2 * gru_units ({2 * gru_units}); change "
                "model.speech.resnet_crnn_at.transformer_heads or gru_units"
            )

        # === Layers ===
        self.stem_conv = keras.layers.Conv2D(
            stage_widths[0], 3, padding="same", use_bias=False, dtype=dtype, name="stem_conv"
        )
        self.stem_norm = keras.layers.BatchNormalization(
            momentum=0.9, dtype=dtype, name="stem_norm"
        )
        self.stem_activation = keras.layers.LeakyReLU(0.01, dtype=dtype, name="stem_activation")
        self.residual_blocks = [
            ResidualBlock(
                width,
                strides=2 if block == 0 else 1,
                dtype=dtype,
                name=f"stage{stage}_block{block}",
            )
            for stage, width in enumerate(stage_widths)
            for block in range(blocks_per_stage)
        ]
        # Each stage halves the mel axis ("same" padding rounds up).
        reduced_mels = n_mels
        for _ in stage_widths:
            reduced_mels = math.ceil(reduced_mels / 2)
        self.to_sequence = keras.layers.Reshape(
            (-1, reduced_mels * stage_widths[-1]), dtype=dtype, name="to_sequence"
        )
        self.bigru = keras.layers.Bidirectional(
            keras.layers.GRU(gru_units, return_sequences=True, dtype=dtype, name="gru"),
            dtype=dtype,
            name="bigru",
        )
        self.transformer_encoders = [
            keras_hub.layers.TransformerEncoder(
                transformer_intermediate_dim,
                num_heads=transformer_heads,
                dropout=dropout,
                dtype=dtype,
                name=f"transformer_encoder_{index}",
            )
            for index in range(transformer_layers)
        ]
        self.attention_pooling = SoftAttentionPooling(
            attention_units, dtype=dtype, name="attention_pooling"
        )
        self.feature_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="feature_dropout")
        self.feature_dense = keras.layers.Dense(
            feature_dim, activation="relu", dtype=dtype, name="feature_dense"
        )

        # === Functional Model ===
        log_mel = keras.Input(shape=(None, n_mels, channels), name="log_mel")
        x = self.stem_activation(self.stem_norm(self.stem_conv(log_mel)))
        for block in self.residual_blocks:
            x = block(x)
        x = self.to_sequence(x)
        x = self.bigru(x)
        for encoder in self.transformer_encoders:
            x = encoder(x)
        sequence_output = x
        pooled = self.attention_pooling(sequence_output)
        pooled_output = self.feature_dense(self.feature_dropout(pooled))
        super().__init__(
            inputs=log_mel,
            outputs={"sequence_output": sequence_output, "pooled_output": pooled_output},
            dtype=dtype,
            **kwargs,
        )

        # === Config ===
        self.stage_widths = list(stage_widths)
        self.blocks_per_stage = blocks_per_stage
        self.gru_units = gru_units
        self.attention_units = attention_units
        self.transformer_heads = transformer_heads
        self.transformer_intermediate_dim = transformer_intermediate_dim
        self.transformer_layers = transformer_layers
        self.dropout = dropout
        self.feature_dim = feature_dim
        self.n_mels = n_mels
        self.channels = channels

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "stage_widths": self.stage_widths,
                "blocks_per_stage": self.blocks_per_stage,
                "gru_units": self.gru_units,
                "attention_units": self.attention_units,
                "transformer_heads": self.transformer_heads,
                "transformer_intermediate_dim": self.transformer_intermediate_dim,
                "transformer_layers": self.transformer_layers,
                "dropout": self.dropout,
                "feature_dim": self.feature_dim,
                "n_mels": self.n_mels,
                "channels": self.channels,
            }
        )
        return config


# Checkpoints saved before the class was renamed name it SpeechCRNNBackbone.
keras.saving.get_custom_objects()["bimer_tf>SpeechCRNNBackbone"] = SpeechResNetCRNNBackbone
