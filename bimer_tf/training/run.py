"""The fit loop: resolve data, build the model under a tf.distribute strategy, fit,
select the best epoch on validation UA, evaluate on the held-out split.

Writes the run directory (its format: `run_dir.py`): `config.yaml`,
`data_report.json`, `checkpoints/best.keras` (+ `best.json`: its epoch and
validation UA), `tensorboard/`, `eval.json`, `confusion.png`; while training,
`backup/` holds the last finished epoch (see `resume.py`).

Under `runtime.strategy=multi_worker` every worker runs this same function;
only the chief (worker 0) writes the run directory.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import keras
import tensorflow as tf

from bimer_tf.config import ExperimentConfig, save_config
from bimer_tf.pipeline.dataset import build_dataset, make_spec_augment, validate_rows
from bimer_tf.errors import InputError
from bimer_tf.evaluation.metrics import classification_report, predict_dataset, write_eval
from bimer_tf.pipeline.frontend import build_speech_frontend
from bimer_tf.training.callbacks import (
    ValidationConfusionImage,
    ValidationScalars,
    flush_keras_tensorboard,
    write_hparams,
)
from bimer_tf.training.run_data import resolve_data
from bimer_tf.training.metrics import UnweightedAccuracy
from bimer_tf.training.resume import EpochCheckpoint, trim_event_files
from bimer_tf.training.run_dir import (
    BACKUP_DIR,
    BEST_CHECKPOINT,
    config_differences,
    prepare_run_dir,
    read_state,
)
from bimer_tf.training.strategy import is_chief, make_strategy, patch_keras_distributed, strategy_name


def resume_point(config: ExperimentConfig, run_dir: Path) -> tuple[str, dict | None]:
    """What `--resume` finds in `run_dir`: ("resume", state), ("finished", None)
    or ("fresh", None). A run made with another config is an error."""
    state = read_state(run_dir)
    finished = (run_dir / "eval.json").is_file()
    if state is None and not finished:
        print(f"no finished epoch to resume in {run_dir}; starting from the beginning")
        return "fresh", None
    if (run_dir / "config.yaml").is_file():
        differences = config_differences(config, run_dir / "config.yaml")
        if differences:
            raise InputError(
                f"cannot resume {run_dir}: its config.yaml differs in {', '.join(differences[:6])}; "
                "pass the same --config/--set as the interrupted run, or drop --resume to replace it"
            )
    if state is None:
        print(f"{run_dir} is a finished run (eval.json present); nothing to resume")
        return "finished", None
    return "resume", state


def class_weights(rows: list[dict], labels: list[str], mode: str) -> dict[int, float] | None:
    """`trainer.class_weight`: None, or {class id: n / (n_classes * count)} ("balanced").

    Counts are over the given (kept) rows and the classes they contain, so
    the weights average to one over the rows.
    """
    if mode == "none":
        return None
    counts = Counter(labels.index(row["label"]) for row in rows)
    return {index: len(rows) / (len(counts) * count) for index, count in sorted(counts.items())}


def train(config: ExperimentConfig, output: str | Path, resume: bool = False) -> Path:
    """Runs one experiment and returns its run directory.

    `resume=True` continues an interrupted run in `output` from its last
    finished epoch (a finished run is left as it is); otherwise an earlier run
    in `output` is replaced.
    """
    from bimer_tf.models import build_model, build_text_preprocessor, task_modalities
    from bimer_tf.training.initialization import initialize_from_runs

    keras.utils.set_random_seed(config.trainer.seed)
    if config.runtime.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    labels = config.data.labels

    strategy = make_strategy(config.runtime.strategy)
    print(f"strategy: {strategy_name(strategy)} with {strategy.num_replicas_in_sync} replica(s)")
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    if resume and multi_worker:
        raise InputError(
            "--resume is not supported with runtime.strategy=multi_worker: the other workers "
            "keep no backup; start the run again without --resume"
        )
    # All workers run the same callbacks and checkpoint saves, since reading the
    # synchronised metric variables takes every worker (a collective op); the
    # non-chief ones write into a scratch directory that is removed at the end.
    chief = is_chief(strategy)
    scratch = None if chief else tempfile.TemporaryDirectory(prefix="bimer_worker_")
    run_dir = Path(output) if chief else Path(scratch.name) / "run"
    mode, state = resume_point(config, run_dir) if resume else ("fresh", None)
    if mode == "finished":
        return run_dir
    run_dir = prepare_run_dir(run_dir, resume=state is not None)
    save_config(config, run_dir / "config.yaml")

    needs_audio, needs_text = task_modalities(config)
    data = resolve_data(config)
    frontend = build_speech_frontend(config) if needs_audio else None
    preprocessor = build_text_preprocessor(config) if needs_text else None
    checks = {
        split: validate_rows(rows, labels, frontend, needs_text) for split, rows in data.splits.items()
    }
    report = {split: check.summary() for split, check in checks.items()}
    weights = class_weights(checks["train"].kept, labels, config.trainer.class_weight)
    if weights is not None:
        report["class_weight"] = {labels[index]: weight for index, weight in weights.items()}
    (run_dir / "data_report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    for split, check in checks.items():
        summary = check.summary()
        print(f"{split}: {summary['kept']} of {summary['seen']} rows, per class {summary['kept_per_class']}")
        for item in check.skipped[:5]:
            print(f"  skipped {item['id']}: {item['reason']}")
        if len(check.skipped) > 5:
            print(f"  ... {len(check.skipped) - 5} more in {run_dir / 'data_report.json'}")
    if weights is not None:
        print("class weights (balanced): " + ", ".join(f"{k} {v:.3f}" for k, v in report["class_weight"].items()))
    steps_per_epoch = max(1, math.ceil(len(checks["train"].kept) / config.data.batch_size))

    with strategy.scope():
        model = initialize_from_runs(build_model(config), config)
        ua = UnweightedAccuracy(len(labels), name="ua")
        model.compile(
            optimizer=make_optimizer(config, steps_per_epoch),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=["accuracy", ua],
        )
    patch_keras_distributed(model, strategy)

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

    log_dir = run_dir / "tensorboard"
    initial_epoch = 0
    if state is None:
        write_hparams(config, log_dir)
    else:
        initial_epoch = state["epoch"]
        dropped = trim_event_files(log_dir, state["epoch"], state["step"])
        print(
            f"resuming {run_dir} after epoch {initial_epoch} of {config.trainer.epochs} "
            f"(best validation UA so far {state['best']} at epoch {state['best_epoch']}"
            + (f"; dropped {dropped} TensorBoard events written after that epoch)" if dropped else ")")
        )
    train_ds, val_ds = dataset("train", True), dataset("val", False)
    # Resumed: no second graph / model summary in the one TensorBoard history.
    tensorboard = keras.callbacks.TensorBoard(str(log_dir), write_graph=state is None)
    callbacks = [
        tensorboard,
        ValidationConfusionImage(ua, labels, log_dir),
        ValidationScalars(ua, labels, log_dir, best=state and state["best"]),
    ]
    early_stopping = None
    if config.trainer.early_stopping_patience > 0:
        early_stopping = keras.callbacks.EarlyStopping(
            monitor="val_ua", mode="max", patience=config.trainer.early_stopping_patience
        )
        callbacks.append(early_stopping)
    checkpoint = EpochCheckpoint(
        run_dir,
        BEST_CHECKPOINT,
        monitor="val_ua",
        state=state,
        early_stopping=early_stopping,
        flush=[lambda: flush_keras_tensorboard(tensorboard)],
    )
    callbacks.append(checkpoint)  # last: it commits what the others did this epoch
    epochs = config.trainer.epochs
    if state is not None and state["stopped_early"]:
        epochs = initial_epoch  # early stopping had ended the run; only evaluation is left
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        initial_epoch=initial_epoch,
        class_weight=weights,
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
    best_val_ua = None if math.isinf(checkpoint.best) else checkpoint.best
    result.update({"best_epoch": checkpoint.best_epoch, "best_val_ua": best_val_ua})
    write_eval(result, run_dir, protocol=data.protocol, split=f"{data.fold.name}/{split}")
    shutil.rmtree(run_dir / BACKUP_DIR, ignore_errors=True)  # the run is complete
    print(
        f"{split} ({data.protocol}, fold {data.fold.name}, n={result['n']}): "
        f"UA {result['ua']:.4f}  WA {result['wa']:.4f}  macro-F1 {result['macro_f1']:.4f} "
        f"(best epoch {checkpoint.best_epoch}, validation UA {best_val_ua})"
    )
    print(f"run directory: {run_dir}")
    return run_dir


def learning_rate(config: ExperimentConfig, steps_per_epoch: int):
    """`trainer.learning_rate`, or its warmup + cosine decay schedule over all steps."""
    t = config.trainer
    if t.lr_schedule == "constant":
        return t.learning_rate
    total = t.epochs * steps_per_epoch
    warmup = int(round(t.warmup_ratio * total))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=max(1, total - warmup),
        alpha=0.0,
        warmup_target=t.learning_rate,
        warmup_steps=warmup,
    )


def make_optimizer(config: ExperimentConfig, steps_per_epoch: int = 1) -> keras.optimizers.Optimizer:
    t = config.trainer
    rate = learning_rate(config, steps_per_epoch)
    if t.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=rate, weight_decay=t.weight_decay)
    if t.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=rate)
    raise InputError(f"unknown trainer.optimizer '{t.optimizer}'; choose adamw or adam")
