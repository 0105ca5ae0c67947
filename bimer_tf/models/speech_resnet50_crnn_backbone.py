"""ResNet50-CRNN+AT: the BiMER speech branch on an ImageNet ResNet50."""

from __future__ import annotations

import keras
import keras_hub
from keras import ops

from bimer_tf.layers import ChannelSpatialAttention
from bimer_tf.pretrained.imagenet_weights import resolve_imagenet_weights, set_batch_norm_momentum

# Per-channel means (B, G, R) of ImageNet that the "caffe" preprocessing of
# `keras.applications.resnet50.preprocess_input` subtracts.
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="bimer_tf")
class CaffeImagePreprocessing(keras.layers.Layer):
    """RGB images in [0, 1] -> the input that ImageNet ResNet50 weights expect.

    `keras.applications.resnet50.preprocess_input(255 * images)`: scaled to
    [0, 255], RGB turned into BGR, and ImageNet's per-channel mean
    subtracted. The layer has no weights.

    Args:
        **kwargs: other keyword arguments passed to `keras.layers.Layer`,
            including `name` and `dtype`.
    """

    def call(self, images):
        bgr = ops.flip(ops.cast(images, self.compute_dtype) * 255.0, axis=-1)
        return bgr - ops.convert_to_tensor(IMAGENET_BGR_MEAN, dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="bimer_tf")
class SpeechResNet50CRNNBackbone(keras_hub.models.Backbone):
    """ResNet50, spatial attention, a GRU and Transformer encoders.

    The BiMER ResNet50-CRNN+AT (paper Fig. 13). The 3-channel log-mel image
    `[batch, frames, n_mels, 3]` goes through `keras.applications.ResNet50`
    without its classifier (time and frequency shrink 32x, 2048 channels),
    a 3x3 convolution block down to `conv_filters` channels (convolution,
    batch normalization, ReLU) and `ChannelSpatialAttention`. The map
    `[batch, frames', mels', conv_filters]` is read as a sequence over time,
    each step the flattened `mels' * conv_filters` features; a GRU and
    `transformer_layers` Transformer encoder layers model it
    (`sequence_output`), and average pooling over time, dropout and a dense
    ReLU layer give `pooled_output` (`feature_dim`, 512 in the paper). The
    classifier belongs to the task head.

    `frames` may vary between batches (the input shape is
    `(None, n_mels, 3)`); ResNet50 needs at least 32 frames and 32 bins.

    Pretrained weights: `weights="imagenet"` (the Keras cache or a download)
    or the path of a no-top ResNet50 weights file, resolved by
    `resolve_imagenet_weights`. Such weights expect images scaled the way
    ImageNet was: with `imagenet_preprocessing` (on by default exactly when
    `weights` is given) the [0, 1] image is mapped in-model by
    `CaffeImagePreprocessing`, i.e. `resnet50.preprocess_input(255 * x)`;
    random initial weights take the [0, 1] image as it is.

    The pretrained weights only initialise the model. `get_config()` records
    `weights=None` (and the resolved `imagenet_preprocessing`): a model
    rebuilt from its config, as `keras.saving.load_model` does, never looks
    for ImageNet files or the network, and loading a `.keras` file restores
    the saved (trained) weights of the nested ResNet50.

    The nested ResNet50 follows the global dtype policy
    (`keras.applications` takes no `dtype`).

    Args:
        conv_filters: int. Channels of the convolution block after ResNet50.
        gru_units: int. GRU units; `sequence_output` is this wide.
        transformer_heads: int. Attention heads per Transformer layer; must
            divide `gru_units`.
        transformer_intermediate_dim: int. Width of the Transformer
            feedforward layers.
        transformer_layers: int. Number of Transformer encoder layers.
        dropout: float. Dropout of the Transformer layers and before the
            feature projection.
        feature_dim: int. Size of `pooled_output`.
        weights: `None`, `"none"`, `"imagenet"` or the path of a `.h5` /
            `.weights.h5` file with no-top ResNet50 weights.
        imagenet_preprocessing: bool or `None`. Map the [0, 1] image to
            ImageNet's "caffe" input scale inside the model; `None` means
            "when `weights` is given".
        n_mels: int. Frequency bins of the input.
        channels: int. Channels of the input; ResNet50 needs 3.
        dtype: string or `keras.DTypePolicy`. The dtype of the layers'
            computations and weights; `None` uses the global policy.
        **kwargs: other keyword arguments passed to `keras.Model`, e.g. `name`.

    Outputs: a dict with `"sequence_output"` `[batch, frames', gru_units]`
    and `"pooled_output"` `[batch, feature_dim]`.

    Example:
    ```python
    backbone = SpeechResNet50CRNNBackbone(
        conv_filters=16, gru_units=16, transformer_heads=2,
        transformer_intermediate_dim=32, feature_dim=32, n_mels=64,
    )
    backbone(np.zeros((2, 96, 64, 3)))["pooled_output"].shape  # (2, 32)
    ```
    """

    def __init__(
        self,
        conv_filters=256,
        gru_units=256,
        transformer_heads=8,
        transformer_intermediate_dim=1024,
        transformer_layers=1,
        dropout=0.3,
        feature_dim=512,
        weights=None,
        imagenet_preprocessing=None,
        n_mels=128,
        channels=3,
        dtype=None,
        **kwargs,
    ):
        if channels != 3:
            raise ValueError(
                f"SpeechResNet50CRNNBackbone needs a 3-channel image, got channels={channels}; "
                "set audio.channels=3"
            )
        if n_mels < 32:
            raise ValueError(
                f"ResNet50 needs at least 32 frequency bins, got n_mels={n_mels}; "
                "raise audio.n_mels"
            )
        if gru_units % transformer_heads != 0:
            raise ValueError(
                f"transformer_heads ({transformer_heads}) must divide gru_units "
                f"({gru_units}); change model.speech.resnet50_crnn_at.transformer_heads "
                "or gru_units"
            )
        weights_path = resolve_imagenet_weights(weights, "resnet50")
        if imagenet_preprocessing is None:
            imagenet_preprocessing = weights_path is not None

        # === Layers ===
        if imagenet_preprocessing:
            self.image_preprocessing = CaffeImagePreprocessing(
                dtype=dtype, name="image_preprocessing"
            )
        else:
            self.image_preprocessing = None
        self.image_encoder = keras.applications.ResNet50(
            include_top=False,
            weights=weights_path,
            input_shape=(None, n_mels, channels),
            name="resnet50",
        )
        set_batch_norm_momentum(self.image_encoder)
        self.reduce_conv = keras.layers.Conv2D(
            conv_filters, 3, padding="same", use_bias=False, dtype=dtype, name="reduce_conv"
        )
        self.reduce_norm = keras.layers.BatchNormalization(
            momentum=0.9, dtype=dtype, name="reduce_norm"
        )
        self.reduce_activation = keras.layers.ReLU(dtype=dtype, name="reduce_activation")
        self.spatial_attention = ChannelSpatialAttention(dtype=dtype, name="spatial_attention")
        reduced_mels = self.image_encoder.output.shape[2]
        self.to_sequence = keras.layers.Reshape(
            (-1, reduced_mels * conv_filters), dtype=dtype, name="to_sequence"
        )
        self.gru = keras.layers.GRU(gru_units, return_sequences=True, dtype=dtype, name="gru")
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
        self.time_pooling = keras.layers.GlobalAveragePooling1D(dtype=dtype, name="time_pooling")
        self.feature_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="feature_dropout")
        self.feature_dense = keras.layers.Dense(
            feature_dim, activation="relu", dtype=dtype, name="feature_dense"
        )

        # === Functional Model ===
        log_mel = keras.Input(shape=(None, n_mels, channels), name="log_mel")
        x = log_mel
        if self.image_preprocessing is not None:
            x = self.image_preprocessing(x)
        x = self.image_encoder(x)
        x = self.reduce_activation(self.reduce_norm(self.reduce_conv(x)))
        x = self.spatial_attention(x)
        x = self.to_sequence(x)
        x = self.gru(x)
        for encoder in self.transformer_encoders:
            x = encoder(x)
        sequence_output = x
        pooled = self.time_pooling(sequence_output)
        pooled_output = self.feature_dense(self.feature_dropout(pooled))
        super().__init__(
            inputs=log_mel,
            outputs={"sequence_output": sequence_output, "pooled_output": pooled_output},
            dtype=dtype,
            **kwargs,
        )

        # === Config ===
        self.conv_filters = conv_filters
        self.gru_units = gru_units
        self.transformer_heads = transformer_heads
        self.transformer_intermediate_dim = transformer_intermediate_dim
        self.transformer_layers = transformer_layers
        self.dropout = dropout
        self.feature_dim = feature_dim
        # Not `self.weights`: that is every variable of the model.
        self.initial_weights = weights
        self.imagenet_preprocessing = bool(imagenet_preprocessing)
        self.n_mels = n_mels
        self.channels = channels

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "conv_filters": self.conv_filters,
                "gru_units": self.gru_units,
                "transformer_heads": self.transformer_heads,
                "transformer_intermediate_dim": self.transformer_intermediate_dim,
                "transformer_layers": self.transformer_layers,
                "dropout": self.dropout,
                "feature_dim": self.feature_dim,
                # The weights travel with the saved model, not in its config.
                "weights": None,
                "imagenet_preprocessing": self.imagenet_preprocessing,
                "n_mels": self.n_mels,
                "channels": self.channels,
            }
        )
        return config
