"""A pretrained Whisper encoder as a speech backbone."""

from __future__ import annotations

import keras
import keras_hub
from keras import ops

from bimer_tf.config import WHISPER_POOLINGS
from bimer_tf.layers import (
    AttentiveStatisticsPooling,
    SoftAttentionPooling,
    StatisticsPooling,
    WeightedLayerSum,
)


@keras.saving.register_keras_serializable(package="bimer_tf")
class UtteranceNormalization(keras.layers.Layer):
    """Standardises `[batch, time, dim]` over time, per utterance and feature.

    Each feature of each utterance gets mean 0 and variance 1 over its steps
    (those of `mask` when given):
    a constant offset or gain of one utterance (its speaker, microphone, room)
    is removed from every step without any statistics of other utterances, so
    a served request is normalised exactly as in training. No weights; the
    statistics are computed in float32.

    Args:
        epsilon: float. Variance floor. Defaults to `1e-5`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`.
    """

    def __init__(self, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon
        self.supports_masking = True

    def call(self, inputs, mask=None):
        x = ops.cast(inputs, "float32")
        if mask is None:
            weights = ops.ones_like(x[:, :, :1])
        else:  # statistics over the frames kept
            weights = ops.cast(mask, "float32")[:, :, None]
        count = ops.maximum(ops.sum(weights, axis=1, keepdims=True), 1.0)
        mean = ops.sum(x * weights, axis=1, keepdims=True) / count
        variance = ops.sum(ops.square(x - mean) * weights, axis=1, keepdims=True) / count
        return ops.cast((x - mean) * ops.rsqrt(variance + self.epsilon), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="bimer_tf")
class PaddingFrames(keras.layers.Layer):
    """`[batch, time, ...]` states -> `[batch, time]` bool: True where a frame is not all zeros.

    The Whisper front end with `zero_padding_states` sets the states of the
    frames that hold only a clip's zero padding to exactly zero; a real
    frame's state is never exactly zero, so this recovers which frames are
    the clip's own without a second input. No weights.
    """

    def call(self, inputs):
        axes = tuple(range(2, len(inputs.shape)))
        return ops.any(ops.not_equal(inputs, 0), axis=axes)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(inputs.shape[:2], dtype="bool")


@keras.saving.register_keras_serializable(package="bimer_tf")
class RandomFrameMask(keras.layers.Layer):
    """In training, a random `[batch, time]` mask that leaves out a share of the frames.

    Time masking for pooled sequences: the frames left out get no weight in
    the attention pooling that receives the mask, instead of entering its
    statistics as zeros. Each frame is left out with probability `rate`;
    a row that would lose every frame keeps them all. Outside training all
    frames are kept. With `valid` (`[batch, time]` bool), frames outside it
    are always left out and only valid frames are drawn from. No weights.

    Args:
        rate: float in [0, 1). Share of frames left out.
        seed: optional int, for reproducible masks.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`.
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, valid=None, training=False):
        shape = ops.shape(inputs)[:2]
        valid = ops.ones(shape, "bool") if valid is None else ops.cast(valid, "bool")
        if not training or not self.rate:
            return valid
        keep = ops.logical_and(keras.random.uniform(shape, seed=self.seed_generator) >= self.rate, valid)
        none_kept = ops.logical_not(ops.any(keep, axis=1, keepdims=True))
        return ops.where(none_kept, valid, keep)

    def compute_output_spec(self, inputs, valid=None, training=False):
        return keras.KerasTensor(inputs.shape[:2], dtype="bool")

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package="bimer_tf")
class TimeSpanMask(keras.layers.Layer):
    """In training, replaces random spans of `[batch, time, dim]` frames with a learned vector.

    SpecAugment's time masking for encoder states, as wav2vec 2.0 fine-tunes
    its transformer: each frame starts a span of `span` masked frames with
    probability `rate / span` (so about `rate` of the frames are masked,
    less where spans overlap), and a masked frame's state is replaced by
    `mask_embedding`, a vector learned with the model, rather than zeros,
    which the layers after it would read as a real state. Outside training
    the input passes unchanged, so a served model does not pay for it.

    Args:
        rate: float in [0, 1). Expected share of frames inside a span.
        span: int >= 1. Frames per span (10 frames of Whisper's encoder:
            0.2 s).
        seed: optional int, for reproducible masks.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`.
    """

    def __init__(self, rate, span=10, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"rate must lie in [0, 1), got {rate}")
        if not isinstance(span, int) or span < 1:
            raise ValueError(f"span must be an integer >= 1, got {span!r}")
        self.rate = rate
        self.span = span
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        self.mask_embedding = self.add_weight(
            shape=(input_shape[-1],), initializer="random_uniform", name="mask_embedding"
        )

    def masked_frames(self, inputs):
        """A fresh `[batch, time]` bool mask of the frames inside a span."""
        shape = ops.shape(inputs)[:2]
        starts = ops.cast(keras.random.uniform(shape, seed=self.seed_generator) < self.rate / self.span, "int32")
        started = ops.cumsum(starts, axis=1)  # spans started at or before each frame
        started_before = ops.pad(started, [[0, 0], [self.span, 0]])[:, : shape[1]]
        return started - started_before > 0  # a span started within the last `span` frames

    def call(self, inputs, training=False):
        if not training or not self.rate:
            return inputs
        masked = self.masked_frames(inputs)[:, :, None]
        return ops.where(masked, ops.cast(self.mask_embedding, inputs.dtype), inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "span": self.span, "seed": self.seed}


@keras.saving.register_keras_serializable(package="bimer_tf")
class SpeechWhisperBackbone(keras_hub.models.Backbone):
    """Whisper encoder states -> (fine-tuned top layers) -> pooled utterance feature.

    The Whisper encoder is split in two (`split_whisper_encoder`): its frozen
    lower part runs in the speech front end (`bimer_tf.pipeline.frontend.
    WhisperFrontend`: in `tf.data`, where its output is cached, and in the
    serving graph), and this backbone holds what is trained: the top
    `top_encoder` layers (none by default; in training their input states
    can be time-masked) or a learned weighted sum of all the lower
    encoder's hidden states, optionally a per-utterance
    standardisation of the states over time, then attention pooling (or mean
    + std statistics, or both: attentive statistics; optionally only over
    the clip's own frames, not its zero padding, and in training over a
    random subset of the frames), dropout and a dense ReLU projection to
    `feature_dim`.

    Its input `"whisper_features"` `[batch, steps, hidden_dim]` is the
    lower encoder's output (steps = Whisper log-mel frames // 2), or
    `[batch, steps, num_states, hidden_dim]`, every hidden state stacked.

    Args:
        hidden_dim: int. Width of the Whisper encoder states (384 tiny, 512 base).
        top_encoder: optional `keras.Model` mapping `[batch, steps,
            hidden_dim]` to the same shape: the encoder layers that are
            fine-tuned, with the encoder's final layer norm. `None` when the
            whole encoder is frozen.
        num_states: int. When > 0, the input holds that many stacked hidden
            states (the embedding and each layer in use), read out by a
            learned weighted sum (`WeightedLayerSum`); needs `top_encoder`
            to be `None`. Defaults to `0` (one state, the last layer in use).
        pooling: `"attention"` (`SoftAttentionPooling`), `"mean_std"`
            (`StatisticsPooling`) or `"attentive_mean_std"`
            (`AttentiveStatisticsPooling`). Defaults to `"attention"`.
        normalize_states: bool. Standardise the states over time, per
            utterance and feature (`UtteranceNormalization`), before pooling:
            removes one utterance's speaker and channel offsets with no
            speaker history. Needs an attention pooling (mean + std
            statistics of standardised states are the constants 0 and 1).
            Defaults to `False`.
        mask_padding: bool. Leave the frames whose states are all zeros (the
            zero padding, as the front end with `zero_padding_states` marks
            it) out of the pooling and the per-utterance normalisation.
            Needs an attention pooling. Defaults to `False`.
        frame_dropout: float. Share of the states' frames left out of the
            attention pooling in training (`RandomFrameMask`): time masking
            of the states, new each epoch even when they come from a cache.
            Needs an attention pooling. Defaults to `0.0`.
        time_mask_rate: float. In training, about this share of the frames
            entering `top_encoder` is replaced by a learned vector, in spans
            of `time_mask_span` frames (`TimeSpanMask`): SpecAugment's time
            masking where the states below come from a cache. Needs
            `top_encoder`. Defaults to `0.0`.
        time_mask_span: int. Frames per masked span. Defaults to `10`.
        normalize_pooled: bool. Batch-normalise the pooled vector, which
            puts the encoder's very unequal feature scales on one footing (a
            linear probe's standard scaler, learned). Defaults to `False`.
        attention_units: int. Hidden size of the attention pooling.
        dropout: float. Dropout before the feature projection.
        feature_dim: int. Size of `pooled_output`.
        dtype: string or `keras.DTypePolicy`.
        **kwargs: other keyword arguments passed to `keras.Model`, e.g. `name`.

    Outputs: a dict with `"sequence_output"` `[batch, steps, hidden_dim]` and
    `"pooled_output"` `[batch, feature_dim]`.
    """

    def __init__(
        self,
        hidden_dim,
        top_encoder=None,
        num_states=0,
        pooling="attention",
        normalize_states=False,
        mask_padding=False,
        frame_dropout=0.0,
        time_mask_rate=0.0,
        time_mask_span=10,
        normalize_pooled=False,
        attention_units=128,
        dropout=0.1,
        feature_dim=512,
        dtype=None,
        **kwargs,
    ):
        if pooling not in WHISPER_POOLINGS:
            raise ValueError(f"pooling must be one of {WHISPER_POOLINGS}, got '{pooling}'")
        if mask_padding and pooling == "mean_std":
            raise ValueError("mask_padding needs an attention pooling, which takes a frame mask")
        if mask_padding and top_encoder is not None:
            raise ValueError("mask_padding needs top_encoder=None: fine-tuned layers fill the zeroed frames")
        if frame_dropout and pooling == "mean_std":
            raise ValueError("frame_dropout needs an attention pooling, which takes a frame mask")
        if time_mask_rate and top_encoder is None:
            raise ValueError("time_mask_rate needs top_encoder: the masked states are the trained layers' input")
        if num_states and top_encoder is not None:
            raise ValueError("num_states needs top_encoder=None: the stacked states come from a frozen encoder")
        if normalize_states and pooling == "mean_std":
            raise ValueError(
                "normalize_states needs an attention pooling: the mean and std of states "
                "standardised per utterance are the constants 0 and 1"
            )

        # === Layers ===
        self.top_encoder = top_encoder
        self.time_mask = (
            TimeSpanMask(time_mask_rate, time_mask_span, dtype=dtype, name="time_span_mask")
            if time_mask_rate
            else None
        )
        self.layer_sum = WeightedLayerSum(dtype=dtype, name="weighted_layer_sum") if num_states else None
        self.padding_frames = PaddingFrames(dtype=dtype, name="padding_frames") if mask_padding else None
        self.frame_mask = RandomFrameMask(frame_dropout, dtype=dtype, name="frame_mask") if frame_dropout else None
        self.states_norm = (
            UtteranceNormalization(dtype=dtype, name="utterance_normalization") if normalize_states else None
        )
        if pooling == "attention":
            self.pooling_layer = SoftAttentionPooling(attention_units, dtype=dtype, name="attention_pooling")
        elif pooling == "attentive_mean_std":
            self.pooling_layer = AttentiveStatisticsPooling(
                attention_units, dtype=dtype, name="attentive_statistics_pooling"
            )
        else:
            self.pooling_layer = StatisticsPooling(dtype=dtype, name="statistics_pooling")
        self.pooled_norm = (
            keras.layers.BatchNormalization(momentum=0.9, dtype=dtype, name="pooled_norm")
            if normalize_pooled
            else None
        )
        self.feature_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="feature_dropout")
        self.feature_dense = keras.layers.Dense(
            feature_dim, activation="relu", dtype=dtype, name="feature_dense"
        )

        # === Functional Model ===
        state_shape = (None, num_states, hidden_dim) if num_states else (None, hidden_dim)
        states = keras.Input(shape=state_shape, name="whisper_features")
        if top_encoder is not None:
            sequence_output = top_encoder(self.time_mask(states) if self.time_mask is not None else states)
        elif self.layer_sum is not None:
            sequence_output = self.layer_sum(states)
        else:
            sequence_output = states
        frames = self.padding_frames(states) if self.padding_frames is not None else None
        if self.states_norm is not None:
            x = self.states_norm(sequence_output, mask=frames)
        else:
            x = sequence_output
        if self.frame_mask is not None:
            frames = self.frame_mask(x, valid=frames)
        pooled = self.pooling_layer(x, mask=frames) if frames is not None else self.pooling_layer(x)
        if self.pooled_norm is not None:
            pooled = self.pooled_norm(pooled)
        pooled_output = self.feature_dense(self.feature_dropout(pooled))
        super().__init__(
            inputs=states,
            outputs={"sequence_output": sequence_output, "pooled_output": pooled_output},
            dtype=dtype,
            **kwargs,
        )

        # === Config ===
        self.hidden_dim = hidden_dim
        self.time_mask_rate = time_mask_rate
        self.time_mask_span = time_mask_span
        self.num_states = num_states
        self.pooling = pooling
        self.normalize_states = normalize_states
        self.mask_padding = mask_padding
        self.frame_dropout = frame_dropout
        self.normalize_pooled = normalize_pooled
        self.attention_units = attention_units
        self.dropout = dropout
        self.feature_dim = feature_dim

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "top_encoder": (
                    None
                    if self.top_encoder is None
                    else keras.saving.serialize_keras_object(self.top_encoder)
                ),
                "time_mask_rate": self.time_mask_rate,
                "time_mask_span": self.time_mask_span,
                "num_states": self.num_states,
                "pooling": self.pooling,
                "normalize_states": self.normalize_states,
                "mask_padding": self.mask_padding,
                "frame_dropout": self.frame_dropout,
                "normalize_pooled": self.normalize_pooled,
                "attention_units": self.attention_units,
                "dropout": self.dropout,
                "feature_dim": self.feature_dim,
            }
        )
        return config

    def pooling_head(self) -> keras.Model:
        """Everything after `top_encoder`, as a model of the same layers (and
        weights): its output states `[batch, steps, hidden_dim]` ->
        `pooled_output`. Runs whose trained encoder layers are averaged into
        one share that encoder and keep their own pooling this way
        (`bimer_tf.serving.export.shared_encoder_ensemble`)."""
        if self.top_encoder is None:
            raise ValueError("pooling_head needs top_encoder: without trained encoder layers the whole backbone pools")
        return keras.Model(self.output["sequence_output"], self.output["pooled_output"], name=f"{self.name}_pooling")

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("top_encoder"), dict):
            config["top_encoder"] = keras.saving.deserialize_keras_object(config["top_encoder"])
        return cls(**config)
