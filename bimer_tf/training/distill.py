"""Knowledge distillation (`trainer.teachers`): finished runs' probabilities as
training targets, so that one model learns what an ensemble knows and serves
at one model's cost.

Each teacher is a run directory; its best checkpoint predicts every kept
training row through its own front end and tokenizer, and the teachers'
probabilities are averaged. A row's target is then

    (1 - teacher_weight) * one_hot(label) + teacher_weight * soften(mean probabilities)

where soften(p) = p^(1/T) / sum(p^(1/T)) with T = `teacher_temperature`
(T > 1 spreads the teachers' mass over the classes they hesitate between).
Validation and test rows keep their labels: the best epoch is chosen on
validation UA as in any run.

A teacher is nearly certain of the rows it trained on, so there its answer
adds little to the label. With `trainer.teacher_rows: unseen` each row's
target averages only the teachers that did not train on it (cross-fitted
targets): the members of `python -m bimer_tf.data.split --members M` each
leave out a group of the fold's training speakers, so every training row
gets the answer of a model that never heard its speaker.

A teacher that trained (or chose its checkpoint) on rows this run validates
or tests on would carry them into the targets, so such teachers are refused:
by origin (augmented copies count as their original clip) and, when this
run's split keeps speakers apart, by speaker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bimer_tf.config import ExperimentConfig
from bimer_tf.errors import InputError
from bimer_tf.training.run_data import FOLD_FIELD, RunData, resolve_data
from bimer_tf.training.run_dir import check_finished_run, load_best_model, read_run_config


@dataclass
class TeacherTargets:
    """The training targets of a distilled run and what they came from."""

    targets: np.ndarray  # (rows, classes): each training row's target distribution
    teacher_probabilities: np.ndarray  # (rows, classes): the teachers' mean, before softening
    teachers_per_row: np.ndarray  # (rows,): how many teachers answered each row
    label_ids: np.ndarray  # (rows,)

    def report(self, config: ExperimentConfig) -> dict:
        """For data_report.json: how well the teachers fit the training rows, how sure they are."""
        label_ids = self.label_ids
        predicted = self.teacher_probabilities.argmax(axis=1)
        recalls = [np.mean(predicted[label_ids == c] == c) for c in np.unique(label_ids)]
        trainer = config.trainer
        return {
            "runs": list(trainer.teachers),
            "rows": trainer.teacher_rows,
            "weight": trainer.teacher_weight,
            "temperature": trainer.teacher_temperature,
            "teachers_per_row": [int(self.teachers_per_row.min()), int(self.teachers_per_row.max())],
            "train_ua": round(float(np.mean(recalls)), 4),
            "mean_top_probability": round(float(self.teacher_probabilities.max(axis=1).mean()), 4),
            "mean_target_on_label": round(float(self.targets[np.arange(len(label_ids)), label_ids].mean()), 4),
        }


def teacher_dirs(config: ExperimentConfig) -> list[Path]:
    """`trainer.teachers` with `{fold}` replaced by `data.fold`."""
    paths = []
    for path in config.trainer.teachers:
        if FOLD_FIELD in path:
            if not config.data.fold:
                raise InputError(
                    f"trainer.teachers: {path} has a {FOLD_FIELD} field: set data.fold (or run "
                    "`python -m bimer_tf.crossval`, which sets it for every fold)"
                )
            path = path.replace(FOLD_FIELD, config.data.fold)
        paths.append(Path(path))
    if len(set(paths)) != len(paths):
        raise InputError(f"trainer.teachers names a run twice: {[str(p) for p in paths]}")
    return paths


def origin(row: dict) -> str:
    """The clip a row comes from (an augmented copy's original, else the row itself)."""
    return row.get("origin") or row["id"]


def origins(rows: list[dict]) -> set[str]:
    return {origin(row) for row in rows}


def speakers(rows: list[dict]) -> set[str]:
    return {row["speaker"] for row in rows if row.get("speaker")}


def check_teacher_data(teacher: Path, theirs: RunData, ours: RunData) -> None:
    """Refuses a teacher that learned from this run's validation or test rows."""
    if not theirs.splits["train"]:
        raise InputError(
            f"trainer.teachers: {teacher} was trained from shards; its training rows cannot be checked "
            "against this run's validation and test rows (use teachers trained from a manifest)"
        )
    learned = {"trained on": theirs.splits["train"], "chose its checkpoint on": theirs.splits["val"]}
    # A teacher may share this run's validation rows for choosing its own checkpoint
    # (as this run does), never train on them.
    guarded = {"trained on": ("val", "test"), "chose its checkpoint on": ("test",)}
    for verb, their_rows in learned.items():
        for split in guarded[verb]:
            ours_rows = ours.splits[split]
            shared = sorted(origins(their_rows) & origins(ours_rows))
            if shared:
                raise InputError(
                    f"trainer.teachers: {teacher} {verb} {len(shared)} clip(s) of this run's {split} split "
                    f"(e.g. {shared[0]}); its probabilities would carry them into training. Use teachers "
                    f"trained on this fold's training rows only (fold {ours.fold.name})"
                )
            # Speaker-independent splits: a teacher must not have heard this run's held-out speakers.
            held_out = speakers(ours_rows)
            if held_out and not held_out & speakers(ours.splits["train"]):
                heard = sorted(speakers(their_rows) & held_out)
                if heard:
                    raise InputError(
                        f"trainer.teachers: {teacher} {verb} speaker(s) {', '.join(heard[:4])}, whom this "
                        f"run keeps out of training for its {split} split; use teachers trained on this "
                        f"fold's training speakers only (fold {ours.fold.name})"
                    )


def checked_teacher(teacher: Path, config: ExperimentConfig, data: RunData) -> tuple[ExperimentConfig, RunData]:
    """A teacher's config and data, once it is known to predict this run's classes
    and not to have learned from this run's validation or test rows."""
    check_finished_run(teacher, what="trainer.teachers")
    theirs = read_run_config(teacher)
    if list(theirs.data.labels) != list(config.data.labels):
        raise InputError(
            f"trainer.teachers: {teacher} predicts {theirs.data.labels}; this run's data.labels are "
            f"{config.data.labels} (same classes, same order)"
        )
    their_data = resolve_data(theirs)
    check_teacher_data(teacher, their_data, data)
    return theirs, their_data


def teacher_probabilities(teacher: Path, theirs: ExperimentConfig, rows: list[dict], batch_size: int) -> np.ndarray:
    """A checked teacher's probabilities on `rows`, through its own front end and tokenizer."""
    from bimer_tf.evaluation.metrics import predict_dataset
    from bimer_tf.models import build_text_preprocessor, task_modalities
    from bimer_tf.pipeline.dataset import build_dataset, validate_rows
    from bimer_tf.pipeline.frontend import build_speech_frontend

    needs_audio, needs_text = task_modalities(theirs)
    frontend = build_speech_frontend(theirs) if needs_audio else None
    check = validate_rows(rows, theirs.data.labels, frontend, needs_text)
    if check.skipped:
        first = check.skipped[0]
        raise InputError(
            f"trainer.teachers: {teacher} cannot read {len(check.skipped)} training row(s) this run keeps "
            f"(e.g. {first['id']}: {first['reason']}); every training row needs the teachers' probabilities"
        )
    dataset = build_dataset(
        rows,
        theirs.data.labels,
        frontend,
        build_text_preprocessor(theirs) if needs_text else None,
        batch_size=batch_size,
        training=False,
        cache=False,
    )
    print(f"teacher {teacher}: predicting {len(rows)} training rows")
    _, probabilities = predict_dataset(load_best_model(teacher), dataset)
    return probabilities


def soften(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """p^(1/T) renormalised per row (T = 1 leaves p as it is)."""
    if temperature == 1.0:
        return probabilities
    logits = np.log(np.clip(probabilities, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=1, keepdims=True)


def mixed_targets(label_ids: np.ndarray, probabilities: np.ndarray, weight: float, temperature: float) -> np.ndarray:
    one_hot = np.eye(probabilities.shape[1], dtype=np.float32)[label_ids]
    return ((1.0 - weight) * one_hot + weight * soften(probabilities, temperature)).astype(np.float32)


def teacher_targets(config: ExperimentConfig, rows: list[dict], data: RunData) -> TeacherTargets:
    """The distillation targets of the kept training `rows` (`trainer.teachers` set).

    With `trainer.teacher_rows: unseen` a row's teachers are those that did
    not train on it (by origin), and each teacher predicts only those rows.
    """
    unseen_only = config.trainer.teacher_rows == "unseen"
    row_origins = [origin(row) for row in rows]
    sums = np.zeros((len(rows), len(config.data.labels)))
    counts = np.zeros(len(rows), dtype=int)
    for teacher in teacher_dirs(config):
        theirs, their_data = checked_teacher(teacher, config, data)
        answers = np.ones(len(rows), dtype=bool)
        if unseen_only:
            trained_on = origins(their_data.splits["train"])
            answers = np.array([clip not in trained_on for clip in row_origins])
        if answers.any():
            chosen = [rows[i] for i in np.flatnonzero(answers)]
            sums[answers] += teacher_probabilities(teacher, theirs, chosen, config.data.batch_size)
            counts[answers] += 1
    if not counts.all():
        first = rows[int(np.argmin(counts))]["id"]
        raise InputError(
            f"trainer.teacher_rows=unseen: every teacher trained on {int((counts == 0).sum())} training "
            f"row(s) (e.g. {first}); each row needs a teacher that left it out, as the members of "
            "`python -m bimer_tf.data.split --members M` do"
        )
    mean = sums / counts[:, None]
    label_ids = np.array([config.data.labels.index(row["label"]) for row in rows])
    targets = mixed_targets(label_ids, mean, config.trainer.teacher_weight, config.trainer.teacher_temperature)
    return TeacherTargets(targets, mean, counts, label_ids)


def one_hot_targets(rows: list[dict], labels: list[str]) -> np.ndarray:
    """Validation rows' targets in a distilled run: their labels, as distributions."""
    return np.eye(len(labels), dtype=np.float32)[[labels.index(row["label"]) for row in rows]]
