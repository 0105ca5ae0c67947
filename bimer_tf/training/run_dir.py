"""The run directory format: what training writes and everything else reads.

    runs/<name>/
      config.yaml          the resolved config
      data_report.json     rows kept and skipped per split, with reasons
      checkpoints/best.keras (+ best.json)   the epoch with the best validation UA
      tensorboard/         curves, confusion images, hyperparameters
      eval.json, confusion.png   the held-out split's report (a finished run has them)
      backup/              while training: the last finished epoch, for --resume

This module is the one place that knows these names and checks a folder
against them; only `load_best_model` needs TensorFlow.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from bimer_tf.config import SPEECH_TYPES, ExperimentConfig, from_dict, read_yaml, to_dict, upgrade_legacy_config
from bimer_tf.errors import InputError

CONFIG_FILE = "config.yaml"
EVAL_FILE = "eval.json"
BEST_CHECKPOINT = "checkpoints/best.keras"
BACKUP_DIR = "backup"
STATE_FILE = "state.json"  # in BACKUP_DIR: the last finished epoch (see resume.py)
RUN_PARTS = ("checkpoints", "tensorboard", BACKUP_DIR, EVAL_FILE, "confusion.png")


def prepare_run_dir(output: str | Path, resume: bool = False) -> Path:
    """Creates the run directory; an earlier run there is replaced unless resuming."""
    run_dir = Path(output)
    parts = (EVAL_FILE, "confusion.png") if resume else RUN_PARTS
    if run_dir.exists() and not resume:
        print(f"replacing the previous run in {run_dir}")
    for part in parts:
        target = run_dir / part
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    return run_dir


def read_state(run_dir: str | Path) -> dict | None:
    """The last committed epoch state of an unfinished run, or None."""
    path = Path(run_dir) / BACKUP_DIR / STATE_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def config_differences(config: ExperimentConfig, config_file: str | Path) -> list[str]:
    """Dotted keys whose value differs between `config` and a saved config.yaml.

    A config.yaml of an earlier release (flat `model.speech` keys) is read in
    today's form first. The sections of speech backbones that neither config
    selects (`model.speech.type`) are not compared: they build nothing.
    """
    saved = upgrade_legacy_config(yaml.safe_load(Path(config_file).read_text(encoding="utf-8")) or {})
    current = yaml.safe_load(yaml.safe_dump(to_dict(config)))
    selected = {config.model.speech.type, ((saved.get("model") or {}).get("speech") or {}).get("type")}
    unused = tuple(f"model.speech.{name}." for name in SPEECH_TYPES if name not in selected)

    def flatten(tree, prefix=""):
        items = {}
        for key, value in tree.items():
            if isinstance(value, dict):
                items.update(flatten(value, f"{prefix}{key}."))
            else:
                items[f"{prefix}{key}"] = value
        return items

    saved, current = flatten(saved), flatten(current)
    # A key the saved config lacks (a field added since) counts at its default.
    defaults = flatten(yaml.safe_load(yaml.safe_dump(to_dict(ExperimentConfig()))))
    missing = object()
    return sorted(
        key
        for key in saved.keys() | current.keys()
        if saved.get(key, defaults.get(key, missing)) != current.get(key, missing)
        and not key.startswith(unused)
    )


def check_finished_run(run_dir: str | Path, what: str = "", example: str = "bimer") -> Path:
    """`run_dir` as a Path when it holds a best checkpoint and its config; InputError otherwise.

    `what` prefixes the message (e.g. the config key that named the folder);
    `example` is the `train.py --model` name the remedy suggests.
    """
    run_dir = Path(run_dir)
    if not (run_dir / BEST_CHECKPOINT).is_file() or not (run_dir / CONFIG_FILE).is_file():
        raise InputError(
            f"{what + '=' if what else ''}{run_dir} is not a finished run (needs {BEST_CHECKPOINT} "
            f"and {CONFIG_FILE}); train one with `python train.py --model {example}`"
        )
    return run_dir


def read_run_config(run_dir: str | Path) -> ExperimentConfig:
    """The resolved config a finished run was trained with."""
    return from_dict(read_yaml(check_finished_run(run_dir) / CONFIG_FILE))


def load_best_model(run_dir: str | Path, compile: bool = False):
    """The run's best checkpoint as a Keras model (loads TensorFlow)."""
    import keras

    import bimer_tf.models  # noqa: F401  registers the model classes for loading

    return keras.saving.load_model(check_finished_run(run_dir) / BEST_CHECKPOINT, compile=compile)
