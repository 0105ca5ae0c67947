"""Audio front end: WAV decoding, silence trimming, crop/pad, log-mel, SpecAugment.

The reference for the log-mel and the trimming is librosa, which the BiMER
paper's own pipeline used.
"""

from __future__ import annotations

import io

import keras
import librosa
import numpy as np
import pytest
import soundfile
import tensorflow as tf
from conftest import synth_tone
from matplotlib import colormaps

from bimer_tf.config import AudioConfig
from bimer_tf.pipeline.frontend import (
    AudioFrontend,
    WhisperFrontend,
    decode_wav,
    fit_length,
    normalize_loudness,
    trim_silence,
)
from bimer_tf.layers.log_mel_spectrogram import LogMelSpectrogram
from bimer_tf.layers.spec_augment import SpecAugment

SR = 16000
PAPER_MEL = dict(sample_rate=SR, n_fft=1024, hop_length=512, n_mels=128)


def _wav_bytes(samples, sample_rate=SR, subtype="PCM_16"):
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, sample_rate, subtype=subtype, format="WAV")
    return buffer.getvalue()


def _pcm16(samples):
    """What a 16-bit WAV of `samples` decodes back to."""
    return soundfile.read(io.BytesIO(_wav_bytes(samples)), dtype="float32")[0]


def _voice_like(seconds, seed=0, amplitude=0.3):
    """A harmonic tone over faint noise, so that every mel band holds energy."""
    noise = np.random.default_rng(seed).standard_normal(int(seconds * SR))
    return synth_tone(seconds, amplitude=amplitude) + (0.01 * noise).astype(np.float32)


def _librosa_log_mel(waveform):
    power = librosa.feature.melspectrogram(
        y=waveform, sr=SR, n_fft=1024, hop_length=512, n_mels=128,
        htk=True, center=True, pad_mode="reflect", power=2.0,
    )
    db = librosa.power_to_db(power, ref=np.max, top_db=80.0)
    return ((db + 80.0) / 80.0).T  # [frames, n_mels]


def _frontend(**overrides):
    return AudioFrontend(AudioConfig(**{"max_duration_s": 1.0, **overrides}))


# --- LogMelSpectrogram --------------------------------------------------------


def test_log_mel_matches_librosa_with_paper_parameters():
    loud = _voice_like(1.0)
    loud[12000:] = 0.0  # a zero-padded tail
    quiet = 0.05 * _voice_like(1.0, seed=1)  # dB are relative to each utterance's own peak
    layer = LogMelSpectrogram(**PAPER_MEL)
    images = layer(np.stack([loud, quiet])).numpy()
    for image, waveform in zip(images, (loud, quiet)):
        np.testing.assert_allclose(image[..., 0], _librosa_log_mel(waveform), atol=1e-4)


@pytest.mark.parametrize("samples", [8000, 8191, 8192, 8700])
def test_log_mel_shape_and_range(samples):
    layer = LogMelSpectrogram(**PAPER_MEL)
    image = layer(_voice_like(samples / SR)[np.newaxis]).numpy()
    assert image.shape == (1, 1 + samples // 512, 128, 1)
    assert layer.compute_output_shape((1, samples)) == image.shape
    assert layer.num_frames(samples) == 1 + samples // 512
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert image.max() == 1.0  # the loudest bin is the reference


def test_zero_padded_tail_is_zero():
    waveform = np.zeros(SR, np.float32)
    waveform[:6000] = _voice_like(6000 / SR)
    image = LogMelSpectrogram(**PAPER_MEL)(waveform[np.newaxis]).numpy()[0, ..., 0]
    # Frame t's centred window spans samples [512 t - 512, 512 t + 512).
    silent_frames = [t for t in range(image.shape[0]) if 512 * t - 512 >= 6000]
    assert len(silent_frames) >= 15
    assert np.all(image[silent_frames] == 0.0)
    assert np.all(image[:10].mean(axis=1) > 0.3)


def test_three_channels_repeat_and_viridis():
    waveform = np.zeros(SR // 2, np.float32)
    waveform[:5000] = _voice_like(5000 / SR)
    batch = waveform[np.newaxis]
    gray = LogMelSpectrogram(**PAPER_MEL)(batch).numpy()
    repeated = LogMelSpectrogram(**PAPER_MEL, channels=3, channel_mode="repeat")(batch).numpy()
    np.testing.assert_array_equal(repeated, np.tile(gray, [1, 1, 1, 3]))

    layer = LogMelSpectrogram(**PAPER_MEL, channels=3, channel_mode="viridis")
    coloured = layer(batch).numpy()
    assert coloured.shape == gray.shape[:-1] + (3,)
    assert layer.compute_output_shape((1, len(waveform)))[-1] == 3
    viridis = colormaps["viridis"]
    # 256 colour levels: each pixel is the viridis colour of its quantised value.
    expected = viridis(np.round(gray[..., 0] * 255).astype(int))[..., :3]
    np.testing.assert_allclose(coloured, expected, atol=1e-6)
    # silence (0) is viridis' dark purple, the loudest bin (1) its yellow
    np.testing.assert_allclose(coloured[0, -1, 0], viridis(0.0)[:3], atol=1e-6)
    peak = np.unravel_index(np.argmax(gray[0, ..., 0]), gray.shape[1:3])
    np.testing.assert_allclose(coloured[0][peak], viridis(1.0)[:3], atol=1e-6)


def test_log_mel_config_round_trip():
    layer = LogMelSpectrogram(
        **PAPER_MEL, fmin=20.0, fmax=7600.0, top_db=60.0, channels=3, channel_mode="viridis",
        name="log_mel",
    )
    restored = LogMelSpectrogram.from_config(layer.get_config())
    assert restored.get_config() == layer.get_config()
    batch = _voice_like(0.25)[np.newaxis]
    np.testing.assert_array_equal(restored(batch).numpy(), layer(batch).numpy())


@pytest.mark.parametrize("kind", ["sequential", "functional"])
def test_log_mel_keras_file_round_trip(kind, tmp_path):
    samples = 4000
    if kind == "sequential":
        model = keras.Sequential(
            [keras.Input((samples,)), LogMelSpectrogram(**PAPER_MEL, fmax=7000.0, name="log_mel")]
        )
    else:
        inputs = keras.Input((samples,))
        log_mel = LogMelSpectrogram(**PAPER_MEL, channels=3, channel_mode="viridis", name="log_mel")
        image = log_mel(inputs)
        model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(image))
    batch = np.stack([_voice_like(samples / SR, seed=s) for s in (0, 1)])
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.get_layer("log_mel"), LogMelSpectrogram)
    expected = model.predict(batch, verbose=0)
    np.testing.assert_allclose(restored.predict(batch, verbose=0), expected, atol=1e-6)


@pytest.fixture
def mixed_float16():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy(previous)


def test_front_end_under_mixed_precision(mixed_float16):
    frontend = _frontend(max_duration_s=0.5)  # built after the policy is set, as in training
    data = tf.constant([_wav_bytes(_voice_like(0.5))])
    features = frontend.features(data)
    assert features.dtype == tf.float32
    reference = LogMelSpectrogram(**PAPER_MEL, dtype="float32")(frontend.batch_waveforms(data))
    np.testing.assert_allclose(features.numpy(), reference.numpy(), atol=1e-6)


# --- Trimming -----------------------------------------------------------------


def _trim(waveform, config=AudioConfig()):
    return trim_silence(
        tf.constant(waveform), config.trim_top_db, config.trim_frame_length,
        config.trim_hop_length, config.silence_floor_dbfs,
    ).numpy()


def _offset_in(whole, part):
    """Where `part` starts inside `whole` (it must be a contiguous slice)."""
    for start in range(len(whole) - len(part) + 1):
        if np.array_equal(whole[start : start + len(part)], part):
            return start
    raise AssertionError("the trimmed audio is not a slice of the input")


def test_trim_close_to_librosa():
    waveform = synth_tone(0.5, lead_silence=0.3, tail_silence=0.4)
    trimmed = _trim(waveform)
    start = _offset_in(waveform, trimmed)
    _, (ref_start, ref_end) = librosa.effects.trim(
        waveform, top_db=30, frame_length=1024, hop_length=256
    )
    assert abs(start - ref_start) <= 1024
    assert abs(start + len(trimmed) - ref_end) <= 1024
    # and nearly all the silence is gone
    assert len(trimmed) < 0.5 * SR + 2 * 1024


def test_trim_keeps_audio_without_silence():
    waveform = _voice_like(1.0)
    trimmed = _trim(waveform)
    assert abs(len(trimmed) - len(waveform)) <= 1024
    assert _offset_in(waveform, trimmed) <= 1024


@pytest.mark.parametrize(
    "waveform",
    [np.zeros(SR // 2, np.float32), synth_tone(0.5, amplitude=1e-4)],  # about -76 dBFS
    ids=["zeros", "below-60dBFS"],
)
def test_silent_audio_is_rejected(waveform):
    with pytest.raises(tf.errors.InvalidArgumentError, match="silent"):
        _trim(waveform)
    with pytest.raises(tf.errors.InvalidArgumentError, match="silent"):
        _frontend().waveform(tf.constant(_wav_bytes(waveform)))


def test_quiet_audio_above_the_floor_is_kept():
    waveform = synth_tone(0.5, amplitude=0.003, lead_silence=0.2)  # about -49 dBFS
    assert len(_trim(waveform)) < len(waveform)


# --- decode_wav -----------------------------------------------------------------


def test_decode_pcm16_mono():
    samples = _voice_like(0.25)
    audio = decode_wav(tf.constant(_wav_bytes(samples)), SR).numpy()
    np.testing.assert_allclose(audio, _pcm16(samples), atol=1e-6)


def test_decode_averages_stereo():
    left, right = synth_tone(0.25, freq=200.0), synth_tone(0.25, freq=310.0, amplitude=0.1)
    data = _wav_bytes(np.stack([left, right], axis=1))
    channels = soundfile.read(io.BytesIO(data), dtype="float32")[0]
    audio = decode_wav(tf.constant(data), SR).numpy()
    np.testing.assert_allclose(audio, channels.mean(axis=1), atol=1e-6)


def test_decode_wrong_sample_rate():
    data = _wav_bytes(synth_tone(0.25, sample_rate=44100), sample_rate=44100)
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected 16000 Hz"):
        decode_wav(tf.constant(data), SR)


def test_decode_empty_wav():
    with pytest.raises(tf.errors.InvalidArgumentError, match="no samples"):
        _frontend().waveform(tf.constant(_wav_bytes(np.zeros(0, np.float32))))


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_24", "FLOAT"])
def test_decode_rejects_non_pcm16_in_graph(subtype):
    data = tf.constant(_wav_bytes(synth_tone(0.25), subtype=subtype))
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.function(lambda wav: decode_wav(wav, SR))(data)


# --- fit_length and the whole front end ------------------------------------------


def test_fit_length_crops_pads_and_keeps_exact():
    waveform = tf.range(1, 11, dtype=tf.float32)
    np.testing.assert_array_equal(fit_length(waveform, 4).numpy(), [1, 2, 3, 4])
    np.testing.assert_array_equal(fit_length(waveform, 13).numpy(), list(range(1, 11)) + [0, 0, 0])
    np.testing.assert_array_equal(fit_length(waveform, 10).numpy(), waveform.numpy())
    # the length is static in graphs, whatever the input length
    spec = tf.TensorSpec([None], tf.float32)
    graph = tf.function(lambda w: fit_length(w, 7)).get_concrete_function(spec)
    assert graph.structured_outputs.shape.as_list() == [7]


def test_fit_length_repeat_fills_the_window_with_the_clip():
    waveform = tf.range(1, 5, dtype=tf.float32)
    np.testing.assert_array_equal(fit_length(waveform, 10, "repeat").numpy(), [1, 2, 3, 4, 1, 2, 3, 4, 1, 2])
    np.testing.assert_array_equal(fit_length(waveform, 3, "repeat").numpy(), [1, 2, 3])
    np.testing.assert_array_equal(fit_length(waveform, 8, "repeat").numpy(), [1, 2, 3, 4] * 2)
    spec = tf.TensorSpec([None], tf.float32)
    graph = tf.function(lambda w: fit_length(w, 7, "repeat")).get_concrete_function(spec)
    assert graph.structured_outputs.shape.as_list() == [7]
    with pytest.raises(ValueError, match="pad_mode must be"):
        fit_length(waveform, 10, "reflect")


def test_normalize_loudness_sets_the_rms_level():
    waveform = tf.constant(_voice_like(0.5, amplitude=0.05))
    scaled = normalize_loudness(waveform, -23.0).numpy()
    rms_dbfs = 20 * np.log10(np.sqrt(np.mean(scaled**2)))
    assert rms_dbfs == pytest.approx(-23.0, abs=1e-3)
    # only a gain: the shape of the waveform is kept
    np.testing.assert_allclose(scaled / scaled.max(), waveform.numpy() / waveform.numpy().max(), atol=1e-6)


def test_loudness_normalised_front_end_ignores_the_request_gain():
    """Loud and quiet copies of one clip give the same waveform, whatever the padding
    (up to the quiet copy's coarser PCM16 steps, scaled up)."""
    clip = _voice_like(0.6, amplitude=0.5)
    for pad_mode in ("zeros", "repeat"):
        frontend = _frontend(loudness_dbfs=-23.0, pad_mode=pad_mode)
        loud, quiet = (frontend.waveform(tf.constant(_wav_bytes(clip * gain))).numpy() for gain in (1.0, 0.1))
        np.testing.assert_allclose(loud, quiet, atol=5e-4)
        rms_dbfs = 20 * np.log10(np.sqrt(np.mean(loud[: len(clip)] ** 2)))
        assert rms_dbfs == pytest.approx(-23.0, abs=0.1)
    # without it the level is part of the features (the Whisper log-mel keeps it)
    plain = _frontend()
    loud, quiet = (plain.waveform(tf.constant(_wav_bytes(clip * gain))).numpy() for gain in (1.0, 0.1))
    assert np.abs(loud).max() > 5 * np.abs(quiet).max()


def test_repeat_padding_fills_a_short_clip_with_its_own_audio():
    clip = _voice_like(0.3)
    frontend = _frontend(pad_mode="repeat")
    waveform = frontend.waveform(tf.constant(_wav_bytes(clip))).numpy()
    trimmed = _pcm16(clip)
    assert waveform.shape == (SR,)
    assert not np.any(waveform[-1000:] == 0.0)
    length = len(trimmed)
    np.testing.assert_array_equal(waveform[length : 2 * length], waveform[:length])


def test_waveform_trims_then_pads():
    tone = synth_tone(0.5, amplitude=0.3)
    frontend = _frontend(max_duration_s=1.0)
    data = _wav_bytes(np.concatenate([np.zeros(4000, np.float32), tone, np.zeros(4000, np.float32)]))
    waveform = frontend.waveform(tf.constant(data)).numpy()
    assert waveform.shape == (frontend.num_samples,) == (SR,)
    # the tone comes first, after at most one frame of remaining silence
    offset = _offset_in(waveform, _pcm16(tone))
    assert offset <= 1024
    assert np.all(waveform[offset + len(tone) + 1024 :] == 0.0)


def test_long_audio_keeps_its_first_max_duration_seconds():
    samples = _voice_like(1.5)
    frontend = _frontend(max_duration_s=1.0)
    waveform = frontend.waveform(tf.constant(_wav_bytes(samples))).numpy()
    np.testing.assert_array_equal(waveform, _pcm16(samples)[:SR])


def test_features_on_a_batch_of_different_lengths():
    frontend = _frontend(max_duration_s=0.5)
    clips = [_voice_like(0.3, seed=0), _voice_like(0.8, seed=1)]
    features = frontend.features(tf.constant([_wav_bytes(c) for c in clips])).numpy()
    assert features.shape == (2, frontend.num_frames, 128, 1)
    assert frontend.num_frames == 1 + 8000 // 512
    # each row is the log-mel of its own fitted waveform
    for row, clip in zip(features, clips):
        waveform = frontend.waveform(tf.constant(_wav_bytes(clip)))
        np.testing.assert_allclose(row, frontend.log_mel(waveform[tf.newaxis])[0].numpy(), atol=1e-6)


# --- SpecAugment -------------------------------------------------------------------


def _masked_bands(features):
    """[batch, frames, mels, 1] of ones, masked -> per example the zeroed mel bands."""
    zero = features[..., 0] == 0.0
    # a frequency mask zeroes the same bands in every frame
    assert np.all(zero == zero[:, :1, :])
    return [np.flatnonzero(row[0]) for row in zero]


def test_spec_augment_is_identity_unless_training():
    features = np.random.default_rng(0).random((2, 6, 128, 1)).astype(np.float32)
    layer = SpecAugment(seed=0)
    np.testing.assert_array_equal(layer(features), features)
    np.testing.assert_array_equal(layer(features, training=False), features)


def test_spec_augment_one_frequency_mask_per_example():
    layer = SpecAugment(freq_mask_widths=[15, 20, 25], num_freq_masks=1, seed=3)
    widths = set()
    for _ in range(3):
        masked = layer(np.ones((32, 5, 128, 1), np.float32), training=True).numpy()
        assert set(np.unique(masked)) <= {0.0, 1.0}
        for bands in _masked_bands(masked):
            assert len(bands) in (15, 20, 25)
            assert np.array_equal(bands, np.arange(bands[0], bands[0] + len(bands)))  # contiguous
            assert bands[-1] < 128
            widths.add(len(bands))
    assert widths == {15, 20, 25}


def test_spec_augment_two_frequency_masks():
    layer = SpecAugment(freq_mask_widths=[10, 20], num_freq_masks=2, seed=1)
    masked = layer(np.ones((32, 4, 64, 1), np.float32), training=True).numpy()
    for bands in _masked_bands(masked):
        # two bands, possibly overlapping
        assert 10 <= len(bands) <= 40


def test_spec_augment_time_masks_within_bounds():
    layer = SpecAugment(num_freq_masks=0, time_mask_max_frames=4, num_time_masks=2, seed=2)
    masked = layer(np.ones((32, 30, 16, 2), np.float32), training=True).numpy()
    zero = masked == 0.0
    # a time mask zeroes whole frames, in every band and channel
    frame_zero = zero[:, :, :1, :1]
    assert np.all(zero == frame_zero)
    counts = frame_zero.reshape(32, 30).sum(axis=1)
    assert counts.max() <= 8
    assert counts.max() > 0


def test_spec_augment_in_dataset_map_draws_new_masks():
    layer = SpecAugment(seed=5)
    dataset = (
        tf.data.Dataset.from_tensors(tf.ones((4, 3, 128, 1)))
        .repeat(6)
        .map(lambda features: layer(features, training=True))
    )
    bands = [tuple(b) for batch in dataset for b in _masked_bands(batch.numpy())]
    assert all(len(b) in (15, 20, 25) for b in bands)
    assert len(set(bands)) > 12  # the random state moves on between batches


def test_spec_augment_config_round_trip_and_seed():
    layer = SpecAugment(
        freq_mask_widths=[5, 7], num_freq_masks=2, time_mask_max_frames=3, num_time_masks=1,
        seed=11, name="spec_augment",
    )
    config = layer.get_config()
    restored = SpecAugment.from_config(config)
    assert restored.get_config() == config
    assert config["freq_mask_widths"] == [5, 7]
    features = np.ones((8, 10, 32, 1), np.float32)
    # same seed, same masks
    np.testing.assert_array_equal(
        restored(features, training=True).numpy(), layer(features, training=True).numpy()
    )


# --- WhisperFrontend(zero_padding_states=True) ---------------------------------


def _state_encoder(stacked=False):
    """A stand-in for the lower Whisper encoder: log-mel [b, frames, 80] ->
    states [b, frames // 2, 4] (or [b, frames // 2, 2, 4]), none of them zero."""
    log_mel = keras.Input((None, 80))
    x = keras.layers.Conv1D(8 if stacked else 4, 2, strides=2, bias_initializer="ones")(log_mel)
    if stacked:
        x = keras.layers.Reshape((-1, 2, 4))(x)
    return keras.Model(log_mel, x)


@pytest.mark.parametrize("stacked", [False, True])
def test_whisper_front_end_zeroes_the_states_of_the_padding(stacked):
    config = AudioConfig(max_duration_s=2.0)
    clip = np.concatenate([_voice_like(1.1)[: SR + 100], np.zeros(SR - 100, np.float32)]).astype(np.float32)
    full = _voice_like(2.0, seed=1)[: 2 * SR].astype(np.float32)
    waveforms = tf.constant(np.stack([clip, full]))
    frontend = WhisperFrontend(config, _state_encoder(stacked), zero_padding_states=True)
    states = np.asarray(frontend.batch_features(waveforms))
    assert states.shape[:2] == (2, 100)  # one state per 320 samples
    in_clip = np.abs(states).reshape(2, 100, -1).max(axis=-1) > 0
    # the clip's 16100 samples reach into state 50 (ceil(16100 / 320) = 51 states)
    np.testing.assert_array_equal(in_clip[0], np.arange(100) < 51)
    assert in_clip[1].all()  # a clip that fills the window keeps every state
    # one clip at a time (the input pipeline) gives the same as a batch (the serving graph)
    np.testing.assert_allclose(frontend.example_features(waveforms[0]), states[0], atol=1e-6)
    plain = WhisperFrontend(config, frontend.encoder_bottom)
    unmasked = np.asarray(plain.batch_features(waveforms))
    assert (np.abs(unmasked).reshape(2, 100, -1).max(axis=-1) > 0).all()
    np.testing.assert_allclose(states[0, :51], unmasked[0, :51], atol=1e-6)
