"""Parameter counts and CPU training time per epoch of every `train.py --model` name.

    python benchmarks/model_family.py [--models bimer,ser_whisper] [--epochs 2] [--out runs/bench]

Trains each model's demo config (bimer_tf/default_configs/NAME.yaml, the demo
corpus) for `--epochs` epochs through `train.py` itself and prints one JSON line per
model: parameters of the trained model (and of a frozen encoder that runs in
the front end), the time from start to the end of the first epoch (which fills the feature cache) and
the mean of the later epochs (steady state), read from the run's TensorBoard
event times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))


def epoch_end_times(run_dir: Path) -> list[float]:
    """Wall times at which each epoch's training scalars were written."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard" / "train"))
    events.Reload()
    tag = "epoch_loss"  # Keras writes it as a tensor summary
    return [event.wall_time for event in events.Tensors(tag)] if tag in events.Tags()["tensors"] else []


def parameter_counts(run_dir: Path, config) -> dict:
    import keras

    import bimer_tf.models  # noqa: F401  registers the model classes
    from bimer_tf.training import BEST_CHECKPOINT

    model = keras.saving.load_model(run_dir / BEST_CHECKPOINT, compile=False)
    counts = {
        "params": int(model.count_params()),
        "trainable_params": int(sum(keras.ops.size(w) for w in model.trainable_weights)),
    }
    if config.model.type != "ter" and config.model.speech.type == "whisper":
        from bimer_tf.pretrained.whisper_branch import whisper_encoder_parts

        whisper = config.model.speech.whisper
        bottom, _, _ = whisper_encoder_parts(whisper.source, whisper.layers, whisper.trainable_layers)
        counts["frozen_front_end_params"] = int(bottom.count_params())
    return counts


def main(argv=None) -> int:
    from bimer_tf.config import MODEL_NAMES, load_config

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(m for m in MODEL_NAMES if m != "ter_roberta"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", default="runs/bench")
    args = parser.parse_args(argv)
    for name in args.models.split(","):
        run_dir = Path(args.out) / name
        started = time.time()
        done = subprocess.run(
            [sys.executable, "train.py", "--model", name, "--set", f"trainer.epochs={args.epochs}",
             "--output", str(run_dir)],
            cwd=REPO_ROOT, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        wall = time.time() - started
        if done.returncode != 0:
            print(json.dumps({"model": name, "error": done.stderr.strip().splitlines()[-1:]}), flush=True)
            continue
        config = load_config(model=name)
        ends = epoch_end_times(run_dir)
        later = [b - a for a, b in zip(ends, ends[1:])]
        result = {
            "model": name,
            "task": config.model.type,
            **parameter_counts(run_dir, config),
            # From process start: imports, model build, front end and cache fill.
            "start_to_first_epoch_s": round(ends[0] - started, 1) if ends else None,
            "later_epoch_s": round(sum(later) / len(later), 1) if later else None,
            "wall_s": round(wall, 1),
            "data": "demo corpus, speaker-holdout: 288 train, 96 validation clips",
            "cpu_cores": os.cpu_count(),
        }
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
