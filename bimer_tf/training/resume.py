"""Best-epoch selection that survives an interruption, and resuming a run.

`EpochCheckpoint` replaces `keras.callbacks.ModelCheckpoint` +
`keras.callbacks.BackupAndRestore` with one callback, so that what it keeps is
consistent at every instant. At the end of each epoch, in this order:

1. if validation UA beat the best so far, the model is saved as a candidate
   `backup/best-epoch<N>.keras`;
2. the weights and optimizer state go to `backup/epoch<N>.weights.h5`, and the
   TensorBoard writers are flushed;
3. `backup/state.json` is replaced atomically: the commit point. It names the
   finished epoch count, the optimizer step, the best validation UA and its
   epoch, and the early-stopping counters;
4. the candidate replaces `checkpoints/best.keras` (described by
   `checkpoints/best.json`); older backups are removed.

A process killed anywhere leaves the last committed state usable:
`train(..., resume=True)` loads it, finishes a step 4 cut short, drops the
TensorBoard events written after the commit (`trim_event_files`) and goes on
from the next epoch with the best UA and early-stopping counters it had, so
the run ends as if never stopped: same epochs, one history per tag, the best
checkpoint chosen over all epochs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from pathlib import Path

import keras
import numpy as np

from bimer_tf.training.run_dir import BACKUP_DIR, STATE_FILE

def _write_json_atomic(path: Path, document: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=1), encoding="utf-8")
    os.replace(tmp, path)


class EpochCheckpoint(keras.callbacks.Callback):
    """Keeps the best model on `monitor` and a resumable backup of the last epoch.

    Args:
        run_dir: the run directory (`checkpoints/` and `backup/` inside).
        best_checkpoint: path of the best model, relative to `run_dir`.
        monitor: the log entry to maximise (validation UA).
        state: a state from `run_dir.read_state` to continue from, or None.
        early_stopping: the run's `EarlyStopping` callback, if any; it must
            come before this callback in the list, so its counters are final
            when the epoch is committed.
        flush: callables run before the commit (TensorBoard writers), so the
            events of a committed epoch are on disk.
        averaged: the run's `AveragedWeights` callback, if any: the best
            model is then saved with the averaged weights it was validated
            with.
    """

    def __init__(
        self, run_dir, best_checkpoint, monitor="val_ua", state=None, early_stopping=None, flush=(), averaged=None
    ):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.backup_dir = self.run_dir / BACKUP_DIR
        self.best_path = self.run_dir / best_checkpoint
        self.monitor = monitor
        self.state = state
        self.early_stopping = early_stopping
        self.flush = list(flush)
        self.averaged = averaged
        self.best = -math.inf if state is None or state["best"] is None else state["best"]
        self.best_epoch = None if state is None else state["best_epoch"]

    # === Resuming ===

    def on_train_begin(self, logs=None):
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        if self.state is None:
            return
        state = self.state
        # The model is built by now (Keras builds it before this hook); the
        # optimizer's slots must exist for its state to load into them.
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(self.backup_dir / state["weights"])
        candidate = self.backup_dir / _candidate_name(state["best_epoch"]) if state["best_epoch"] else None
        if candidate is not None and candidate.is_file():  # step 4 was cut short
            self._promote(candidate, state["best_epoch"], state["best"])
        self._remove_stale(keep={state["weights"]})
        if self.early_stopping is not None and state.get("early_stopping"):
            for key, value in state["early_stopping"].items():
                setattr(self.early_stopping, key, value)

    # === Each epoch ===

    def on_epoch_end(self, epoch, logs=None):
        finished = epoch + 1
        current = (logs or {}).get(self.monitor)
        candidate = None
        if current is not None:
            current = float(np.mean(current))
            if current > self.best:
                self.best, self.best_epoch = current, finished
                candidate = self.backup_dir / _candidate_name(finished)
                with self.averaged.swapped() if self.averaged else contextlib.nullcontext():
                    self.model.save(candidate, overwrite=True)
        weights = f"epoch{finished}.weights.h5"
        self.model.save_weights(self.backup_dir / weights, overwrite=True)
        for flush in self.flush:
            flush()
        state = {
            "epoch": finished,
            "step": int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)),
            "weights": weights,
            "best": None if math.isinf(self.best) else self.best,
            "best_epoch": self.best_epoch,
            "stopped_early": bool(self.model.stop_training),
            "early_stopping": self._early_stopping_state(),
        }
        _write_json_atomic(self.backup_dir / STATE_FILE, state)  # the commit point
        if candidate is not None:
            self._promote(candidate, finished, current)
        self._remove_stale(keep={weights})

    def _early_stopping_state(self):
        if self.early_stopping is None:
            return None
        best = self.early_stopping.best
        return {
            "wait": int(self.early_stopping.wait),
            "best": None if best is None else float(np.mean(best)),
            "best_epoch": int(self.early_stopping.best_epoch),
        }

    def _promote(self, candidate: Path, epoch: int, value: float) -> None:
        self.best_path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(candidate, self.best_path)
        _write_json_atomic(
            self.best_path.with_suffix(".json"), {"epoch": epoch, self.monitor: value}
        )

    def _remove_stale(self, keep: set[str]) -> None:
        """Older weights and candidates of epochs that were never committed."""
        for path in self.backup_dir.iterdir():
            if path.name in keep or path.name == STATE_FILE:
                continue
            if re.fullmatch(r"(epoch\d+\.weights\.h5|best-epoch\d+\.keras)", path.name):
                path.unlink()


def _candidate_name(epoch: int) -> str:
    return f"best-epoch{epoch}.keras"


def trim_event_files(log_dir: str | Path, epoch: int, step: int) -> int:
    """Drops TensorBoard events written after a committed epoch; returns how many.

    Epoch-indexed summaries (`epoch_*`, the confusion image, per-class recall)
    keep steps below `epoch`; Keras' `*_vs_iterations` summaries, indexed by
    optimizer step, keep steps up to `step`. A record cut off by a killed
    process ends its file.
    """
    import tensorflow as tf
    from tensorboard.compat.proto import event_pb2

    dropped = 0
    for path in sorted(Path(log_dir).rglob("events.out.tfevents.*")):
        kept, changed = [], False
        try:
            for record in tf.data.TFRecordDataset(str(path)):
                event = event_pb2.Event.FromString(record.numpy())
                if event.HasField("summary") and any(
                    v.tag.endswith("_vs_iterations") and event.step > step
                    or not v.tag.endswith("_vs_iterations") and event.step >= epoch
                    for v in event.summary.value
                ):
                    dropped += 1
                    changed = True
                    continue
                kept.append(record.numpy())
        except tf.errors.DataLossError:
            changed = True
        if changed:
            with tf.io.TFRecordWriter(str(path)) as writer:
                for record in kept:
                    writer.write(record)
    return dropped
