"""The run directory's layout and saved state, readable without TensorFlow.

    config.yaml, data_report.json, checkpoints/best.keras (+ best.json),
    tensorboard/, eval.json, confusion.png; backup/ while training
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from bimer_tf.config import ExperimentConfig, to_dict

BEST_CHECKPOINT = "checkpoints/best.keras"
BACKUP_DIR = "backup"
STATE_FILE = "state.json"  # in BACKUP_DIR: the last finished epoch (see resume.py)
RUN_PARTS = ("checkpoints", "tensorboard", BACKUP_DIR, "eval.json", "confusion.png")


def prepare_run_dir(output: str | Path, resume: bool = False) -> Path:
    """Creates the run directory; an earlier run there is replaced unless resuming."""
    run_dir = Path(output)
    parts = ("eval.json", "confusion.png") if resume else RUN_PARTS
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
    """Dotted keys whose value differs between `config` and a saved config.yaml."""
    saved = yaml.safe_load(Path(config_file).read_text(encoding="utf-8")) or {}
    current = yaml.safe_load(yaml.safe_dump(to_dict(config)))

    def flatten(tree, prefix=""):
        items = {}
        for key, value in tree.items():
            if isinstance(value, dict):
                items.update(flatten(value, f"{prefix}{key}."))
            else:
                items[f"{prefix}{key}"] = value
        return items

    saved, current = flatten(saved), flatten(current)
    missing = object()
    return sorted(
        key for key in saved.keys() | current.keys() if saved.get(key, missing) != current.get(key, missing)
    )
