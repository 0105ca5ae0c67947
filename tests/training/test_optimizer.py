"""Per-variable learning rates (`trainer.learning_rate_multipliers`)."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from bimer_tf.config import load_config
from bimer_tf.errors import InputError
from bimer_tf.training.optimizer import ScaledAdam, ScaledAdamW, make_optimizer, rate_factors


def two_layer_model():
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, name="body")(inputs)
    outputs = keras.layers.Dense(2, name="head")(hidden)
    return keras.Model(inputs, outputs)


def weights_of(model):
    return {v.path: keras.ops.convert_to_numpy(v).copy() for v in model.trainable_variables}


def one_step(model, optimizer, gradient_scale=1.0):
    """One optimizer step on fixed gradients (all ones times a scale), in a
    tf.function as in `fit`; returns each variable's change."""
    before = weights_of(model)
    optimizer.build(model.trainable_variables)

    @tf.function
    def step():
        grads = [tf.ones_like(v) * gradient_scale for v in model.trainable_variables]
        optimizer.apply_gradients(zip(grads, model.trainable_variables))

    step()
    after = weights_of(model)
    return {path: after[path] - before[path] for path in before}


def test_rate_factors_match_whole_paths_and_default_to_one():
    paths = ["body/kernel", "body/bias", "head/kernel", "encoder_layer_3/query/kernel"]
    assert rate_factors(paths, {"body/*": 0.1, "encoder_layer_*": 2}) == [0.1, 0.1, 1.0, 2.0]
    # Overlapping patterns are fine when they agree.
    assert rate_factors(paths, {"body/*": 0.5, "*/kernel": 0.5}) == [0.5, 0.5, 0.5, 0.5]


def test_rate_factors_reject_typos_and_conflicts():
    paths = ["body/kernel", "head/kernel"]
    with pytest.raises(InputError, match=r"'bdy/\*' matches no trainable variable.*body, head"):
        rate_factors(paths, {"bdy/*": 0.1})
    with pytest.raises(InputError, match="'body' matches no trainable variable.*use '\\*'"):
        rate_factors(paths, {"body": 0.1})  # a layer name alone is not a path
    with pytest.raises(InputError, match="'body/kernel' is matched by \\*/kernel, body/\\* with different factors"):
        rate_factors(paths, {"body/*": 0.1, "*/kernel": 2.0})


def test_adam_steps_scale_with_the_factor():
    keras.utils.set_random_seed(0)
    plain_model = two_layer_model()
    scaled_model = two_layer_model()
    scaled_model.set_weights(plain_model.get_weights())
    plain = one_step(plain_model, keras.optimizers.Adam(learning_rate=1e-2))
    scaled = one_step(scaled_model, ScaledAdam({"body/*": 0.1}, learning_rate=1e-2))
    for path in plain:
        factor = 0.1 if path.startswith("body/") else 1.0
        np.testing.assert_allclose(scaled[path], factor * plain[path], rtol=1e-5)
        assert np.all(plain[path] != 0)


def test_adamw_weight_decay_scales_with_the_factor():
    keras.utils.set_random_seed(0)
    model = two_layer_model()
    before = weights_of(model)
    lr, wd = 0.5, 0.2
    # Zero gradients: Adam's own step is zero, what changes is the decay alone.
    change = one_step(model, ScaledAdamW({"head/*": 3.0}, learning_rate=lr, weight_decay=wd), gradient_scale=0.0)
    for path, delta in change.items():
        factor = 3.0 if path.startswith("head/") else 1.0
        np.testing.assert_allclose(delta, -before[path] * wd * lr * factor, rtol=1e-5, atol=1e-7)
    assert np.any(change["head/kernel"] != 0) and np.any(change["body/kernel"] != 0)


def test_config_to_fit_and_back_from_a_keras_file(tmp_path):
    config = load_config(
        overrides=[
            'trainer.learning_rate_multipliers={"body/*": 0.25}',
            "trainer.learning_rate=0.01",
        ]
    )
    assert config.trainer.learning_rate_multipliers == {"body/*": 0.25}
    keras.utils.set_random_seed(1)
    model = two_layer_model()
    optimizer = make_optimizer(config)
    assert isinstance(optimizer, ScaledAdamW)
    model.compile(optimizer=optimizer, loss="mse")
    x, y = np.random.rand(8, 3).astype("float32"), np.random.rand(8, 2).astype("float32")
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert optimizer._factors == (0.25, 0.25, 1.0, 1.0)
    path = tmp_path / "m.keras"
    model.save(path)
    restored = keras.saving.load_model(path)  # compiled, as the trainer reloads its best checkpoint
    assert isinstance(restored.optimizer, ScaledAdamW)
    assert restored.optimizer.learning_rate_multipliers == {"body/*": 0.25}


def test_fit_names_a_pattern_that_matches_nothing():
    model = two_layer_model()
    model.compile(optimizer=ScaledAdam({"encoder/*": 0.1}), loss="mse")
    x, y = np.zeros((4, 3), "float32"), np.zeros((4, 2), "float32")
    with pytest.raises(InputError, match="'encoder/\\*' matches no trainable variable"):
        model.fit(x, y, epochs=1, verbose=0)


def test_plain_optimizers_without_multipliers():
    optimizer = make_optimizer(load_config())
    assert type(optimizer) is keras.optimizers.AdamW
    assert type(make_optimizer(load_config(overrides=["trainer.optimizer=adam"]))) is keras.optimizers.Adam


@pytest.mark.parametrize(
    "value, message",
    [
        ("5", "trainer.learning_rate_multipliers' expects a mapping"),
        ('{"body/*": 0}', r"learning_rate_multipliers\['body/\*'\] must be a positive number"),
        ('{"body/*": .inf}', "must be a positive number"),
        ('{"body/*": fast}', "trainer.learning_rate_multipliers.body/\\*' expects float"),
    ],
)
def test_config_rejects_bad_multipliers(value, message):
    with pytest.raises(InputError, match=message):
        load_config(overrides=[f"trainer.learning_rate_multipliers={value}"])


TWO_REPLICAS = """
import json, sys
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from bimer_tf.training.optimizer import ScaledAdamW

def fitted(strategy):
    keras.utils.set_random_seed(3)
    with strategy.scope():
        inputs = keras.Input((3,))
        outputs = keras.layers.Dense(2, name="head")(keras.layers.Dense(4, name="body")(inputs))
        model = keras.Model(inputs, outputs)
        model.compile(optimizer=ScaledAdamW({"body/*": 0.1, "head/*": 3.0}, learning_rate=0.05,
                                            weight_decay=0.5), loss="mse")
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 3), dtype="float32"), rng.random((16, 2), dtype="float32")
    model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    return [w.tolist() for w in model.get_weights()]

mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
print(json.dumps({"replicas": mirrored.num_replicas_in_sync,
                  "mirrored": fitted(mirrored), "default": fitted(tf.distribute.get_strategy())}))
"""


def test_two_replicas_train_as_one(tmp_path):
    """Under MirroredStrategy (two CPU devices, one process) the scaled steps
    and the scaled weight decay give the same weights as without it."""
    import json
    import os
    import subprocess
    import sys

    from conftest import REPO_ROOT

    done = subprocess.run(
        [sys.executable, "-c", TWO_REPLICAS], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    for mirrored, single in zip(result["mirrored"], result["default"]):
        np.testing.assert_allclose(mirrored, single, rtol=1e-4, atol=1e-6)
