#!/usr/bin/env bash
# The default demo job from scratch: corpus generation + `train.py --model bimer`
# + evaluation, timed. Prints the run's held-out scores and the wall time as
# one JSON line. Usage: bash benchmarks/demo_run.sh [extra train.py args]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DEMO_DIR=$(mktemp -d)
RUN_DIR=$(mktemp -d)/bimer-demo
start=$(date +%s.%N)
"$PY" train.py --model bimer --set data.demo_dir="$DEMO_DIR" --output "$RUN_DIR" "$@"
end=$(date +%s.%N)
"$PY" - "$RUN_DIR" "$start" "$end" <<'PYEOF'
import json, os, sys
run_dir, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
report = json.load(open(os.path.join(run_dir, "eval.json")))
print(json.dumps({
    "benchmark": "demo_run",
    "data": "demo corpus (10 synthetic speakers, 480 utterances)",
    "protocol": report["protocol"], "split": report["split"], "n": report["n"],
    "ua": round(report["ua"], 4), "wa": round(report["wa"], 4), "macro_f1": round(report["macro_f1"], 4),
    "wall_seconds": round(end - start, 1), "cpu_cores": os.cpu_count(), "run_dir": run_dir,
}))
PYEOF
