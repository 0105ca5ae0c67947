"""A 2D residual block for spectrogram CNNs."""

from __future__ import annotations

import math

import keras


@keras.saving.register_keras_serializable(package="bimer_tf")
class ResidualBlock(keras.layers.Layer):
    """A basic ResNet block: two 3x3 convolutions and a shortcut.

    `conv3x3(strides) -> BN -> LeakyReLU -> conv3x3 -> BN`, added to the
    shortcut, then a final LeakyReLU. The shortcut is the identity when the
    block keeps the shape of its input; when it downsamples (`strides` != 1)
    or changes the channel count, it is a 1x1 convolution with batch
    normalization (a "projection shortcut"), created only then.

    Convolutions carry no bias because batch normalization follows each one.

    Args:
        filters: int. Output channels of both 3x3 convolutions.
        strides: int or tuple of 2 ints. Stride of the first convolution (and
            of the projection shortcut). Defaults to `1`.
        negative_slope: float. Slope of the LeakyReLU activations for negative
            inputs. Defaults to `0.01`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`,
            including `name` and `dtype`.

    Example:
    ```python
    block = ResidualBlock(filters=32, strides=2)
    block(np.zeros((2, 100, 64, 16))).shape  # (2, 50, 32, 32)
    ```
    """

    def __init__(self, filters, strides=1, negative_slope=0.01, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.strides = strides
        self.negative_slope = negative_slope

    def _stride_pair(self):
        if isinstance(self.strides, int):
            return (self.strides, self.strides)
        return tuple(self.strides)

    def build(self, input_shape):
        # Sublayers are made here, not in `__init__`, because whether the
        # shortcut needs a projection depends on the input's channel count.
        def conv(kernel_size, strides, name):
            return keras.layers.Conv2D(
                self.filters,
                kernel_size,
                strides=strides,
                padding="same",
                use_bias=False,
                dtype=self.dtype_policy,
                name=name,
            )

        def norm(name):
            # momentum 0.9 (not Keras' 0.99): the moving statistics must settle
            # within the few hundred steps of a small corpus.
            return keras.layers.BatchNormalization(
                momentum=0.9, dtype=self.dtype_policy, name=name
            )

        output_shape = self.compute_output_shape(input_shape)
        self.conv1 = conv(3, self.strides, "conv1")
        self.conv1.build(input_shape)
        self.norm1 = norm("norm1")
        self.norm1.build(output_shape)
        self.activation1 = keras.layers.LeakyReLU(
            self.negative_slope, dtype=self.dtype_policy, name="activation1"
        )
        self.conv2 = conv(3, 1, "conv2")
        self.conv2.build(output_shape)
        self.norm2 = norm("norm2")
        self.norm2.build(output_shape)
        self.residual_add = keras.layers.Add(dtype=self.dtype_policy, name="residual_add")
        self.activation2 = keras.layers.LeakyReLU(
            self.negative_slope, dtype=self.dtype_policy, name="activation2"
        )

        needs_projection = self._stride_pair() != (1, 1) or input_shape[-1] != self.filters
        if needs_projection:
            # Stride 1 on a subsampled input: the same values as a strided 1x1
            # convolution, without TF 2.21's oneDNN crash in the gradient of
            # strided 1x1 convolutions on some input sizes (e.g. 126 frames).
            self.shortcut_conv = conv(1, 1, "shortcut_conv")
            self.shortcut_conv.build(input_shape)
            self.shortcut_norm = norm("shortcut_norm")
            self.shortcut_norm.build(output_shape)
        else:
            self.shortcut_conv = None
            self.shortcut_norm = None
        self.built = True

    def call(self, inputs, training=None):
        x = self.conv1(inputs)
        x = self.norm1(x, training=training)
        x = self.activation1(x)
        x = self.conv2(x)
        x = self.norm2(x, training=training)
        shortcut = inputs
        if self.shortcut_conv is not None:
            stride_rows, stride_cols = self._stride_pair()
            shortcut = self.shortcut_conv(inputs[:, ::stride_rows, ::stride_cols, :])
            shortcut = self.shortcut_norm(shortcut, training=training)
        return self.activation2(self.residual_add([x, shortcut]))

    def compute_output_shape(self, input_shape):
        # "same" padding: each spatial size becomes ceil(size / stride).
        stride_rows, stride_cols = self._stride_pair()
        batch, rows, cols, _ = input_shape
        rows = None if rows is None else math.ceil(rows / stride_rows)
        cols = None if cols is None else math.ceil(cols / stride_cols)
        return (batch, rows, cols, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "strides": self.strides,
                "negative_slope": self.negative_slope,
            }
        )
        return config
