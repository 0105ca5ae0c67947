"""ResidualBlock, SoftAttentionPooling and AttentiveStatisticsPooling: shapes, masking, serialization."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from bimer_tf.layers import AttentiveStatisticsPooling, ResidualBlock, SoftAttentionPooling, WeightedLayerSum


def _save_and_reload(model, tmp_path):
    path = tmp_path / "model.keras"
    model.save(path)
    return keras.saving.load_model(path)


# --- ResidualBlock ---------------------------------------------------------


@pytest.mark.parametrize(
    "in_channels, filters, strides, projected",
    [
        (8, 8, 1, False),  # same shape: identity shortcut
        (8, 8, 2, True),  # downsampling needs a projection
        (4, 8, 1, True),  # so does a channel change
        (4, 8, (2, 1), True),
    ],
)
def test_residual_block_shapes_and_shortcut(in_channels, filters, strides, projected):
    block = ResidualBlock(filters, strides=strides)
    inputs = np.random.rand(2, 9, 7, in_channels).astype("float32")
    outputs = block(inputs)
    expected = block.compute_output_shape(inputs.shape)
    assert tuple(outputs.shape) == expected
    rows, cols = (strides, strides) if isinstance(strides, int) else strides
    assert expected == (2, -(-9 // rows), -(-7 // cols), filters)
    assert (block.shortcut_conv is not None) == projected
    assert (block.shortcut_norm is not None) == projected
    # Kernels of conv1 and conv2 and BN gamma/beta of norm1 and norm2, plus
    # the shortcut's kernel, gamma and beta when projected.
    assert len(block.trainable_weights) == (9 if projected else 6)


def test_residual_block_accepts_variable_time():
    inputs = keras.Input((None, 16, 4))
    outputs = ResidualBlock(8, strides=2)(inputs)
    assert tuple(outputs.shape) == (None, None, 8, 8)


def test_residual_block_negative_slope():
    # With identity convolutions and no projection the block is
    # LeakyReLU(BN(LeakyReLU(BN(x))) + x) ~= LeakyReLU(2 x) for x < 0.
    block = ResidualBlock(1, negative_slope=0.5)
    block.build((1, 1, 1, 1))
    identity = np.zeros((3, 3, 1, 1), "float32")
    identity[1, 1] = 1.0
    block.conv1.kernel.assign(identity)
    block.conv2.kernel.assign(identity)
    output = block(-np.ones((1, 1, 1, 1), "float32"), training=False)
    # BN at its initial state divides by sqrt(1 + eps), so compare loosely.
    np.testing.assert_allclose(np.asarray(output).ravel(), [0.5 * (-0.5 - 1)], rtol=1e-3)


def test_residual_block_config_round_trip():
    block = ResidualBlock(16, strides=2, negative_slope=0.2, name="block")
    restored = ResidualBlock.from_config(block.get_config())
    assert restored.get_config() == block.get_config()
    assert (restored.filters, restored.strides, restored.negative_slope) == (16, 2, 0.2)


def test_residual_block_keras_file_round_trip(tmp_path):
    inputs = keras.Input((None, 12, 3))
    model = keras.Model(inputs, ResidualBlock(6, strides=2, name="block")(inputs))
    x = np.random.rand(2, 10, 12, 3).astype("float32")
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, np.random.rand(2, 5, 6, 6), epochs=1, verbose=0)  # moves BN statistics
    restored = _save_and_reload(model, tmp_path)
    assert isinstance(restored.get_layer("block"), ResidualBlock)
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


# --- SoftAttentionPooling --------------------------------------------------


def test_attention_pooling_shapes_and_weights():
    pooling = SoftAttentionPooling(units=4)
    inputs = np.random.rand(3, 7, 5).astype("float32")
    pooled, weights = pooling(inputs, return_attention_scores=True)
    assert tuple(pooled.shape) == (3, 5)
    assert tuple(weights.shape) == (3, 7)
    np.testing.assert_allclose(np.sum(weights, axis=-1), 1.0, rtol=1e-5)
    # The output is the attention-weighted sum of the steps.
    np.testing.assert_allclose(pooled, np.einsum("bt,btd->bd", weights, inputs), rtol=1e-5)
    np.testing.assert_allclose(pooling(inputs), pooled)


def test_attention_pooling_symbolic_with_scores():
    inputs = keras.Input((None, 6))
    pooled, weights = SoftAttentionPooling(units=3)(inputs, return_attention_scores=True)
    assert tuple(pooled.shape) == (None, 6)
    assert tuple(weights.shape) == (None, None)


def test_attention_pooling_ignores_masked_steps():
    pooling = SoftAttentionPooling(units=4)
    inputs = np.random.rand(2, 6, 3).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]], dtype=bool)
    changed = inputs.copy()
    changed[~mask] = 100.0  # values at masked steps must not matter
    pooled, weights = pooling(inputs, mask=mask, return_attention_scores=True)
    np.testing.assert_allclose(pooling(changed, mask=mask), pooled, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(weights)[~mask], 0.0, atol=1e-7)
    np.testing.assert_allclose(np.sum(weights, axis=-1), 1.0, rtol=1e-5)
    # An int mask means the same as a bool one.
    np.testing.assert_allclose(pooling(inputs, mask=mask.astype("int32")), pooled)


def test_attention_pooling_uses_keras_mask():
    # A mask made upstream (Embedding mask_zero) reaches the pooling layer.
    token_ids = keras.Input((None,), dtype="int32")
    embedded = keras.layers.Embedding(10, 4, mask_zero=True)(token_ids)
    model = keras.Model(token_ids, SoftAttentionPooling(units=3)(embedded))
    ids = np.array([[3, 4, 0, 0], [3, 4, 7, 9]], dtype="int32")
    outputs = model.predict(ids, verbose=0)
    np.testing.assert_allclose(outputs[0], model.predict(ids[:1, :2], verbose=0)[0], rtol=1e-5)
    assert not np.allclose(outputs[0], outputs[1])


def test_attention_pooling_mixed_precision_mask():
    pooling = SoftAttentionPooling(units=4, dtype="mixed_float16")
    inputs = np.random.rand(2, 5, 3).astype("float16")
    mask = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=bool)
    pooled = np.asarray(pooling(inputs, mask=mask))
    assert pooled.dtype == np.float16
    assert np.all(np.isfinite(pooled))


def test_attentive_statistics_pooling_is_the_weighted_mean_and_std():
    pooling = AttentiveStatisticsPooling(units=4)
    inputs = np.random.default_rng(0).random((3, 7, 5)).astype("float32")
    mask = np.ones((3, 7), bool)
    mask[0, 4:] = False
    pooled, weights = pooling(inputs, mask=mask, return_attention_scores=True)
    weights = np.asarray(weights)
    assert tuple(pooled.shape) == (3, 10) == tuple(pooling.compute_output_shape((3, 7, 5)))
    mean = np.einsum("bt,btd->bd", weights, inputs)
    std = np.sqrt(np.einsum("bt,btd->bd", weights, (inputs - mean[:, None]) ** 2) + 1e-6)
    np.testing.assert_allclose(pooled, np.concatenate([mean, std], axis=-1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(weights[0, 4:], 0.0, atol=1e-7)
    # a constant sequence has no spread: the std is the floor, not NaN
    flat = np.asarray(pooling(np.ones((1, 5, 5), "float32")))
    np.testing.assert_allclose(flat[0, 5:], np.sqrt(1e-6), rtol=1e-2)


def test_attentive_statistics_pooling_round_trip(tmp_path):
    inputs = keras.Input((None, 6))
    model = keras.Model(inputs, AttentiveStatisticsPooling(units=3, epsilon=1e-5, name="pool")(inputs))
    path = tmp_path / "pool.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    data = np.random.default_rng(1).random((2, 4, 6)).astype("float32")
    np.testing.assert_allclose(restored.predict(data, verbose=0), model.predict(data, verbose=0), rtol=1e-6)
    assert restored.get_layer("pool").get_config()["epsilon"] == 1e-5


def test_attention_pooling_config_and_keras_file_round_trip(tmp_path):
    layer = SoftAttentionPooling(units=5, name="pool")
    assert SoftAttentionPooling.from_config(layer.get_config()).get_config() == layer.get_config()
    inputs = keras.Input((None, 4))
    model = keras.Model(inputs, layer(inputs))
    x = np.random.rand(2, 8, 4).astype("float32")
    restored = _save_and_reload(model, tmp_path)
    assert restored.get_layer("pool").units == 5
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


# --- WeightedLayerSum -----------------------------------------------------------


def _standardised(x):
    return (x - x.mean(axis=-1, keepdims=True)) / np.sqrt(x.var(axis=-1, keepdims=True) + 1e-5)


def test_weighted_layer_sum_is_the_softmax_weighted_sum_of_standardised_layers():
    x = np.random.default_rng(0).normal(size=(2, 5, 3, 8)).astype("float32")
    x[:, :, 2] *= 50.0  # a deep layer's larger residual stream
    layer = WeightedLayerSum()
    out = np.asarray(layer(x))
    assert out.shape == (2, 5, 8)
    # equal weights at the start: the plain mean of the standardised layers
    np.testing.assert_allclose(out, _standardised(x).mean(axis=2), atol=1e-5)
    logits = np.array([1.0, -2.0, 0.5], "float32")
    layer.layer_logits.assign(logits)
    weights = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(np.asarray(layer.layer_weights()), weights, rtol=1e-6)
    expected = np.einsum("btld,l->btd", _standardised(x), weights)
    np.testing.assert_allclose(np.asarray(layer(x)), expected, atol=1e-5)
    # a layer's gain does not change the sum
    scaled = x.copy()
    scaled[:, :, 0] *= 7.0
    np.testing.assert_allclose(np.asarray(layer(scaled)), expected, atol=1e-4)


def test_weighted_layer_sum_learns_its_weights_and_round_trips(tmp_path):
    inputs = keras.Input((None, 3, 4))
    model = keras.Model(inputs, keras.layers.Dense(2)(WeightedLayerSum(name="sum")(inputs)))
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    x = np.random.default_rng(1).normal(size=(4, 6, 3, 4)).astype("float32")
    model.fit(x, np.ones((4, 6, 2), "float32"), epochs=1, verbose=0)
    assert not np.allclose(np.asarray(model.get_layer("sum").layer_logits), 0.0)
    restored = _save_and_reload(model, tmp_path)
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_weighted_layer_sum_needs_a_layer_axis():
    with pytest.raises(ValueError, match=r"\[batch, time, layers, dim\]"):
        WeightedLayerSum()(np.zeros((2, 5, 8), "float32"))
