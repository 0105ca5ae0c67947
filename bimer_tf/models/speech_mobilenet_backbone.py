"""MobileNet: the MM-EMOR speech branch over a mel + chromagram image."""

from __future__ import annotations

import keras
import keras_hub

from bimer_tf.pretrained.imagenet_weights import resolve_imagenet_weights, set_batch_norm_momentum


def reinitialize_depthwise_kernels(model: keras.Model) -> None:
    """He-initialises every depthwise kernel of `model` over its true fan-in.

    Keras' default (Glorot) initialiser counts a depthwise kernel's input
    channels in its fan-in (`kh * kw * C` instead of `kh * kw`), so a randomly
    initialised MobileNet's deep depthwise layers output about 1e-3 of their
    input's variance. In training, batch normalisation hides this; its moving
    variance, though, starts at 1 and follows at momentum 0.99, so for
    hundreds of steps the inference-mode model shrinks every feature to
    nearly nothing and gives one class for every input (see also
    `set_batch_norm_momentum`).
    """
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kernel_h, kernel_w = layer.kernel.shape[:2]
            initializer = keras.initializers.RandomNormal(stddev=(2.0 / (kernel_h * kernel_w)) ** 0.5)
            layer.kernel.assign(initializer(layer.kernel.shape, dtype=layer.kernel.dtype))


@keras.saving.register_keras_serializable(package="bimer_tf")
class SpeechMobileNetBackbone(keras_hub.models.Backbone):
    """MobileNet (v1), global average pooling and a dense projection.

    The MM-EMOR speech branch. The 3-channel image `[batch, frames, n_mels,
    3]` (with MM-EMOR's features, `LogMelSpectrogram(chroma=True)`: mel bands
    then 12 chroma bins, so `n_mels` is its `num_bins`) goes through
    `keras.applications.MobileNet` without its classifier (time and frequency
    shrink 32x, `1024 * alpha` channels). Global average pooling, dropout and
    a dense ReLU layer of `feature_dim` units give `pooled_output`; the
    MM-EMOR fusion (concatenation with the text feature, dense ReLU with L2,
    dropout, softmax) belongs to the task head.

    `frames` may vary between batches (the input shape is
    `(None, n_mels, 3)`); MobileNet needs at least 32 frames and 32 bins.

    Pretrained weights: `weights="imagenet"` (the Keras cache or a download;
    `alpha` must be 0.25, 0.5, 0.75 or 1.0, and the 224 x 224 weights are
    used since spectrograms are not square) or the path of a no-top
    MobileNet weights file of the same `alpha`, resolved by
    `resolve_imagenet_weights`. Such weights expect inputs in [-1, 1]: with
    `imagenet_preprocessing` (on by default exactly when `weights` is given)
    the [0, 1] image is rescaled in-model to `2 x - 1`, what
    `keras.applications.mobilenet.preprocess_input(255 * x)` computes; random
    initial weights take the [0, 1] image as it is, and their depthwise
    kernels are He-initialised (`reinitialize_depthwise_kernels`).

    The pretrained weights only initialise the model. `get_config()` records
    `weights=None` (and the resolved `imagenet_preprocessing`): a model
    rebuilt from its config, as `keras.saving.load_model` does, never looks
    for ImageNet files or the network, and loading a `.keras` file restores
    the saved (trained) weights of the nested MobileNet.

    The nested MobileNet follows the global dtype policy
    (`keras.applications` takes no `dtype`).

    Args:
        alpha: float. MobileNet's width multiplier.
        dropout: float. Dropout before the feature projection.
        feature_dim: int. Size of `pooled_output`.
        weights: `None`, `"none"`, `"imagenet"` or the path of a `.h5` /
            `.weights.h5` file with no-top MobileNet weights.
        imagenet_preprocessing: bool or `None`. Rescale the [0, 1] image to
            [-1, 1] inside the model; `None` means "when `weights` is given".
        n_mels: int. Frequency bins of the input (mel bands + 12 chroma bins
            for the MM-EMOR image). Defaults to `140` (128 + 12).
        channels: int. Channels of the input; MobileNet needs 3.
        dtype: string or `keras.DTypePolicy`. The dtype of the layers'
            computations and weights; `None` uses the global policy.
        **kwargs: other keyword arguments passed to `keras.Model`, e.g. `name`.

    Outputs: a dict with `"pooled_output"` `[batch, feature_dim]`.

    Example:
    ```python
    backbone = SpeechMobileNetBackbone(alpha=0.25, feature_dim=32, n_mels=76)
    backbone(np.zeros((2, 96, 76, 3)))["pooled_output"].shape  # (2, 32)
    ```
    """

    def __init__(
        self,
        alpha=1.0,
        dropout=0.3,
        feature_dim=256,
        weights=None,
        imagenet_preprocessing=None,
        n_mels=140,
        channels=3,
        dtype=None,
        **kwargs,
    ):
        if channels != 3:
            raise ValueError(
                f"SpeechMobileNetBackbone needs a 3-channel image, got channels={channels}; "
                "set audio.channels=3"
            )
        if n_mels < 32:
            raise ValueError(
                f"MobileNet needs at least 32 frequency bins, got n_mels={n_mels}; "
                "raise audio.n_mels"
            )
        if alpha <= 0:
            raise ValueError(f"alpha must be positive, got {alpha}; set model.speech.mobilenet.alpha")
        weights_path = resolve_imagenet_weights(weights, "mobilenet", alpha=alpha)
        if imagenet_preprocessing is None:
            imagenet_preprocessing = weights_path is not None

        # === Layers ===
        if imagenet_preprocessing:
            # MobileNet's "tf" preprocessing of 255 x: (255 x) / 127.5 - 1.
            self.image_preprocessing = keras.layers.Rescaling(
                2.0, offset=-1.0, dtype=dtype, name="image_preprocessing"
            )
        else:
            self.image_preprocessing = None
        self.image_encoder = keras.applications.MobileNet(
            include_top=False,
            weights=weights_path,
            alpha=alpha,
            input_shape=(None, n_mels, channels),
            name="mobilenet",
        )
        set_batch_norm_momentum(self.image_encoder)
        if weights_path is None:
            reinitialize_depthwise_kernels(self.image_encoder)
        self.global_pooling = keras.layers.GlobalAveragePooling2D(
            dtype=dtype, name="global_pooling"
        )
        self.feature_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="feature_dropout")
        self.feature_dense = keras.layers.Dense(
            feature_dim, activation="relu", dtype=dtype, name="feature_dense"
        )

        # === Functional Model ===
        log_mel = keras.Input(shape=(None, n_mels, channels), name="log_mel")
        x = log_mel
        if self.image_preprocessing is not None:
            x = self.image_preprocessing(x)
        x = self.global_pooling(self.image_encoder(x))
        pooled_output = self.feature_dense(self.feature_dropout(x))
        super().__init__(
            inputs=log_mel,
            outputs={"pooled_output": pooled_output},
            dtype=dtype,
            **kwargs,
        )

        # === Config ===
        self.alpha = alpha
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
                "alpha": self.alpha,
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
