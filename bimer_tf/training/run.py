"""The fit loop: resolve data, build the model under a tf.distribute strategy, fit,
select the best epoch on validation UA, evaluate on the held-out split.

Writes the run directory (its format: `run_dir.py`): `config.yaml`,
`data_report.json`, `checkpoints/best.keras` (+ `best.json`: its epoch and
validation UA), `tensorboard/`, `eval.json`, `confusion.png`; while training,
`backup/` holds the last finished epoch (see `resume.py`) and, when reading
sharded TFRecords (`data.format: tfrecord`) with `data.cache`, `cache/` the
features cached on disk (removed when the run ends).

Under `runtime.strategy=multi_worker` every worker runs this same function;
only the chief (worker 0) writes the run directory. Reading the manifest,
every worker reads all rows and keeps its share of each batch. Reading
shards, each worker reads its own training shard files
(`AutoShardPolicy.FILE`, file i to worker i % workers), endlessly, for the
same number of steps per epoch (its files may hold more or fewer rows than
another worker's); validation stays exact: every worker reads every
validation shard and keeps its share of each batch.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import keras
import tensorflow as tf

from bimer_tf.config import ExperimentConfig, save_config
from bimer_tf.pipeline.dataset import (
    build_dataset,
    build_shard_dataset,
    check_shard_split,
    make_spec_augment,
    validate_rows,
)
from bimer_tf.errors import InputError
from bimer_tf.evaluation.metrics import classification_report, predict_dataset, write_eval
from bimer_tf.pipeline.frontend import build_speech_frontend
from bimer_tf.training.callbacks import (
    AveragedWeights,
    ValidationConfusionImage,
    ValidationScalars,
    flush_keras_tensorboard,
    write_hparams,
)
from bimer_tf.training.distill import one_hot_targets, teacher_targets
from bimer_tf.training.run_data import resolve_data
from bimer_tf.training.metrics import UnweightedAccuracy
from bimer_tf.training.optimizer import make_optimizer
from bimer_tf.training.resume import EpochCheckpoint, trim_event_files
from bimer_tf.training.run_dir import (
    BACKUP_DIR,
    BEST_CHECKPOINT,
    config_differences,
    prepare_run_dir,
    read_state,
)
from bimer_tf.training.strategy import is_chief, make_strategy, patch_keras_distributed, strategy_name

# Features cached on disk when reading shards, inside the run directory.
SHARD_CACHE_DIR = "cache"


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
    return class_weights_from_counts(Counter(row["label"] for row in rows), labels, mode)


def class_weights_from_counts(per_class: dict, labels: list[str], mode: str) -> dict[int, float] | None:
    """`class_weights` from kept rows per label (what a shard index gives)."""
    if mode == "none":
        return None
    counts = {labels.index(label): count for label, count in per_class.items() if count}
    total = sum(counts.values())
    return {index: total / (len(counts) * count) for index, count in sorted(counts.items())}


def input_pipeline(strategy: tf.distribute.Strategy) -> tuple[int, int]:
    """(this worker's input pipeline, how many there are): what `AutoShardPolicy.FILE`
    divides files by. The chief comes first, then the workers in TF_CONFIG order."""
    resolver = strategy.cluster_resolver
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 0, 1
    cluster = resolver.cluster_spec().as_dict()
    chiefs = len(cluster.get("chief", []))
    count = chiefs + len(cluster.get("worker", []))
    if resolver.task_type == "chief":
        return 0, count
    return chiefs + int(resolver.task_id), count


def assign_shards(check, strategy, split: str) -> None:
    """Records (and prints) the shard files of `split` this worker reads under
    multi-worker training: file i goes to input pipeline i % workers, as
    `AutoShardPolicy.FILE` divides them."""
    index, count = input_pipeline(strategy)
    if count == 1:
        return
    if len(check.files) < count:
        raise InputError(
            f"the {split} split has {len(check.files)} shard file(s) for {count} workers; each worker "
            f"reads its own shards: write at least {count} (`python -m bimer_tf.data.shard ... "
            f"--min-shards {count}`)"
        )
    check.worker_files = check.files[index::count]
    names = ", ".join(path.rsplit("/", 1)[-1] for path in check.worker_files)
    print(f"{split}: worker {index} of {count} reads {len(check.worker_files)} of {len(check.files)} shards: {names}")


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
    cache_dir = run_dir / SHARD_CACHE_DIR
    shutil.rmtree(cache_dir, ignore_errors=True)  # a cache left by an interrupted run
    if data.shards is not None:
        checks = {
            split: check_shard_split(data.shards.directory, index, labels, frontend, needs_text)
            for split, index in data.shards.indexes.items()
        }
        print(f"reading sharded TFRecords from {data.shards.directory}")
        if multi_worker:
            assign_shards(checks["train"], strategy, "train")
        if config.data.cache:
            cache_dir.mkdir(parents=True)
    else:
        checks = {
            split: validate_rows(rows, labels, frontend, needs_text) for split, rows in data.splits.items()
        }
    report = {split: check.summary() for split, check in checks.items()}
    weights = class_weights_from_counts(
        report["train"]["kept_per_class"], labels, config.trainer.class_weight
    )
    if weights is not None:
        report["class_weight"] = {labels[index]: weight for index, weight in weights.items()}
    distilled = None
    if config.trainer.teachers:
        if data.shards is not None:
            raise InputError(
                "trainer.teachers needs data.format=manifest: the teachers' probabilities are joined "
                "to manifest rows"
            )
        distilled = teacher_targets(config, checks["train"].kept, data)
        report["teachers"] = distilled.report(config)
    (run_dir / "data_report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    for split, check in checks.items():
        summary = check.summary()
        print(f"{split}: {summary['kept']} of {summary['seen']} rows, per class {summary['kept_per_class']}")
        for item in summary["skipped_items"][:5]:
            print(f"  skipped {item['id']}: {item['reason']}")
        if len(summary["skipped_items"]) > 5:
            print(f"  ... {len(summary['skipped_items']) - 5} more in {run_dir / 'data_report.json'}")
        for reason, count in summary.get("skipped_reasons", {}).items():
            print(f"  skipped {count}: {reason}")
    if weights is not None:
        print("class weights (balanced): " + ", ".join(f"{k} {v:.3f}" for k, v in report["class_weight"].items()))
    if distilled is not None:
        teachers = report["teachers"]
        print(
            f"distilling {len(config.trainer.teachers)} teacher(s) (weight {teachers['weight']}, temperature "
            f"{teachers['temperature']}): their UA on the training rows {teachers['train_ua']}, mean target "
            f"on the label {teachers['mean_target_on_label']}"
        )
    steps_per_epoch = max(1, math.ceil(report["train"]["kept"] / config.data.batch_size))

    with strategy.scope():
        model = initialize_from_runs(build_model(config), config)
        ua = UnweightedAccuracy(len(labels), name="ua")
        model.compile(
            optimizer=make_optimizer(config, steps_per_epoch),
            # A distilled run's targets are distributions (its validation rows' one-hot).
            loss=keras.losses.CategoricalCrossentropy()
            if distilled is not None
            else keras.losses.SparseCategoricalCrossentropy(),
            metrics=["accuracy", ua],
        )
    patch_keras_distributed(model, strategy)

    # Manifest rows come from in-memory file lists, not files to divide among
    # workers: each worker runs the whole pipeline and keeps its share of every
    # batch. The shuffle is seeded, so all workers see the same order and the
    # shares are disjoint. Training shards are files: each worker reads its
    # own (file i goes to worker i % workers, before the files are shuffled).
    sharding = tf.data.Options()
    sharding.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    file_sharding = tf.data.Options()
    file_sharding.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.FILE
    # Workers reading their own shards run out at different steps, and a
    # worker must not wait for the others in a collective op: their training
    # data repeats, and every epoch is `steps_per_epoch` steps.
    endless = multi_worker and data.shards is not None

    def dataset(split, training, targets=None):
        if data.shards is not None:
            return build_shard_dataset(
                checks[split].files,
                labels,
                frontend,
                preprocessor,
                count=checks[split].kept,
                batch_size=config.data.batch_size,
                training=training,
                spec_augment=make_spec_augment(config.spec_augment, seed=config.trainer.seed),
                shuffle_buffer=config.data.shuffle_buffer,
                cache=str(cache_dir / split) if config.data.cache else None,
                seed=config.trainer.seed,
                repeat=endless and training,
            ).with_options(file_sharding if training else sharding)
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
            targets=targets,
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
    if distilled is None:
        train_ds, val_ds = dataset("train", True), dataset("val", False)
    else:
        train_ds = dataset("train", True, distilled.targets)
        val_ds = dataset("val", False, one_hot_targets(checks["val"].kept, labels))
    # Resumed: no second graph / model summary in the one TensorBoard history.
    tensorboard = keras.callbacks.TensorBoard(str(log_dir), write_graph=state is None)
    callbacks = [
        tensorboard,
        ValidationConfusionImage(ua, labels, log_dir),
        ValidationScalars(ua, labels, log_dir, best=state and state["best"]),
    ]
    averaged = AveragedWeights() if config.trainer.ema_momentum > 0 else None
    if averaged is not None:
        callbacks.insert(0, averaged)
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
        averaged=averaged,
    )
    callbacks.append(checkpoint)  # last: it commits what the others did this epoch
    epochs = config.trainer.epochs
    if state is not None and state["stopped_early"]:
        epochs = initial_epoch  # early stopping had ended the run; only evaluation is left
    with warnings.catch_warnings():
        if data.shards is not None:
            # Filtered in the graph, a shard dataset's length is unknown until
            # its first epoch ends, where Keras warns that the input "ran out".
            warnings.filterwarnings("ignore", message="Your input ran out of data")
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=epochs,
            initial_epoch=initial_epoch,
            class_weight=weights,
            callbacks=callbacks,
            shuffle=False,  # the training dataset shuffles itself, every epoch
            steps_per_epoch=steps_per_epoch if endless else None,
        )
    if not chief:
        shutil.rmtree(cache_dir, ignore_errors=True)
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
    shutil.rmtree(cache_dir, ignore_errors=True)
    print(
        f"{split} ({data.protocol}, fold {data.fold.name}, n={result['n']}): "
        f"UA {result['ua']:.4f}  WA {result['wa']:.4f}  macro-F1 {result['macro_f1']:.4f} "
        f"(best epoch {checkpoint.best_epoch}, validation UA {best_val_ua})"
    )
    print(f"run directory: {run_dir}")
    return run_dir
