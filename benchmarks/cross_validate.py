"""Train and evaluate every fold of a splits file; print one JSON line.

    python benchmarks/cross_validate.py --config configs/ravdess.yaml [--set k=v ...]

Each fold runs `train.py` in its own process (output runs/<name>-<fold>/);
the line holds each fold's held-out UA / WA / macro-F1 and their means.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--model", default="bimer")
    args = parser.parse_args()

    from bimer_tf.config import load_config
    from bimer_tf.data.manifest import read_splits

    config = load_config(args.config, args.overrides, model_type=args.model)
    splits = config.data.splits or str(Path(config.data.manifest).parent / "splits.json")
    protocol, folds = read_splits(splits)
    results, start = [], time.time()
    for fold in folds:
        output = ROOT / "runs" / f"{config.name}-{fold.name}"
        command = [sys.executable, str(ROOT / "train.py"), "--model", args.model, "--config", args.config,
                   "--output", str(output), "--set", f"data.fold={fold.name}"]
        for override in args.overrides:
            command += ["--set", override]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        report = json.loads((output / "eval.json").read_text())
        results.append({"fold": fold.name, "n": report["n"], "ua": round(report["ua"], 4),
                        "wa": round(report["wa"], 4), "macro_f1": round(report["macro_f1"], 4)})
        print(json.dumps(results[-1]), file=sys.stderr)
    mean = {key: round(sum(r[key] for r in results) / len(results), 4) for key in ("ua", "wa", "macro_f1")}
    print(json.dumps({"benchmark": "cross_validate", "config": args.config, "overrides": args.overrides,
                      "protocol": protocol, "folds": results, "mean": mean,
                      "wall_seconds": round(time.time() - start, 1), "cpu_cores": os.cpu_count()}))


if __name__ == "__main__":
    main()
