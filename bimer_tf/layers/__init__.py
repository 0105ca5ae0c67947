"""Custom Keras layers of bimer_tf models."""

from bimer_tf.layers.channel_spatial_attention import ChannelSpatialAttention
from bimer_tf.layers.residual_block import ResidualBlock
from bimer_tf.layers.soft_attention_pooling import AttentiveStatisticsPooling, SoftAttentionPooling
from bimer_tf.layers.statistics_pooling import StatisticsPooling
from bimer_tf.layers.weighted_layer_sum import WeightedLayerSum

__all__ = ["AttentiveStatisticsPooling", "ChannelSpatialAttention", "ResidualBlock", "SoftAttentionPooling", "StatisticsPooling", "WeightedLayerSum"]
