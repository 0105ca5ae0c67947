"""`trainer.ema_momentum`: validation and the best checkpoint use the moving
average of the weights, training goes on from the raw ones."""

import json
import re

import keras
import numpy as np
import pytest

from bimer_tf.config import load_config
from bimer_tf.errors import InputError
from bimer_tf.training.callbacks import AveragedWeights
from bimer_tf.training.metrics import UnweightedAccuracy
from bimer_tf.training.optimizer import ScaledAdam, make_optimizer
from bimer_tf.training.resume import EpochCheckpoint
from bimer_tf.training.run_dir import read_state

EPOCHS = 3


def toy_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 5)).astype("float32")
    y = (x[:, 0] + 0.5 * rng.normal(size=48) > 0).astype("int32")
    return (x[:32], y[:32]), (x[32:], y[32:])


def fitted(run_dir, overrides, epochs=EPOCHS, resume=False):
    """A small classifier fitted as the trainer fits: the optimizer from the
    config, the best epoch kept by `EpochCheckpoint` (which, with `resume`,
    continues from the last epoch committed in `run_dir`)."""
    config = load_config(overrides=["trainer.optimizer=adam", "trainer.learning_rate=0.05", *overrides])
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2, activation="softmax")]
    )
    model.compile(
        optimizer=make_optimizer(config),
        loss="sparse_categorical_crossentropy",
        metrics=[UnweightedAccuracy(2, name="ua")],
    )
    averaged = AveragedWeights() if config.trainer.ema_momentum > 0 else None
    state = read_state(run_dir) if resume else None
    checkpoint = EpochCheckpoint(
        run_dir, "checkpoints/best.keras", monitor="val_ua", state=state, averaged=averaged
    )
    (x, y), validation = toy_data()
    history = model.fit(
        x, y, validation_data=validation, epochs=epochs, initial_epoch=state["epoch"] if state else 0,
        batch_size=4, shuffle=False, verbose=0, callbacks=([averaged] if averaged else []) + [checkpoint],
    )
    return model, history.history


# The plain model reads the raw weights out of a backup whose optimizer also
# holds the averages, which it has no slots for.
@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_averaged_weights_are_validated_and_kept_training_is_not_changed(tmp_path):
    plain, plain_history = fitted(tmp_path / "plain", [])
    _, history = fitted(tmp_path / "averaged", ["trainer.ema_momentum=0.9"])
    run_dir = tmp_path / "averaged"

    # Training itself is that of the plain run: the last epoch's backup holds
    # the raw weights, equal to the plain run's final weights.
    raw = keras.models.clone_model(plain)
    raw.load_weights(run_dir / "backup" / f"epoch{EPOCHS}.weights.h5")
    for got, want in zip(raw.weights, plain.weights):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-7)

    # Validation read other weights than the raw ones (the plain run's
    # validation is that of the raw weights) ...
    assert all(a != pytest.approx(b, rel=1e-4) for a, b in zip(history["val_loss"], plain_history["val_loss"]))
    # ... and the best checkpoint holds the weights it was validated with.
    best = json.loads((run_dir / "checkpoints" / "best.json").read_text())
    assert best["val_ua"] == pytest.approx(max(history["val_ua"]))
    kept = keras.saving.load_model(run_dir / "checkpoints" / "best.keras")
    _, (x_val, y_val) = toy_data()
    scores = kept.evaluate(x_val, y_val, batch_size=4, verbose=0, return_dict=True)
    assert scores["loss"] == pytest.approx(history["val_loss"][best["epoch"] - 1], rel=1e-5)


def test_a_resumed_run_keeps_its_average(tmp_path):
    """Stopped after one epoch and resumed, the run ends as the uninterrupted
    one: the average is optimizer state, kept in the backup with the raw weights."""
    overrides = ["trainer.ema_momentum=0.9"]
    _, whole = fitted(tmp_path / "whole", overrides)
    fitted(tmp_path / "stopped", overrides, epochs=1)
    _, rest = fitted(tmp_path / "stopped", overrides, resume=True)
    np.testing.assert_allclose(rest["val_loss"], whole["val_loss"][1:], rtol=1e-5)
    for name in ("whole", "stopped"):
        assert (tmp_path / name / "checkpoints" / "best.keras").is_file()
    a = keras.saving.load_model(tmp_path / "whole" / "checkpoints" / "best.keras")
    b = keras.saving.load_model(tmp_path / "stopped" / "checkpoints" / "best.keras")
    for got, want in zip(b.weights, a.weights):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-7)


def test_averaging_with_learning_rate_multipliers():
    optimizer = make_optimizer(
        load_config(
            overrides=[
                "trainer.ema_momentum=0.99",
                "trainer.optimizer=adam",
                'trainer.learning_rate_multipliers={"dense/*": 0.1}',
            ]
        )
    )
    assert isinstance(optimizer, ScaledAdam) and optimizer.use_ema and optimizer.ema_momentum == 0.99
    assert not make_optimizer(load_config()).use_ema


@pytest.mark.parametrize("value", ["1.0", "-0.1", "1.5"])
def test_config_rejects_momentum_outside_zero_to_one(value):
    with pytest.raises(InputError, match=re.escape("trainer.ema_momentum must lie in [0, 1)")):
        load_config(overrides=[f"trainer.ema_momentum={value}"])


def test_a_training_run_with_averaged_weights(tiny_corpus, tiny_bert_preset, tmp_path):
    """`train` wires the option: the run ends, its best checkpoint is the
    averaged model and the HParams dashboard shows the momentum."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    from conftest import tiny_overrides
    from bimer_tf.training import train

    config = load_config(
        model="ser_resnet_crnn_at",
        overrides=tiny_overrides(tiny_corpus, tiny_bert_preset) + ["trainer.ema_momentum=0.5"],
    )
    run_dir = train(config, tmp_path / "run")
    best = keras.saving.load_model(run_dir / "checkpoints" / "best.keras")
    assert best.optimizer.use_ema and best.optimizer.ema_momentum == 0.5
    report = json.loads((run_dir / "eval.json").read_text())
    assert report["best_val_ua"] == json.loads((run_dir / "checkpoints" / "best.json").read_text())["val_ua"]
    session = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"tensors": 0})
    session.Reload()
    content = session.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    assert start.hparams["trainer.ema_momentum"].number_value == 0.5
