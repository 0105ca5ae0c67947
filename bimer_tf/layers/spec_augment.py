import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="bimer_tf")
class SpecAugment(keras.layers.Layer):
    """SpecAugment masking of log-mel batches; identity unless `training=True`.

    Each example gets `num_freq_masks` frequency masks whose width is drawn
    from `freq_mask_widths` (the BiMER paper used 15, 20 or 25 mel bands) at a
    uniformly drawn position, and optionally `num_time_masks` time masks of up
    to `time_mask_max_frames` frames. Masked bins are set to 0, the level of
    silence in `LogMelSpectrogram`'s [0, 1] scale.

    Args:
        freq_mask_widths: list of int. Candidate mask widths in mel bands.
        num_freq_masks: int. Frequency masks per example.
        time_mask_max_frames: int. Largest time mask (0 disables time masking).
        num_time_masks: int. Time masks per example.
        seed: int or None. Seed of the random draws.

    Call arguments:
        features: float tensor [batch, frames, n_mels, channels].
        training: bool. Masks are applied only when True.
    """

    def __init__(
        self,
        freq_mask_widths=(15, 20, 25),
        num_freq_masks=1,
        time_mask_max_frames=0,
        num_time_masks=0,
        seed=None,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")  # match LogMelSpectrogram's features
        super().__init__(**kwargs)
        self.freq_mask_widths = list(freq_mask_widths)
        self.num_freq_masks = num_freq_masks
        self.time_mask_max_frames = time_mask_max_frames
        self.num_time_masks = num_time_masks
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _band_mask(self, batch, size, widths):
        """[batch, size] float mask, 0 inside one random band per example."""
        widths = tf.cast(widths, tf.int32)
        limit = tf.maximum(size - widths + 1, 1)
        starts = tf.cast(
            keras.random.uniform((batch,), 0.0, 1.0, seed=self.seed_generator)
            * tf.cast(limit, tf.float32),
            tf.int32,
        )
        positions = tf.range(size)[tf.newaxis, :]
        inside = (positions >= starts[:, tf.newaxis]) & (
            positions < (starts + widths)[:, tf.newaxis]
        )
        return 1.0 - tf.cast(inside, tf.float32)

    def _augment(self, features):
        shape = tf.shape(features)
        batch, frames, mels = shape[0], shape[1], shape[2]
        mask = tf.ones([batch, frames, mels], tf.float32)
        candidates = tf.constant(self.freq_mask_widths, tf.int32)
        for _ in range(self.num_freq_masks):
            choice = keras.random.randint(
                (batch,), 0, len(self.freq_mask_widths), seed=self.seed_generator
            )
            widths = tf.minimum(tf.gather(candidates, choice), mels)
            mask *= self._band_mask(batch, mels, widths)[:, tf.newaxis, :]
        if self.time_mask_max_frames > 0:
            for _ in range(self.num_time_masks):
                widths = keras.random.randint(
                    (batch,), 0, self.time_mask_max_frames + 1, seed=self.seed_generator
                )
                widths = tf.minimum(widths, frames)
                mask *= self._band_mask(batch, frames, widths)[:, :, tf.newaxis]
        return features * tf.cast(mask[..., tf.newaxis], features.dtype)

    def call(self, features, training=False):
        if not training:
            return features
        return self._augment(features)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "freq_mask_widths": self.freq_mask_widths,
                "num_freq_masks": self.num_freq_masks,
                "time_mask_max_frames": self.time_mask_max_frames,
                "num_time_masks": self.num_time_masks,
                "seed": self.seed,
            }
        )
        return config
