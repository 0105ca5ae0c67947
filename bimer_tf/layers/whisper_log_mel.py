import keras
import tensorflow as tf

from bimer_tf.layers.log_mel_spectrogram import centered_power_spectrogram


@keras.saving.register_keras_serializable(package="bimer_tf")
class WhisperLogMel(keras.layers.Layer):
    """Batched 16 kHz waveforms -> Whisper's log-mel features, time first.

    Whisper's own recipe (`whisper.audio.log_mel_spectrogram`, and
    faster-whisper's `FeatureExtractor` with `padding=0`), in-graph with core
    TensorFlow ops so that it can sit in a TF Serving graph: a centred,
    reflect-padded STFT with a periodic Hann window, the last frame dropped,
    power spectrum, a Slaney mel filterbank (`librosa.filters.mel`), `log10`
    floored at 1e-10, clamped to 8 below the utterance's maximum, then
    `(x + 4) / 4`. Unlike Whisper the audio is not padded to 30 s: the
    encoder accepts clip-length input.

    Zero padding at the end of a batch row adds frames at the floor, so it
    does not move the utterance's maximum.

    Args:
        sample_rate: int. Sampling rate of the waveforms in Hz (Whisper: 16000).
        n_fft: int. FFT size and Hann window length (Whisper: 400).
        hop_length: int. Samples between frames (Whisper: 160).
        n_mels: int. Mel bands (Whisper before large-v3: 80).
        dynamic_range: float. Log10 units kept below the utterance's maximum
            (Whisper: 8.0).

    Call arguments:
        waveforms: float32 tensor [batch, samples] in [-1, 1], with
            `samples > n_fft // 2` (reflect padding needs that many).

    Returns:
        float32 tensor [batch, samples // hop_length, n_mels].
    """

    def __init__(
        self,
        sample_rate=16000,
        n_fft=400,
        hop_length=160,
        n_mels=80,
        dynamic_range=8.0,
        **kwargs,
    ):
        # Whisper features are float32 whatever the model's policy: the log of
        # power spectra needs the range; the encoder casts them on entry.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.dynamic_range = dynamic_range
        self.supports_masking = False

    def build(self, input_shape):
        import librosa

        # [n_fft // 2 + 1, n_mels], Slaney scale and norm (librosa's defaults,
        # which Whisper's mel_filters.npz was made with).
        mel = librosa.filters.mel(sr=self.sample_rate, n_fft=self.n_fft, n_mels=self.n_mels)
        self._mel_matrix = tf.constant(mel.T, dtype=tf.float32)
        self.built = True

    def call(self, waveforms):
        # Whisper drops the last frame of the centred STFT.
        power = centered_power_spectrogram(waveforms, self.n_fft, self.hop_length)[:, :-1, :]
        mel = tf.tensordot(power, self._mel_matrix, axes=1)
        log_spec = tf.math.log(tf.maximum(mel, 1e-10)) / tf.math.log(10.0)
        floor = tf.reduce_max(log_spec, axis=[1, 2], keepdims=True) - self.dynamic_range
        log_spec = tf.maximum(log_spec, floor)
        return (log_spec + 4.0) / 4.0

    def num_frames(self, num_samples):
        """Frames produced for `num_samples` samples: `num_samples // hop_length`."""
        return num_samples // self.hop_length

    def compute_output_shape(self, input_shape):
        batch, samples = input_shape
        frames = None if samples is None else self.num_frames(samples)
        return (batch, frames, self.n_mels)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sample_rate": self.sample_rate,
                "n_fft": self.n_fft,
                "hop_length": self.hop_length,
                "n_mels": self.n_mels,
                "dynamic_range": self.dynamic_range,
            }
        )
        return config
