import keras
import numpy as np
import tensorflow as tf


def centered_power_spectrogram(waveforms, n_fft: int, hop_length: int):
    """[batch, samples] -> [batch, 1 + samples // hop_length, n_fft // 2 + 1] power.

    A centred (reflect-padded) STFT with a periodic Hann window, as librosa
    and Whisper compute it; shared by the log-mel front ends.
    """
    waveforms = tf.convert_to_tensor(waveforms, tf.float32)
    pad = n_fft // 2
    padded = tf.pad(waveforms, [[0, 0], [pad, pad]], mode="REFLECT")
    stft = tf.signal.stft(
        padded,
        frame_length=n_fft,
        frame_step=hop_length,
        fft_length=n_fft,
        window_fn=tf.signal.hann_window,
        pad_end=False,
    )
    return tf.math.square(tf.math.real(stft)) + tf.math.square(tf.math.imag(stft))


@keras.saving.register_keras_serializable(package="bimer_tf")
class LogMelSpectrogram(keras.layers.Layer):
    """Batched waveforms -> log-mel "images" in [0, 1], time first.

    Computes what the BiMER paper's librosa pipeline computed, in-graph so that
    the input pipeline and the serving graph run the same ops: a centred
    (reflect-padded) Hann STFT, power spectrum, an HTK mel filterbank built by
    `librosa.filters.mel(htk=True)`, then decibels relative to the utterance's
    loudest bin, clipped at `-top_db` and scaled to [0, 1]. Zero padding maps to
    0, so padded frames look like silence.

    With `chroma=True` a 12-bin chromagram of the same power spectrum is
    appended after the mel bands (the MM-EMOR mel + chromagram image): a
    constant `librosa.filters.chroma` filterbank, each frame divided by its
    largest bin as `librosa.feature.chroma_stft` does (`norm=inf`, tuning 0),
    so values lie in [0, 1]; frames of exact zeros (padding) stay 0.

    With `channels=3` the image (mel and, if present, chroma bins) is repeated
    over 3 channels (`channel_mode="repeat"`) or coloured with the viridis
    colormap (`"viridis"`, the paper's rendering) for ImageNet backbones.

    Args:
        sample_rate: int. Sampling rate of the waveforms in Hz.
        n_fft: int. FFT size and window length.
        hop_length: int. Samples between frames.
        n_mels: int. Mel bands.
        fmin: float. Lowest mel filter edge in Hz.
        fmax: float or None. Highest mel filter edge; None is `sample_rate / 2`.
        top_db: float. Dynamic range kept below the loudest bin.
        channels: int. 1 or 3.
        channel_mode: str. "repeat" or "viridis" (only used when `channels=3`).
        chroma: bool. Append 12 chroma bins after the mel bands. Defaults to
            `False`.

    Call arguments:
        waveforms: float32 tensor [batch, samples] in [-1, 1].

    Returns:
        float32 tensor [batch, 1 + samples // hop_length, num_bins, channels],
        where `num_bins` is `n_mels`, plus 12 with `chroma=True`.
    """

    # Chroma bins appended with `chroma=True` (one per pitch class).
    CHROMA_BINS = 12

    def __init__(
        self,
        sample_rate=16000,
        n_fft=1024,
        hop_length=512,
        n_mels=128,
        fmin=0.0,
        fmax=None,
        top_db=80.0,
        channels=1,
        channel_mode="repeat",
        chroma=False,
        **kwargs,
    ):
        # Features stay float32 under a mixed-precision policy: dB scaling
        # of power spectra needs the range.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.fmin = fmin
        self.fmax = fmax
        self.top_db = top_db
        self.channels = channels
        self.channel_mode = channel_mode
        self.chroma = chroma
        self.supports_masking = False

    def build(self, input_shape):
        import librosa

        # [n_fft // 2 + 1, n_mels]: constant, derived from the arguments.
        mel = librosa.filters.mel(
            sr=self.sample_rate,
            n_fft=self.n_fft,
            n_mels=self.n_mels,
            fmin=self.fmin,
            fmax=self.fmax,
            htk=True,
        )
        self._mel_matrix = tf.constant(mel.T, dtype=tf.float32)
        if self.chroma:
            # [n_fft // 2 + 1, 12]: the filterbank `chroma_stft` uses at tuning 0.
            chroma = librosa.filters.chroma(
                sr=self.sample_rate, n_fft=self.n_fft, n_chroma=self.CHROMA_BINS
            )
            self._chroma_matrix = tf.constant(chroma.T, dtype=tf.float32)
        if self.channels == 3 and self.channel_mode == "viridis":
            from matplotlib import colormaps

            lut = colormaps["viridis"](np.linspace(0.0, 1.0, 256))[:, :3]
            self._viridis = tf.constant(lut, dtype=tf.float32)
        self.built = True

    def call(self, waveforms):
        power = centered_power_spectrogram(waveforms, self.n_fft, self.hop_length)
        mel = tf.tensordot(power, self._mel_matrix, axes=1)
        db = 10.0 * tf.math.log(tf.maximum(mel, 1e-10)) / tf.math.log(10.0)
        db = db - tf.reduce_max(db, axis=[1, 2], keepdims=True)
        image = (tf.maximum(db, -self.top_db) + self.top_db) / self.top_db
        if self.chroma:
            chroma = tf.tensordot(power, self._chroma_matrix, axes=1)
            # librosa leaves frames whose largest bin is below float32's
            # smallest normal number undivided; they are (near) zero.
            peak = tf.reduce_max(chroma, axis=-1, keepdims=True)
            tiny = np.finfo(np.float32).tiny
            chroma = chroma / tf.where(peak < tiny, tf.ones_like(peak), peak)
            image = tf.concat([image, chroma], axis=-1)
        image = image[..., tf.newaxis]
        if self.channels == 3:
            if self.channel_mode == "viridis":
                index = tf.cast(tf.round(image[..., 0] * 255.0), tf.int32)
                image = tf.gather(self._viridis, index)
            else:
                image = tf.tile(image, [1, 1, 1, 3])
        return image

    @property
    def num_bins(self):
        """Frequency bins of the output: mel bands, then chroma bins if any."""
        return self.n_mels + (self.CHROMA_BINS if self.chroma else 0)

    def num_frames(self, num_samples):
        """Frames produced for `num_samples` samples (centred STFT)."""
        return 1 + num_samples // self.hop_length

    def compute_output_shape(self, input_shape):
        batch, samples = input_shape
        frames = None if samples is None else self.num_frames(samples)
        return (batch, frames, self.num_bins, self.channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sample_rate": self.sample_rate,
                "n_fft": self.n_fft,
                "hop_length": self.hop_length,
                "n_mels": self.n_mels,
                "fmin": self.fmin,
                "fmax": self.fmax,
                "top_db": self.top_db,
                "channels": self.channels,
                "channel_mode": self.channel_mode,
                "chroma": self.chroma,
            }
        )
        return config
