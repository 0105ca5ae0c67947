"""The audio front end shared by the input pipeline and the serving graph.

WAV bytes -> mono waveform (`decode_wav`) -> leading/trailing silence trimmed
(`trim_silence`) -> optionally scaled to one RMS level (`normalize_loudness`)
-> cropped or padded to the configured duration (`fit_length`) -> log-mel
image (`LogMelSpectrogram`). Only core TensorFlow ops, so the exported
SavedModel runs in stock TensorFlow Serving.

Documented behaviour for unusual but valid audio: stereo (any channel count)
is averaged to mono; audio longer than `max_duration_s` after trimming keeps
its first `max_duration_s` seconds. Invalid audio (wrong sample rate, not
16-bit PCM, no samples, silent) raises `InvalidArgumentError` whose message
says what is expected.
"""

from __future__ import annotations

import tensorflow as tf

from bimer_tf.config import PAD_MODES, AudioConfig
from bimer_tf.errors import InputError
from bimer_tf.layers.log_mel_spectrogram import LogMelSpectrogram


def decode_wav(wav_bytes, sample_rate: int):
    """Scalar string of 16-bit PCM WAV bytes -> float32 mono waveform [samples]."""
    audio, rate = tf.audio.decode_wav(wav_bytes)
    tf.debugging.assert_equal(
        rate,
        tf.constant(sample_rate, tf.int32),
        message=f"audio_wav: expected {sample_rate} Hz 16-bit PCM WAV; resample the audio to {sample_rate} Hz",
    )
    tf.debugging.assert_positive(
        tf.shape(audio)[0], message="audio_wav: the WAV holds no samples"
    )
    return tf.reduce_mean(audio, axis=1)


def trim_silence(
    waveform,
    top_db: float,
    frame_length: int,
    hop_length: int,
    silence_floor_dbfs: float,
):
    """Drops leading/trailing frames quieter than `top_db` below the loudest frame.

    The rule of `librosa.effects.trim` (frame RMS in dB relative to the
    maximum), in-graph. Audio whose peak is below `silence_floor_dbfs` is
    rejected as silent rather than trimmed to nothing.
    """
    peak = tf.reduce_max(tf.abs(waveform))
    floor = tf.constant(10.0 ** (silence_floor_dbfs / 20.0), tf.float32)
    tf.debugging.assert_greater_equal(
        peak,
        floor,
        message=f"audio_wav: the audio is silent (peak below {silence_floor_dbfs:.0f} dBFS)",
    )
    frames = tf.signal.frame(waveform, frame_length, hop_length, pad_end=True)
    rms = tf.sqrt(tf.reduce_mean(tf.square(frames), axis=-1))
    db = 20.0 * tf.math.log(tf.maximum(rms, 1e-10)) / tf.math.log(10.0)
    loud = tf.where(db >= tf.reduce_max(db) - top_db)[:, 0]
    start = tf.cast(loud[0], tf.int32) * hop_length
    end = tf.minimum(
        (tf.cast(loud[-1], tf.int32) * hop_length) + frame_length, tf.shape(waveform)[0]
    )
    return waveform[start:end]


def normalize_loudness(waveform, target_dbfs: float):
    """Scales a waveform so that its RMS is `target_dbfs` (dB re full scale).

    Applied to the trimmed speech the model will see (after cropping), so
    leading and trailing silence, or audio past the window, does not change
    the measured level. Silent audio never gets here (`trim_silence`
    rejects it), so the gain is finite. Samples may exceed full scale
    afterwards; the log-mel does not clip them.
    """
    rms = tf.sqrt(tf.reduce_mean(tf.square(waveform)))
    target = tf.constant(10.0 ** (target_dbfs / 20.0), tf.float32)
    return waveform * (target / tf.maximum(rms, 1e-10))


def fit_length(waveform, num_samples: int, pad_mode: str = "zeros"):
    """Crops (keeping the start) or pads a waveform to `num_samples`.

    `pad_mode` "zeros" pads with silence; "repeat" repeats the waveform from
    its start until the window is full.
    """
    if pad_mode == "repeat":
        copies = num_samples // tf.maximum(tf.shape(waveform)[0], 1) + 1
        waveform = tf.tile(waveform, [copies])
    elif pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES}, got '{pad_mode}'")
    waveform = waveform[:num_samples]
    padding = num_samples - tf.shape(waveform)[0]
    waveform = tf.pad(waveform, [[0, padding]])
    return tf.ensure_shape(waveform, [num_samples])


class AudioFrontend:
    """An `AudioConfig` turned into the front end's functions and layer.

    `waveform(wav_bytes)` runs per example (inside `Dataset.map` or
    `tf.map_fn`), `samples_waveform(samples)` the same from decoded samples;
    `log_mel(waveforms)` runs on a batch. Its features are the log-mel image
    (with the chromagram appended when `audio.chroma`), the input `"log_mel"`
    of the spectrogram backbones.
    """

    input_key = "log_mel"
    # SpecAugment masks these features on training batches, after the cache.
    augments_batches = True

    def __init__(self, config: AudioConfig):
        self.config = config
        self.num_samples = int(round(config.max_duration_s * config.sample_rate))
        extra = {"chroma": True} if config.chroma else {}
        self.log_mel = LogMelSpectrogram(
            sample_rate=config.sample_rate,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            n_mels=config.n_mels,
            fmin=config.fmin,
            fmax=config.fmax,
            top_db=config.top_db,
            channels=config.channels,
            channel_mode=config.channel_mode,
            name="log_mel_spectrogram",
            **extra,
        )
        self.log_mel.build((None, self.num_samples))

    @property
    def num_frames(self) -> int:
        return self.log_mel.num_frames(self.num_samples)

    def waveform(self, wav_bytes):
        return self.samples_waveform(decode_wav(wav_bytes, self.config.sample_rate))

    def samples_waveform(self, samples):
        """Mono float32 samples at `sample_rate` -> the trimmed, cropped or padded
        waveform: what `waveform` does after decoding the WAV. Sharded TFRecords
        (already decoded PCM16) enter the front end here."""
        c = self.config
        audio = trim_silence(
            samples, c.trim_top_db, c.trim_frame_length, c.trim_hop_length, c.silence_floor_dbfs
        )
        if c.loudness_dbfs is not None:
            audio = normalize_loudness(audio[: self.num_samples], c.loudness_dbfs)
        return fit_length(audio, self.num_samples, c.pad_mode)

    def batch_waveforms(self, wav_bytes_batch):
        """[batch] WAV strings -> [batch, num_samples] waveforms."""
        return tf.map_fn(
            self.waveform,
            wav_bytes_batch,
            fn_output_signature=tf.TensorSpec([self.num_samples], tf.float32),
        )

    def example_features(self, waveform, spec_augment=None):
        """One waveform -> its features (what the pipeline caches)."""
        return self.log_mel(waveform[tf.newaxis])[0]

    def batch_features(self, waveforms):
        return self.log_mel(waveforms)

    def features(self, wav_bytes_batch):
        """[batch] WAV strings -> [batch, frames, bins, channels] log-mel."""
        return self.batch_features(self.batch_waveforms(wav_bytes_batch))

    def trackables(self) -> list:
        """Objects holding variables that an export must carry."""
        return []


class WhisperFrontend(AudioFrontend):
    """Waveform -> Whisper's log-mel -> the frozen lower Whisper encoder layers.

    The same decode / trim / crop-or-pad as `AudioFrontend` (clip-length
    input: Whisper sees `audio.max_duration_s` seconds, not 30 s), then
    `WhisperLogMel` (80 mels, n_fft 400, hop 160) and the encoder layers that
    are not fine-tuned. Their output `"whisper_features"` is what the input
    pipeline caches, so a frozen encoder runs once per clip, not once per
    epoch.

    SpecAugment masks the Whisper log-mel before the encoder, so it applies
    only when the features are not cached (`data.cache=false`: the encoder
    then runs every epoch); with the cache on, it is off for this branch.

    With `zero_padding_states`, the states of frames that hold only the
    window's zero padding (past the last non-zero sample of a clip padded
    with zeros) are set to exactly zero: the backbone reads that as "not
    part of the clip" and leaves them out of its pooling (`PaddingFrames`).
    """

    input_key = "whisper_features"
    augments_batches = False

    def __init__(self, config: AudioConfig, encoder_bottom, zero_padding_states: bool = False):
        from bimer_tf.layers.whisper_log_mel import WhisperLogMel

        self.config = config
        self.num_samples = int(round(config.max_duration_s * config.sample_rate))
        if config.sample_rate != 16000:
            raise InputError(
                f"the Whisper branch needs audio.sample_rate=16000, got {config.sample_rate}"
            )
        self.log_mel = WhisperLogMel(name="whisper_log_mel")
        self.log_mel.build((None, self.num_samples))
        self.encoder_bottom = encoder_bottom
        self.encoder_bottom.trainable = False
        self.zero_padding_states = zero_padding_states
        # Whisper's two convolutions: one state per two log-mel frames.
        self.samples_per_state = 2 * self.log_mel.hop_length

    def example_features(self, waveform, spec_augment=None):
        log_mel = self.log_mel(waveform[tf.newaxis])
        if spec_augment is not None:
            log_mel = spec_augment(log_mel[..., tf.newaxis], training=True)[..., 0]
        states = self.encoder_bottom(log_mel, training=False)
        return self._zero_padding(waveform[tf.newaxis], states)[0]

    def batch_features(self, waveforms):
        states = self.encoder_bottom(self.log_mel(waveforms), training=False)
        return self._zero_padding(waveforms, states)

    def _zero_padding(self, waveforms, states):
        """Zeroes the states past each clip's last non-zero sample (the padding)."""
        if not self.zero_padding_states:
            return states
        positions = tf.range(1, tf.shape(waveforms)[1] + 1)
        clip_samples = tf.reduce_max(tf.where(tf.not_equal(waveforms, 0.0), positions, 0), axis=1)
        clip_states = (clip_samples + self.samples_per_state - 1) // self.samples_per_state
        in_clip = tf.range(tf.shape(states)[1])[tf.newaxis, :] < clip_states[:, tf.newaxis]
        in_clip = tf.cast(in_clip, states.dtype)
        for _ in range(states.shape.rank - 2):  # [steps, hidden] or stacked [steps, layers, hidden]
            in_clip = in_clip[..., tf.newaxis]
        return states * in_clip

    def trackables(self) -> list:
        return [self.encoder_bottom]


# The config settings `build_speech_frontend` builds from: runs that agree on
# them have the same front end (an exported ensemble runs one for all).
SPEECH_FRONTEND_SETTINGS = (
    "audio", "model.speech.type", "model.speech.whisper.source", "model.speech.whisper.layers",
    "model.speech.whisper.trainable_layers", "model.speech.whisper.layer_sum", "model.speech.whisper.mask_padding",
)


def build_speech_frontend(config) -> AudioFrontend:
    """The speech front end of an `ExperimentConfig`'s speech backbone."""
    if config.model.speech.type == "whisper":
        from bimer_tf.pretrained.whisper_branch import whisper_encoder_parts

        whisper = config.model.speech.whisper
        bottom, _, _ = whisper_encoder_parts(
            whisper.source, whisper.layers, whisper.trainable_layers, whisper.layer_sum
        )
        return WhisperFrontend(config.audio, bottom, zero_padding_states=whisper.mask_padding)
    return AudioFrontend(config.audio)
