"""Custom Keras layers of bimer_tf models."""

from bimer_tf.layers.residual_block import ResidualBlock
from bimer_tf.layers.soft_attention_pooling import SoftAttentionPooling

__all__ = ["ResidualBlock", "SoftAttentionPooling"]
