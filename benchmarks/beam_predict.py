"""Batch prediction on RAVDESS: Beam RunInference against `python -m bimer_tf.predict`'s batch mode.

    .venv/bin/python benchmarks/beam_predict.py [--saved-model export/bimer/1]
        [--manifest data/ravdess/manifest.jsonl] [--repeat 4] [--workers 2] [--batch-size 32]

Utterances per second of two whole commands on the same rows (the
manifest's, `--repeat` times under new ids; start-up and model loading
included):

  (a) `python -m bimer_tf.predict --manifest M --output X.jsonl --batch-size B`
      (one process; threads decode ahead of the model)
  (b) `python -m bimer_tf.beam.predict --manifest M --output PREFIX --batch-size B
      --direct_num_workers W` (DirectRunner, multi_processing: W worker
      processes, a model in each)

and both again on the first 8 rows, whose time is taken as each command's
fixed cost (start-up, job set-up, worker start, model load), to give each
its steady rate: (rows - 8) / (time - time on 8 rows). The rows are
compared: the same inputs, labels and errors; probabilities within 1.5e-6
(a SavedModel call's outputs move by up to about 5e-7 with the batch around
an item, so the 6-digit values may differ by one unit). If the export is
missing: `.venv/bin/python train.py --model bimer && .venv/bin/python
export.py --run runs/bimer-demo --output export/bimer`. Prints one JSON
document, with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bimer_tf.cli import quiet_startup  # noqa: E402

quiet_startup()


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run(command: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return round(seconds, 1)


def rows(paths) -> dict:
    found = {}
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            found[row["input"]] = row
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--saved-model", type=Path, default=REPO_ROOT / "export/bimer/1")
    parser.add_argument("--manifest", type=Path, default=REPO_ROOT / "data/ravdess/manifest.jsonl")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=4, help="each manifest row this many times (new ids)")
    args = parser.parse_args()
    for path in (args.saved_model, args.manifest):
        if not path.exists():
            print(f"skipped: {path} not found (see the docstring)")
            return 0

    from bimer_tf.data.manifest import read_manifest, write_manifest

    folder = Path(tempfile.mkdtemp(prefix="beam_predict_bench_"))
    source = read_manifest(args.manifest)
    repeated = [{**row, "id": f"{row['id']}#{k}"} for k in range(args.repeat) for row in source]
    manifest = write_manifest(repeated, folder / "rows.jsonl")
    count = len(repeated)
    result = {
        "saved_model": str(args.saved_model),
        "manifest": str(args.manifest),
        "repeat": args.repeat,
        "utterances": count,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "load_before": load(),
    }
    try:
        common = ["--saved-model", str(args.saved_model), "--batch-size", str(args.batch_size)]
        batch = [sys.executable, "-m", "bimer_tf.predict", *common]
        beam = [sys.executable, "-m", "bimer_tf.beam.predict", *common, "--direct_num_workers", str(args.workers)]
        small = write_manifest(repeated[:8], folder / "small.jsonl")
        seconds = {
            "batch_mode": run([*batch, "--manifest", str(manifest), "--output", str(folder / "batch.jsonl")]),
            "beam": run([*beam, "--manifest", str(manifest), "--output", str(folder / "beam")]),
            "batch_mode_8_rows": run([*batch, "--manifest", str(small), "--output", str(folder / "small_out.jsonl")]),
            "beam_8_rows": run([*beam, "--manifest", str(small), "--output", str(folder / "small")]),
        }
        result["load_after"] = load()
        result["seconds"] = seconds

        def steady(name):
            return round((count - 8) / max(seconds[name] - seconds[f"{name}_8_rows"], 1e-9), 2)

        result["utterances_per_s"] = {
            "batch_mode": round(count / seconds["batch_mode"], 2),
            "beam": round(count / seconds["beam"], 2),
            "batch_mode_steady": steady("batch_mode"),
            "beam_steady": steady("beam"),
        }
        expected, got = rows([folder / "batch.jsonl"]), rows(sorted(folder.glob("beam-*-of-*.jsonl")))
        same = sorted(expected) == sorted(got) and all(
            (got[k]["label"], got[k]["error"]) == (v["label"], v["error"]) for k, v in expected.items()
        )
        differences = [
            abs(got[k]["probabilities"][label] - p)
            for k, v in expected.items()
            if v["probabilities"] and k in got and got[k]["probabilities"]
            for label, p in v["probabilities"].items()
        ]
        result["same_inputs_labels_errors"] = same
        result["max_probability_difference"] = max(differences, default=0.0)
        result["rows_with_error"] = sum(1 for v in expected.values() if v["error"])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(result, indent=1))
    return 0 if result.get("same_inputs_labels_errors") and result["max_probability_difference"] <= 1.5e-6 else 1


if __name__ == "__main__":
    raise SystemExit(main())
