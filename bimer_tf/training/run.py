"""The fit loop: resolve data, build the model under a tf.distribute strategy, fit,
select the best epoch on validation UA, evaluate on the held-out split.

Writes the run directory of DESIGN.md section 3:
`config.yaml`, `data_report.json`, `checkpoints/best.keras`, `tensorboard/`,
`eval.json`, `confusion.png`.

Under `runtime.strategy=multi_worker` every worker runs this same function;
only the chief (worker 0) writes the run directory.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

from bimer_tf.config import ExperimentConfig, save_config
from bimer_tf.data.pipeline import build_dataset, make_spec_augment, validate_rows
from bimer_tf.errors import InputError
from bimer_tf.evaluation import classification_report, predict_dataset, write_eval
from bimer_tf.frontend import build_speech_frontend
from bimer_tf.training.callbacks import ValidationConfusionImage
from bimer_tf.training.data import resolve_data
from bimer_tf.training.metrics import UnweightedAccuracy
from bimer_tf.training.strategy import is_chief, make_strategy, patch_keras_multi_worker, strategy_name

BEST_CHECKPOINT = "checkpoints/best.keras"


def prepare_run_dir(output: str | Path) -> Path:
    run_dir = Path(output)
    if run_dir.exists():
        print(f"replacing the previous run in {run_dir}")
        for part in ("checkpoints", "tensorboard", "eval.json", "confusion.png"):
            target = run_dir / part
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    return run_dir


def train(config: ExperimentConfig, output: str | Path) -> Path:
    """Runs one experiment and returns its run directory."""
    from bimer_tf.models import build_model, build_text_preprocessor, task_modalities

    keras.utils.set_random_seed(config.trainer.seed)
    if config.runtime.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    labels = config.data.labels

    strategy = make_strategy(config.runtime.strategy)
    print(f"strategy: {strategy_name(strategy)} with {strategy.num_replicas_in_sync} replica(s)")
    # All workers run the same callbacks and checkpoint saves, since reading the
    # synchronised metric variables takes every worker (a collective op); the
    # non-chief ones write into a scratch directory that is removed at the end.
    chief = is_chief(strategy)
    scratch = None if chief else tempfile.TemporaryDirectory(prefix="bimer_worker_")
    run_dir = prepare_run_dir(output if chief else Path(scratch.name) / "run")
    save_config(config, run_dir / "config.yaml")
    with strategy.scope():
        model = build_model(config)
        ua = UnweightedAccuracy(len(labels), name="ua")
        model.compile(
            optimizer=make_optimizer(config),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=["accuracy", ua],
        )
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        patch_keras_multi_worker(model, strategy)
    needs_audio, needs_text = task_modalities(config)

    data = resolve_data(config)
    frontend = build_speech_frontend(config) if needs_audio else None
    preprocessor = build_text_preprocessor(config) if needs_text else None
    checks = {
        split: validate_rows(rows, labels, frontend, needs_text) for split, rows in data.splits.items()
    }
    report = {split: check.summary() for split, check in checks.items()}
    (run_dir / "data_report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    for split, check in checks.items():
        summary = check.summary()
        print(f"{split}: {summary['kept']} of {summary['seen']} rows, per class {summary['kept_per_class']}")
        for item in check.skipped[:5]:
            print(f"  skipped {item['id']}: {item['reason']}")
        if len(check.skipped) > 5:
            print(f"  ... {len(check.skipped) - 5} more in {run_dir / 'data_report.json'}")

    # The datasets come from in-memory file lists, not files to divide among
    # workers: each worker runs the whole pipeline and keeps its share of every
    # batch. The shuffle is seeded, so all workers see the same order and the
    # shares are disjoint.
    sharding = tf.data.Options()
    sharding.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA

    def dataset(split, training):
        return build_dataset(
            checks[split].kept,
            labels,
            frontend,
            preprocessor,
            batch_size=config.data.batch_size,
            training=training,
            spec_augment=make_spec_augment(config.spec_augment, seed=config.trainer.seed),
            shuffle_buffer=config.data.shuffle_buffer,
            cache=config.data.cache,
            seed=config.trainer.seed,
        ).with_options(sharding)

    train_ds, val_ds = dataset("train", True), dataset("val", False)
    callbacks = [
        keras.callbacks.ModelCheckpoint(
            str(run_dir / BEST_CHECKPOINT), monitor="val_ua", mode="max", save_best_only=True
        ),
        keras.callbacks.TensorBoard(str(run_dir / "tensorboard")),
        ValidationConfusionImage(ua, labels, run_dir / "tensorboard"),
    ]
    if config.trainer.early_stopping_patience > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_ua", mode="max", patience=config.trainer.early_stopping_patience
            )
        )
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=config.trainer.epochs,
        callbacks=callbacks,
        shuffle=False,  # the training dataset shuffles itself, every epoch
    )
    if not chief:
        scratch.cleanup()
        print("training done; the chief worker evaluates and writes the run directory")
        return Path(output)

    best = keras.saving.load_model(run_dir / BEST_CHECKPOINT)
    split = "test" if checks["test"].kept else "val"
    y_true, y_prob = predict_dataset(best, dataset(split, False))
    result = classification_report(y_true, y_prob, labels)
    write_eval(result, run_dir, protocol=data.protocol, split=f"{data.fold.name}/{split}")
    print(
        f"{split} ({data.protocol}, fold {data.fold.name}, n={result['n']}): "
        f"UA {result['ua']:.4f}  WA {result['wa']:.4f}  macro-F1 {result['macro_f1']:.4f}"
    )
    print(f"run directory: {run_dir}")
    return run_dir


def make_optimizer(config: ExperimentConfig) -> keras.optimizers.Optimizer:
    t = config.trainer
    if t.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=t.learning_rate, weight_decay=t.weight_decay)
    if t.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=t.learning_rate)
    raise InputError(f"unknown trainer.optimizer '{t.optimizer}'; choose adamw or adam")
