"""The other speech backbones: ResNet-CNN, ResNet50-CRNN+AT, MobileNet.

First, what holds for every speech backbone: its `model.speech` config
section and its builder in `SPEECH_BACKBONE_BUILDERS`.

Also their parts: `ChannelSpatialAttention`, the chromagram of
`LogMelSpectrogram(chroma=True)` (checked against librosa) and
`resolve_imagenet_weights`, which must never reach the network here.
"""

from __future__ import annotations

import dataclasses
import inspect

import keras
import librosa
import numpy as np
import pytest
import tensorflow as tf
from conftest import synth_tone

from bimer_tf.config import SPEECH_TYPES, ExperimentConfig, SpeechModelConfig, validate
from bimer_tf.errors import InputError
from bimer_tf.layers import ChannelSpatialAttention
from bimer_tf.layers.log_mel_spectrogram import LogMelSpectrogram
from bimer_tf.pretrained.imagenet_weights import imagenet_file, resolve_imagenet_weights
from bimer_tf.models.speech_mobilenet_backbone import SpeechMobileNetBackbone
from bimer_tf.models.speech_resnet50_crnn_backbone import (
    CaffeImagePreprocessing,
    SpeechResNet50CRNNBackbone,
)
from bimer_tf.models import SPEECH_BACKBONE_BUILDERS, SpeechResNetCRNNBackbone, SpeechWhisperBackbone
from bimer_tf.models.speech_resnet_cnn_backbone import SpeechResNetCNNBackbone
from bimer_tf.pretrained.whisper_branch import whisper_encoder_parts

SR = 16000
# ResNet50 and MobileNet need at least 32 x 32 inputs.
IMAGE_BINS = 32
TINY_RESNET50 = dict(
    conv_filters=4,
    gru_units=4,
    transformer_heads=2,
    transformer_intermediate_dim=8,
    transformer_layers=1,
    dropout=0.1,
    feature_dim=6,
    n_mels=IMAGE_BINS,
)
TINY_MOBILENET = dict(alpha=0.25, dropout=0.1, feature_dim=6, n_mels=IMAGE_BINS)


# --- model.speech: one config section and one builder per backbone ----------


def test_every_speech_type_has_a_builder():
    assert set(SPEECH_BACKBONE_BUILDERS) == set(SPEECH_TYPES)


@pytest.mark.parametrize(
    "name, backbone",
    [
        ("resnet_cnn", SpeechResNetCNNBackbone),
        ("resnet_crnn_at", SpeechResNetCRNNBackbone),
        ("resnet50_crnn_at", SpeechResNet50CRNNBackbone),
        ("mobilenet", SpeechMobileNetBackbone),
        ("whisper", SpeechWhisperBackbone),
    ],
)
def test_config_sections_hold_constructor_arguments(name, backbone):
    fields = {f.name for f in dataclasses.fields(getattr(SpeechModelConfig(), name))}
    if name == "whisper":  # the encoder's settings load and split the pretrained encoder
        encoder = set(inspect.signature(whisper_encoder_parts).parameters)
        assert encoder <= fields
        fields -= encoder
    assert fields <= set(inspect.signature(backbone.__init__).parameters)


def image(batch: int, frames: int, bins: int = IMAGE_BINS, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(frames).random((batch, frames, bins, channels), dtype="float32")


def _save_and_reload(model, tmp_path):
    path = tmp_path / "model.keras"
    model.save(path)
    return keras.saving.load_model(path)


def _assert_same_outputs(restored, backbone, x):
    expected, actual = backbone(x, training=False), restored(x, training=False)
    assert sorted(actual) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(actual[key], expected[key], atol=1e-5)


def _train_one_step(backbone, x):
    """One `train_on_batch` of a dense softmax head on `pooled_output`."""
    inputs = keras.Input(backbone.input.shape[1:])
    features = backbone(inputs)["pooled_output"]
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(features))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    before = [np.array(weight) for weight in backbone.trainable_weights]
    loss = model.train_on_batch(x, np.arange(len(x)) % 2)
    assert np.isfinite(loss)
    changed = [not np.array_equal(old, new) for old, new in zip(before, backbone.trainable_weights)]
    assert any(changed)


def _assert_moving_statistics_settle(backbone, x, passes=150):
    """Training-mode passes over one batch must bring the inference-mode
    output to the training-mode one: the batch normalisation's moving
    statistics follow the data within a few epochs of a small corpus (at
    Keras' default momentum 0.99, 0.99 ** 150 = 22 % of their start is left
    and the inference-mode output is off by more than its own norm). `x` is
    96 x 64 or larger: the last feature map is then 3 x 2, as for a short
    clip; a 1 x 1 map over 4 examples leaves too few values per channel."""
    step = tf.function(lambda: backbone(x, training=True)["pooled_output"])
    for _ in range(passes):
        trained = step()
    inferred = backbone(x, training=False)["pooled_output"]
    error = np.linalg.norm(inferred - trained) / np.linalg.norm(trained)
    assert error < 0.05, f"inference-mode output off by {error:.2f} of its norm"


@pytest.fixture
def offline_keras_cache(tmp_path, monkeypatch):
    """An empty Keras cache, and a `get_file` that fails as without network."""
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    calls = []

    def no_network(fname, origin, **kwargs):
        calls.append(origin)
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", no_network)
    return home, calls


# --- SpeechResNetCNNBackbone ------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_resnet_cnn_outputs_for_variable_frames(channels):
    backbone = SpeechResNetCNNBackbone(stage_widths=[4, 8], n_mels=16, channels=channels)
    assert tuple(backbone.input.shape) == (None, None, 16, channels)
    assert backbone.input.name == "log_mel"
    assert [block.name for block in backbone.residual_blocks] == ["block0", "block1"]
    assert [block.strides for block in backbone.residual_blocks] == [2, 2]
    assert all(block.shortcut_conv is not None for block in backbone.residual_blocks)
    assert backbone.feature_dim == 8
    for frames in (24, 37):
        outputs = backbone(image(3, frames, 16, channels))
        assert sorted(outputs) == ["pooled_output"]
        assert tuple(outputs["pooled_output"].shape) == (3, 8)


def test_resnet_cnn_paper_defaults():
    backbone = SpeechResNetCNNBackbone(channels=3)
    assert backbone.stage_widths == [16, 32, 64, 128, 256, 512]
    assert tuple(backbone.input.shape) == (None, None, 128, 3)
    assert tuple(backbone.output["pooled_output"].shape) == (None, 512)


def test_resnet_cnn_round_trip_and_training_step(tmp_path):
    backbone = SpeechResNetCNNBackbone(stage_widths=[4, 8], n_mels=16, name="speech_backbone")
    restored_from_config = SpeechResNetCNNBackbone.from_config(backbone.get_config())
    assert restored_from_config.get_config() == backbone.get_config()
    x = image(4, 20, 16, 1)
    _train_one_step(backbone, x)  # also moves the batch norm statistics
    restored = _save_and_reload(backbone, tmp_path)
    assert isinstance(restored, SpeechResNetCNNBackbone)
    _assert_same_outputs(restored, backbone, x)


@pytest.mark.parametrize("stage_widths", [[], [4, 0]])
def test_resnet_cnn_rejects_bad_widths(stage_widths):
    with pytest.raises(ValueError, match="stage_widths"):
        SpeechResNetCNNBackbone(stage_widths=stage_widths, n_mels=16)


# --- ChannelSpatialAttention ------------------------------------------------


def test_spatial_attention_weights_and_shape():
    attention = ChannelSpatialAttention()
    x = np.random.default_rng(0).random((3, 5, 4, 6), dtype="float32")
    outputs, weights = attention(x, return_attention_scores=True)
    assert tuple(outputs.shape) == x.shape
    assert tuple(weights.shape) == (3, 5, 4)
    np.testing.assert_allclose(np.sum(weights, axis=(1, 2)), 1.0, rtol=1e-5)
    # softmax over the h * w positions of the channel mean, times h * w
    scores = x.mean(axis=-1).reshape(3, -1)
    expected = np.exp(scores - scores.max(axis=1, keepdims=True))
    expected = (expected / expected.sum(axis=1, keepdims=True)).reshape(3, 5, 4)
    np.testing.assert_allclose(weights, expected, rtol=1e-5)
    np.testing.assert_allclose(outputs, x * 20 * expected[..., None], rtol=1e-5)
    np.testing.assert_allclose(attention(x), outputs)


@pytest.mark.parametrize("shape", [(2, 1, 1, 3), (1, 400, 64, 2)])
def test_spatial_attention_uniform_map_is_identity(shape):
    # The h * w factor: equal scores leave the input as it is, at any map size.
    x = np.ones(shape, "float32")
    np.testing.assert_allclose(ChannelSpatialAttention()(x), x, rtol=1e-5)


def test_spatial_attention_symbolic_and_config():
    inputs = keras.Input((None, 4, 8))
    outputs, weights = ChannelSpatialAttention()(inputs, return_attention_scores=True)
    assert tuple(outputs.shape) == (None, None, 4, 8)
    assert tuple(weights.shape) == (None, None, 4)
    layer = ChannelSpatialAttention(name="attention")
    assert ChannelSpatialAttention.from_config(layer.get_config()).get_config() == layer.get_config()


def test_spatial_attention_mixed_precision():
    layer = ChannelSpatialAttention(dtype="mixed_float16")
    x = (10 * np.random.default_rng(0).random((1, 200, 50, 4))).astype("float16")
    outputs, weights = layer(x, return_attention_scores=True)
    assert np.asarray(outputs).dtype == np.float16
    assert np.all(np.isfinite(outputs))
    np.testing.assert_allclose(np.sum(weights), 1.0, rtol=1e-5)


# --- SpeechResNet50CRNNBackbone ---------------------------------------------


@pytest.fixture(scope="module")
def resnet50_backbone():
    return SpeechResNet50CRNNBackbone(**TINY_RESNET50, name="speech_backbone")


def test_resnet50_outputs_for_variable_frames(resnet50_backbone):
    backbone = resnet50_backbone
    assert tuple(backbone.input.shape) == (None, None, IMAGE_BINS, 3)
    assert backbone.image_encoder.name == "resnet50"
    assert backbone.image_preprocessing is None  # random weights: no ImageNet scaling
    for frames, steps in [(64, 2), (100, 4)]:  # ResNet50 divides time by 32, rounding up
        outputs = backbone(image(2, frames))
        assert tuple(outputs["sequence_output"].shape) == (2, steps, TINY_RESNET50["gru_units"])
        assert tuple(outputs["pooled_output"].shape) == (2, TINY_RESNET50["feature_dim"])


def test_resnet50_keras_file_round_trip(resnet50_backbone, tmp_path, offline_keras_cache):
    restored = _save_and_reload(resnet50_backbone, tmp_path)
    assert isinstance(restored, SpeechResNet50CRNNBackbone)
    assert restored.get_config() == resnet50_backbone.get_config()
    _assert_same_outputs(restored, resnet50_backbone, image(2, 64))
    assert offline_keras_cache[1] == []  # loading fetched nothing


def test_resnet50_moving_statistics_settle():
    backbone = SpeechResNet50CRNNBackbone(**{**TINY_RESNET50, "dropout": 0.0, "n_mels": 64})
    _assert_moving_statistics_settle(backbone, image(4, 96, bins=64))


@pytest.mark.slow
def test_resnet50_training_step(resnet50_backbone):
    _train_one_step(resnet50_backbone, image(2, 64))


def test_caffe_preprocessing_matches_keras():
    x = image(2, 5, 4)
    expected = keras.applications.resnet50.preprocess_input(255.0 * x)
    np.testing.assert_allclose(CaffeImagePreprocessing()(x), expected, atol=1e-4)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"channels": 1}, "audio.channels=3"),
        ({"transformer_heads": 3}, "transformer_heads"),
        ({"n_mels": 16}, "n_mels"),
    ],
)
def test_resnet50_rejects_bad_arguments(overrides, message):
    with pytest.raises(ValueError, match=message):
        SpeechResNet50CRNNBackbone(**{**TINY_RESNET50, **overrides})


@pytest.mark.slow
def test_resnet50_loads_a_local_weights_file(tmp_path, offline_keras_cache):
    reference = keras.applications.ResNet50(
        include_top=False, weights=None, input_shape=(None, IMAGE_BINS, 3)
    )
    path = tmp_path / "resnet50_notop.weights.h5"
    reference.save_weights(path)
    backbone = SpeechResNet50CRNNBackbone(**TINY_RESNET50, weights=str(path))
    assert backbone.imagenet_preprocessing
    for expected, actual in zip(reference.weights, backbone.image_encoder.weights):
        np.testing.assert_array_equal(actual, expected)


# --- SpeechMobileNetBackbone ------------------------------------------------


@pytest.fixture(scope="module")
def mobilenet_backbone():
    return SpeechMobileNetBackbone(**TINY_MOBILENET, name="speech_backbone")


def test_mobilenet_shapes_and_round_trip(mobilenet_backbone, tmp_path):
    backbone = mobilenet_backbone
    assert tuple(backbone.input.shape) == (None, None, IMAGE_BINS, 3)
    assert backbone.image_encoder.name == "mobilenet"
    assert backbone.image_preprocessing is None
    for frames in (32, 45):
        outputs = backbone(image(2, frames))
        assert sorted(outputs) == ["pooled_output"]
        assert tuple(outputs["pooled_output"].shape) == (2, TINY_MOBILENET["feature_dim"])
    restored = _save_and_reload(backbone, tmp_path)
    assert isinstance(restored, SpeechMobileNetBackbone)
    assert restored.get_config() == backbone.get_config()
    _assert_same_outputs(restored, backbone, image(2, 40))


def test_mobilenet_random_depthwise_kernels_keep_the_variance():
    backbone = SpeechMobileNetBackbone(**TINY_MOBILENET)
    depthwise = [
        layer for layer in backbone.image_encoder.layers if isinstance(layer, keras.layers.DepthwiseConv2D)
    ]
    assert len(depthwise) == 13
    for layer in depthwise:
        # He over the 3 x 3 window: std sqrt(2 / 9) = 0.47; Glorot over
        # 9 x channels would give 0.16 (8 channels) down to 0.05 (256).
        assert 0.35 < np.std(layer.kernel) < 0.6, layer.name


def test_mobilenet_moving_statistics_settle():
    backbone = SpeechMobileNetBackbone(**{**TINY_MOBILENET, "dropout": 0.0, "n_mels": 64})
    _assert_moving_statistics_settle(backbone, image(4, 96, bins=64))


@pytest.mark.slow
def test_mobilenet_training_step(mobilenet_backbone):
    _train_one_step(mobilenet_backbone, image(4, 40))


@pytest.mark.parametrize("suffix", [".weights.h5", ".h5"])
def test_mobilenet_loads_a_local_weights_file(suffix, tmp_path, offline_keras_cache):
    reference = keras.applications.MobileNet(
        include_top=False, weights=None, alpha=0.25, input_shape=(None, IMAGE_BINS, 3)
    )
    path = tmp_path / f"mobilenet_notop{suffix}"
    if suffix == ".weights.h5":
        reference.save_weights(path)
    else:  # a legacy HDF5 file, the format of keras.applications' downloads
        reference.save(path)
    backbone = SpeechMobileNetBackbone(**TINY_MOBILENET, weights=str(path))
    for expected, actual in zip(reference.weights, backbone.image_encoder.weights):
        np.testing.assert_array_equal(actual, expected)
    # Pretrained weights: the [0, 1] image is rescaled to MobileNet's [-1, 1].
    assert backbone.imagenet_preprocessing
    x = image(2, 40)
    np.testing.assert_allclose(
        backbone.image_preprocessing(x),
        keras.applications.mobilenet.preprocess_input(255.0 * x),
        atol=1e-5,
    )
    # The saved model carries the weights: reloading needs neither the file
    # nor the network.
    assert backbone.get_config()["weights"] is None
    saved = tmp_path / "backbone.keras"
    backbone.save(saved)
    path.unlink()
    restored = keras.saving.load_model(saved)
    assert restored.imagenet_preprocessing
    _assert_same_outputs(restored, backbone, x)
    assert offline_keras_cache[1] == []


@pytest.mark.parametrize(
    "overrides, message", [({"channels": 1}, "audio.channels=3"), ({"n_mels": 31}, "n_mels")]
)
def test_mobilenet_rejects_bad_arguments(overrides, message):
    with pytest.raises(ValueError, match=message):
        SpeechMobileNetBackbone(**{**TINY_MOBILENET, **overrides})


def test_mobilenet_imagenet_alpha_must_exist(offline_keras_cache):
    with pytest.raises(InputError, match=r"model\.speech\.mobilenet\.alpha"):
        SpeechMobileNetBackbone(**{**TINY_MOBILENET, "alpha": 0.3}, weights="imagenet")


# --- resolve_imagenet_weights -----------------------------------------------


@pytest.mark.parametrize("weights", [None, "none", "None"])
def test_resolve_no_weights(weights):
    assert resolve_imagenet_weights(weights, "resnet50") is None


def test_resolve_local_and_missing_files(tmp_path):
    path = tmp_path / "weights.h5"
    path.write_bytes(b"")
    assert resolve_imagenet_weights(str(path), "mobilenet") == str(path)
    with pytest.raises(InputError, match=r"model\.speech\.resnet50_crnn_at\.weights.*no weights file"):
        resolve_imagenet_weights(str(tmp_path / "missing.h5"), "resnet50")


@pytest.mark.parametrize(
    "application, alpha, folder, file_name",
    [
        ("resnet50", 1.0, "resnet", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        ("mobilenet", 1.0, "mobilenet", "mobilenet_1_0_224_tf_no_top.h5"),
        ("mobilenet", 0.25, "mobilenet", "mobilenet_2_5_224_tf_no_top.h5"),
    ],
)
def test_resolve_imagenet_offline(application, alpha, folder, file_name, offline_keras_cache):
    home, calls = offline_keras_cache
    url = f"https://storage.googleapis.com/tensorflow/keras-applications/{folder}/{file_name}"
    assert imagenet_file(application, alpha)[:2] == (file_name, url)
    with pytest.raises(InputError) as error:
        resolve_imagenet_weights("imagenet", application, alpha=alpha)
    message = str(error.value)
    assert url in message
    section = "resnet50_crnn_at" if application == "resnet50" else "mobilenet"
    assert f"--set model.speech.{section}.weights=" in message
    assert "no network" in message
    assert error.value.__cause__ is None and error.value.__suppress_context__
    assert calls == [url]
    # A file already in the Keras cache is used without any download.
    cached = home / "models" / file_name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    assert resolve_imagenet_weights("imagenet", application, alpha=alpha) == str(cached)
    assert calls == [url]


def test_backbones_report_offline_imagenet(offline_keras_cache):
    for backbone, arguments in [
        (SpeechResNet50CRNNBackbone, TINY_RESNET50),
        (SpeechMobileNetBackbone, TINY_MOBILENET),
    ]:
        with pytest.raises(InputError, match=r"storage\.googleapis\.com.*model\.speech\.\w+\.weights"):
            backbone(**arguments, weights="imagenet")


# --- LogMelSpectrogram(chroma=True) -----------------------------------------


def _voice_like(seconds, seed=0):
    noise = np.random.default_rng(seed).standard_normal(int(seconds * SR))
    return synth_tone(seconds, freq=196.0) + (0.01 * noise).astype(np.float32)


def test_chroma_matches_librosa():
    waveform = _voice_like(1.0)
    waveform[12000:] = 0.0  # a zero-padded tail
    layer = LogMelSpectrogram(sample_rate=SR, n_fft=1024, hop_length=512, n_mels=128, chroma=True)
    image_ = layer(waveform[np.newaxis]).numpy()
    assert layer.num_bins == 140
    assert image_.shape == (1, 1 + SR // 512, 140, 1)
    assert layer.compute_output_shape((1, SR)) == image_.shape
    # The same power spectrogram librosa's pipeline makes (centred, reflect-padded).
    power = np.abs(
        librosa.stft(waveform, n_fft=1024, hop_length=512, window="hann", center=True, pad_mode="reflect")
    ) ** 2
    expected = librosa.feature.chroma_stft(S=power, sr=SR, n_fft=1024, tuning=0.0).T
    chroma = image_[0, :, 128:, 0]
    difference = np.abs(chroma - expected).max()
    assert difference < 1e-5, difference
    assert chroma.min() >= 0.0 and chroma.max() == 1.0
    assert np.all(chroma[-3:] == 0.0)  # silence stays 0
    # The mel bands are what they are without chroma.
    plain = LogMelSpectrogram(sample_rate=SR, n_fft=1024, hop_length=512, n_mels=128)
    np.testing.assert_array_equal(image_[..., :128, :], plain(waveform[np.newaxis]).numpy())


def test_chroma_three_channels_and_config(tmp_path):
    layer = LogMelSpectrogram(n_mels=32, chroma=True, channels=3, channel_mode="viridis", name="log_mel")
    waveform = _voice_like(1.0)[np.newaxis]  # 32 frames: MobileNet's minimum
    image_ = layer(waveform).numpy()
    assert image_.shape == (1, 1 + len(waveform[0]) // 512, 44, 3)
    restored = LogMelSpectrogram.from_config(layer.get_config())
    assert restored.chroma and restored.get_config() == layer.get_config()
    np.testing.assert_array_equal(restored(waveform).numpy(), image_)
    # The MM-EMOR pairing: the image goes straight into the MobileNet backbone.
    backbone = SpeechMobileNetBackbone(alpha=0.25, feature_dim=4, n_mels=layer.num_bins)
    assert tuple(backbone(image_)["pooled_output"].shape) == (1, 4)


# --- SpeechWhisperBackbone(normalize_states=True) ---------------------------


def test_whisper_normalized_states_shapes_round_trip_and_offset_invariance(tmp_path):
    backbone = SpeechWhisperBackbone(
        6, pooling="attention", normalize_states=True, attention_units=4, feature_dim=5
    )
    states = np.random.default_rng(0).normal(size=(3, 11, 6)).astype("float32")
    outputs = backbone(states, training=False)
    assert outputs["sequence_output"].shape == (3, 11, 6)
    assert outputs["pooled_output"].shape == (3, 5)
    # A per-utterance offset and gain of each feature (speaker, channel) is removed.
    rng = np.random.default_rng(1)
    shifted = states * rng.uniform(0.5, 2.0, (3, 1, 6)) + rng.normal(size=(3, 1, 6))
    np.testing.assert_allclose(
        backbone(shifted.astype("float32"), training=False)["pooled_output"],
        outputs["pooled_output"],
        atol=1e-4,
    )
    restored = _save_and_reload(backbone, tmp_path)
    assert restored.normalize_states
    _assert_same_outputs(restored, backbone, states)
    _train_one_step(backbone, states)


def test_whisper_frame_dropout_masks_frames_out_of_the_pooling_in_training_only(tmp_path):
    from bimer_tf.models.speech_whisper_backbone import RandomFrameMask

    states = np.random.default_rng(0).normal(size=(4, 40, 6)).astype("float32") + 3.0
    mask = np.asarray(RandomFrameMask(0.5, seed=1)(states, training=True))
    assert mask.shape == (4, 40) and mask.dtype == bool
    assert 0.2 < 1.0 - mask.mean() < 0.8
    assert np.all(np.asarray(RandomFrameMask(0.5)(states, training=False)))
    # a row never loses every frame
    assert np.all(np.asarray(RandomFrameMask(0.99, seed=2)(states[:, :3], training=True)).any(axis=1))

    backbone = SpeechWhisperBackbone(
        6, pooling="attentive_mean_std", frame_dropout=0.5, attention_units=4, feature_dim=5
    )
    # in training the masked frames get no attention weight: the pooled statistics
    # are those of the kept frames, whatever the left-out frames hold
    pooling = backbone.pooling_layer
    kept = np.asarray(RandomFrameMask(0.5, seed=3)(states, training=True))
    changed = states.copy()
    changed[~kept] = 100.0
    np.testing.assert_allclose(pooling(changed, mask=kept), pooling(states, mask=kept), rtol=1e-5)
    # not in inference: the same answer as the model without it
    plain = SpeechWhisperBackbone(6, pooling="attentive_mean_std", attention_units=4, feature_dim=5)
    plain.set_weights(backbone.get_weights())
    _assert_same_outputs(plain, backbone, states)
    a, b = (np.asarray(backbone(states, training=True)["pooled_output"]) for _ in range(2))
    assert not np.allclose(a, b)  # a new mask per call
    restored = _save_and_reload(backbone, tmp_path)
    assert restored.frame_dropout == 0.5
    _assert_same_outputs(restored, backbone, states)
    _train_one_step(backbone, states)


def _runs(row):
    """(start, length) of each run of True in a 1-D bool array."""
    edges = np.diff(np.concatenate([[0], row.astype(int), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return list(zip(starts, ends - starts))


def test_time_span_mask_replaces_spans_with_a_learned_vector_in_training_only(tmp_path):
    from bimer_tf.models.speech_whisper_backbone import TimeSpanMask

    states = np.random.default_rng(0).normal(size=(16, 300, 6)).astype("float32") + 3.0
    layer = TimeSpanMask(0.3, span=5, seed=1)
    masked = np.asarray(layer(states, training=True))
    replaced = np.all(masked != states, axis=-1)
    kept = np.all(masked == states, axis=-1)
    assert np.all(replaced | kept)  # a frame is either whole or replaced
    np.testing.assert_allclose(masked[replaced], np.broadcast_to(layer.mask_embedding, masked[replaced].shape))
    # about `rate` of the frames (1 - e^-0.3 with overlaps), in spans of at least 5 frames
    assert 0.18 < replaced.mean() < 0.34
    for row in replaced:
        assert all(length >= 5 for start, length in _runs(row) if start + length < row.size)
    np.testing.assert_array_equal(layer.masked_frames(states).shape, (16, 300))
    assert not np.array_equal(np.asarray(layer(states, training=True)), masked)  # new spans per call
    np.testing.assert_array_equal(np.asarray(layer(states, training=False)), states)
    np.testing.assert_array_equal(np.asarray(TimeSpanMask(0.0)(states, training=True)), states)
    # clips shorter than a span
    assert np.asarray(TimeSpanMask(0.9, span=10, seed=2)(states[:, :3], training=True)).shape == (16, 3, 6)
    restored = TimeSpanMask.from_config(layer.get_config())
    assert (restored.rate, restored.span) == (0.3, 5)
    for bad, message in (({"rate": 1.0}, "rate must lie in"), ({"rate": 0.1, "span": 0}, "span must be")):
        with pytest.raises(ValueError, match=message):
            TimeSpanMask(**bad)


def test_whisper_time_masking_needs_trained_layers():
    with pytest.raises(ValueError, match="time_mask_rate needs top_encoder"):
        SpeechWhisperBackbone(6, time_mask_rate=0.1)
    config = ExperimentConfig()
    config.model.type = "ser"
    config.model.speech.type = "whisper"
    whisper = config.model.speech.whisper
    whisper.time_mask_rate = 0.1
    with pytest.raises(InputError, match="time_mask_rate needs model.speech.whisper.trainable_layers >= 1"):
        validate(config)
    whisper.trainable_layers = 1
    validate(config)
    for field, value, message in (
        ("time_mask_rate", 1.0, "time_mask_rate must lie in"),
        ("time_mask_span", 0, "time_mask_span must be >= 1"),
    ):
        bad = dataclasses.replace(whisper, **{field: value})
        config.model.speech.whisper = bad
        with pytest.raises(InputError, match=message):
            validate(config)


def test_whisper_frame_dropout_rate_is_checked():
    config = ExperimentConfig()
    config.model.type = "ser"
    config.model.speech.type = "whisper"
    config.model.speech.whisper.frame_dropout = 1.0
    with pytest.raises(InputError, match="frame_dropout must lie in"):
        validate(config)
    config.model.speech.whisper.frame_dropout = 0.2
    config.model.speech.whisper.pooling = "mean_std"
    with pytest.raises(InputError, match="frame_dropout needs an attention pooling"):
        validate(config)
    with pytest.raises(ValueError, match="frame_dropout needs an attention pooling"):
        SpeechWhisperBackbone(6, pooling="mean_std", frame_dropout=0.2)


def test_whisper_normalized_states_need_attention_pooling():
    with pytest.raises(ValueError, match="normalize_states"):
        SpeechWhisperBackbone(6, pooling="mean_std", normalize_states=True)
    config = ExperimentConfig()
    config.model.type = "ser"
    config.model.speech.type = "whisper"
    config.model.speech.whisper.normalize_states = True
    config.model.speech.whisper.pooling = "mean_std"
    with pytest.raises(InputError, match="normalize_states"):
        validate(config)
    for pooling in ("attention", "attentive_mean_std"):
        config.model.speech.whisper.pooling = pooling
        validate(config)
    SpeechWhisperBackbone(6, pooling="attentive_mean_std", normalize_states=True)


# --- SpeechWhisperBackbone(num_states=...): a learned sum of every hidden state ---


def test_whisper_layer_sum_reads_stacked_states_and_learns_the_weights(tmp_path):
    backbone = SpeechWhisperBackbone(
        6, num_states=3, pooling="attentive_mean_std", attention_units=4, feature_dim=5
    )
    assert backbone.input.shape[1:] == (None, 3, 6)
    states = np.random.default_rng(0).normal(size=(4, 9, 3, 6)).astype("float32")
    outputs = backbone(states, training=False)
    assert outputs["sequence_output"].shape == (4, 9, 6)
    assert outputs["pooled_output"].shape == (4, 5)
    # the weights start equal and train with the head
    layer_sum = backbone.get_layer("weighted_layer_sum")
    np.testing.assert_allclose(np.asarray(layer_sum.layer_weights()), np.full(3, 1 / 3), rtol=1e-6)
    restored = _save_and_reload(backbone, tmp_path)
    assert restored.num_states == 3
    _assert_same_outputs(restored, backbone, states)
    _train_one_step(backbone, states)
    assert not np.allclose(np.asarray(layer_sum.layer_logits), 0.0)


def test_whisper_layer_sum_needs_a_frozen_encoder():
    top = keras.Sequential([keras.Input((None, 6)), keras.layers.Dense(6)])
    with pytest.raises(ValueError, match="num_states needs top_encoder=None"):
        SpeechWhisperBackbone(6, top_encoder=top, num_states=3)
    config = ExperimentConfig()
    config.model.type = "ser"
    config.model.speech.type = "whisper"
    config.model.speech.whisper.layer_sum = True
    validate(config)
    config.model.speech.whisper.trainable_layers = 1
    with pytest.raises(InputError, match="layer_sum needs model.speech.whisper.trainable_layers=0"):
        validate(config)


# --- SpeechWhisperBackbone(mask_padding=True): the zeroed padding frames are left out ---


@pytest.mark.parametrize("normalize_states", [False, True])
def test_whisper_mask_padding_pools_only_the_clips_own_frames(normalize_states, tmp_path):
    backbone = SpeechWhisperBackbone(
        6, pooling="attentive_mean_std", mask_padding=True, normalize_states=normalize_states,
        attention_units=4, feature_dim=5,
    )
    states = np.random.default_rng(0).normal(size=(1, 12, 6)).astype("float32")
    padded = np.concatenate([states, np.zeros((1, 30, 6), "float32")], axis=1)  # zeroed by the front end
    np.testing.assert_allclose(
        backbone(padded, training=False)["pooled_output"],
        backbone(states, training=False)["pooled_output"],
        atol=1e-5,
    )
    # without the option the padding frames weigh in
    plain = SpeechWhisperBackbone(
        6, pooling="attentive_mean_std", normalize_states=normalize_states, attention_units=4, feature_dim=5
    )
    plain.set_weights(backbone.get_weights())
    with_padding = plain(padded, training=False)["pooled_output"]
    assert not np.allclose(with_padding, backbone(padded, training=False)["pooled_output"], atol=1e-3)
    restored = _save_and_reload(backbone, tmp_path)
    assert restored.mask_padding
    _assert_same_outputs(restored, backbone, padded)
    _train_one_step(backbone, np.concatenate([padded, padded[:, ::-1]]))


def test_whisper_mask_padding_with_frame_dropout_and_stacked_states():
    from bimer_tf.models.speech_whisper_backbone import PaddingFrames, RandomFrameMask

    states = np.random.default_rng(1).normal(size=(3, 20, 2, 6)).astype("float32")
    states[0, 5:] = 0.0
    states[1, 1:] = 0.0
    valid = np.asarray(PaddingFrames()(states))
    np.testing.assert_array_equal(valid.sum(axis=1), [5, 1, 20])
    for _ in range(5):
        kept = np.asarray(RandomFrameMask(0.5)(states[:, :, 0], valid=valid, training=True))
        assert not (kept & ~valid).any()  # padding is never drawn
        assert kept.any(axis=1).all()  # and a row keeps at least one of its frames
        np.testing.assert_array_equal(kept[1], valid[1])
    np.testing.assert_array_equal(RandomFrameMask(0.5)(states[:, :, 0], valid=valid), valid)
    backbone = SpeechWhisperBackbone(
        6, num_states=2, pooling="attentive_mean_std", mask_padding=True, frame_dropout=0.3,
        attention_units=4, feature_dim=5,
    )
    pooled = np.asarray(backbone(states, training=True)["pooled_output"])
    assert np.isfinite(pooled).all()
    np.testing.assert_allclose(
        backbone(states[:1], training=False)["pooled_output"],
        backbone(states[:1, :5], training=False)["pooled_output"],
        atol=1e-5,
    )


def test_whisper_mask_padding_checks():
    with pytest.raises(ValueError, match="mask_padding needs an attention pooling"):
        SpeechWhisperBackbone(6, pooling="mean_std", mask_padding=True)
    top = keras.Sequential([keras.Input((None, 6)), keras.layers.Dense(6)])
    with pytest.raises(ValueError, match="mask_padding needs top_encoder=None"):
        SpeechWhisperBackbone(6, top_encoder=top, mask_padding=True)
    config = ExperimentConfig()
    config.model.type = "ser"
    config.model.speech.type = "whisper"
    whisper = config.model.speech.whisper
    whisper.mask_padding = True
    validate(config)
    whisper.pooling = "mean_std"
    with pytest.raises(InputError, match="mask_padding needs an attention pooling"):
        validate(config)
    whisper.pooling = "attention"
    whisper.trainable_layers = 1
    with pytest.raises(InputError, match="needs model.speech.whisper.trainable_layers=0"):
        validate(config)
    whisper.trainable_layers = 0
    config.audio.pad_mode = "repeat"
    with pytest.raises(InputError, match="needs audio.pad_mode=zeros"):
        validate(config)
