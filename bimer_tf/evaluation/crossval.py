"""Cross-validation: train and evaluate every fold of a config's splits.

    python -m bimer_tf.crossval --config configs/ravdess/ser_whisper.yaml [--set k=v ...] \
        [--output runs/<name>-cv] [--folds fold1,fold2]

Each fold is one training run (`data.fold` set) in `<output>/<fold>/`, in its
own process, so no Keras state or memory carries over between folds. Writes
`<output>/crossval.json` (per fold and mean +- sd of UA, WA and macro-F1, with
n, wall seconds, protocol and config) and `<output>/crossval.md` (a Markdown
table), updated after every fold. Run again, it reuses each fold that
finished with the same resolved config and resumes one that was interrupted.

From sharded TFRecords (`data.format: tfrecord`), `data.shards` ends in
`/{fold}`: one folder per fold, as `python -m bimer_tf.data.shard --splits S
--all-folds --out ROOT` writes them (`data.shards: ROOT/{fold}`).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bimer_tf.cli import add_config_arguments
from bimer_tf.config import ExperimentConfig, load_config, save_config
from bimer_tf.data.manifest import Fold, read_splits
from bimer_tf.errors import InputError

METRICS = (("ua", "UA"), ("wa", "WA"), ("macro_f1", "macro-F1"))


def fold_config(config: ExperimentConfig, fold: str) -> ExperimentConfig:
    config = copy.deepcopy(config)
    config.data.fold = fold
    return config


def fold_status(config: ExperimentConfig, run_dir: Path) -> str:
    """"done" (eval.json, same config), "interrupted" (a backup, same config),
    "changed" (made with another config: trained again) or "new"."""
    from bimer_tf.training.run_dir import config_differences, read_state

    if not (run_dir / "config.yaml").is_file():
        return "new"
    if config_differences(config, run_dir / "config.yaml"):
        return "changed"
    if (run_dir / "eval.json").is_file():
        return "done"
    if read_state(run_dir) is not None:
        return "interrupted"
    return "new"


def select_folds(folds: list[Fold], names: str | None) -> list[Fold]:
    if not names:
        return folds
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    available = [fold.name for fold in folds]
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise InputError(f"--folds: no fold named {', '.join(unknown)}; available: {', '.join(available)}")
    return [fold for fold in folds if fold.name in wanted]


def fold_result(fold: Fold, run_dir: Path, wall_seconds, reused: bool) -> dict:
    report = json.loads((run_dir / "eval.json").read_text(encoding="utf-8"))
    return {
        "fold": fold.name,
        "split": report["split"],
        "n": report["n"],
        **{key: report[key] for key, _ in METRICS},
        "best_epoch": report.get("best_epoch"),
        "wall_seconds": wall_seconds,
        "reused": reused,
        "run_dir": str(run_dir),
    }


def summarise(results: list[dict]) -> dict:
    """Mean and sample standard deviation over folds (sd 0 for one fold)."""
    summary = {}
    for key, _ in METRICS:
        values = [r[key] for r in results]
        summary[key] = {
            "mean": statistics.fmean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        }
    summary["n"] = sum(r["n"] for r in results)
    walls = [r["wall_seconds"] for r in results if r["wall_seconds"] is not None]
    summary["wall_seconds"] = round(sum(walls), 1) if len(walls) == len(results) else None
    return summary


def markdown_table(document: dict) -> str:
    summary = document["summary"]
    lines = [
        f"# Cross-validation: {document['config']['name']}",
        "",
        f"Protocol `{document['protocol']}`, {len(document['folds'])} of {document['folds_total']} folds, "
        f"{summary['n']} held-out utterances; command: `{document['command']}`.",
        "",
        "| fold | split | n | UA | WA | macro-F1 | wall s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in document["folds"]:
        wall = "" if r["wall_seconds"] is None else f"{r['wall_seconds']:.0f}"
        reused = " (reused)" if r["reused"] else ""
        lines.append(
            f"| {r['fold']}{reused} | {r['split']} | {r['n']} | {r['ua']:.4f} | {r['wa']:.4f} "
            f"| {r['macro_f1']:.4f} | {wall} |"
        )
    cells = " | ".join(f"{summary[key]['mean']:.4f} ± {summary[key]['sd']:.4f}" for key, _ in METRICS)
    wall = "" if summary["wall_seconds"] is None else f"{summary['wall_seconds']:.0f}"
    lines.append(f"| **mean ± sd** | | {summary['n']} | {cells} | {wall} |")
    if not document["complete"]:
        lines += ["", f"Incomplete: folds {', '.join(document['folds_pending'])} have not run yet."]
    return "\n".join(lines) + "\n"


def write_reports(output: Path, document: dict) -> None:
    document["summary"] = summarise(document["folds"]) if document["folds"] else None
    (output / "crossval.json").write_text(json.dumps(document, indent=1), encoding="utf-8")
    if document["folds"]:
        (output / "crossval.md").write_text(markdown_table(document), encoding="utf-8")


def previous_wall_seconds(output: Path) -> dict:
    try:
        document = json.loads((output / "crossval.json").read_text(encoding="utf-8"))
        return {r["fold"]: r["wall_seconds"] for r in document["folds"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def train_fold(config: ExperimentConfig, run_dir: Path, config_file: Path, resume: bool) -> float:
    """Trains one fold in a fresh Python process; returns its wall seconds."""
    config_file.parent.mkdir(parents=True, exist_ok=True)
    save_config(config, config_file)
    command = [sys.executable, "-m", "bimer_tf.training", str(config_file), str(run_dir)]
    if resume:
        command.append("--resume")
    start = time.monotonic()
    code = subprocess.run(command, env={**os.environ, "KERAS_BACKEND": "tensorflow"}).returncode
    if code != 0:
        if code == 2:
            raise InputError(f"fold '{config.data.fold}': training stopped on bad input (message above)")
        raise RuntimeError(
            f"fold '{config.data.fold}' failed (exit code {code}); run the same command again to "
            "go on: finished folds are reused and this one resumes from its last finished epoch"
        )
    return round(time.monotonic() - start, 1)


def shard_fold_list(config: ExperimentConfig, names: str | None = None) -> tuple[str, str, list[Fold]]:
    """(data.shards, protocol, folds) of a config reading shards: one folder per
    fold, `data.shards: ROOT/{fold}` (`python -m bimer_tf.data.shard --all-folds`).
    The folds are the folders found, or `names` (--folds) as given: a bucket is
    not listed."""
    from bimer_tf.data import shards
    from bimer_tf.training.run_data import FOLD_FIELD, shard_directory, shard_folds

    if names and FOLD_FIELD in (config.data.shards or ""):
        names = [name.strip() for name in names.split(",") if name.strip()]
    else:
        names = shard_folds(config)
    report = shards.read_report(shard_directory(config, names[0])) or {}
    protocol = config.data.protocol or report.get("protocol") or "shards"
    return config.data.shards, protocol, [Fold(name, [], [], []) for name in names]


def cross_validate(config: ExperimentConfig, output: Path, folds: list[Fold], protocol: str, document: dict) -> dict:
    output.mkdir(parents=True, exist_ok=True)
    walls = previous_wall_seconds(output)
    document.update({"protocol": protocol, "folds": [], "complete": False})
    for index, fold in enumerate(folds):
        document["folds_pending"] = [f.name for f in folds[index:]]
        run_dir = output / fold.name
        config_i = fold_config(config, fold.name)
        status = fold_status(config_i, run_dir)
        header = f"=== fold {fold.name} ({index + 1}/{len(folds)})"
        if status == "done":
            print(f"{header}: finished earlier with the same config; reusing {run_dir / 'eval.json'}")
            result = fold_result(fold, run_dir, walls.get(fold.name), reused=True)
        else:
            action = {
                "new": "training",
                "changed": "config changed since the last run; training again",
                "interrupted": "interrupted earlier; resuming from its last finished epoch",
            }[status]
            print(f"{header}: {action} -> {run_dir}", flush=True)
            wall = train_fold(config_i, run_dir, output / "configs" / f"{fold.name}.yaml", status == "interrupted")
            result = fold_result(fold, run_dir, wall, reused=False)
        print(
            f"fold {fold.name}: n={result['n']}  UA {result['ua']:.4f}  WA {result['wa']:.4f}  "
            f"macro-F1 {result['macro_f1']:.4f}",
            flush=True,
        )
        document["folds"].append(result)
        document["folds_pending"] = [f.name for f in folds[index + 1 :]]
        document["complete"] = not document["folds_pending"]
        write_reports(output, document)
    return document


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m bimer_tf.crossval",
        description=__doc__.split("\n")[0],
        epilog="Finished folds (eval.json with the same resolved config) are reused; "
        "an interrupted fold resumes from its last finished epoch.",
    )
    add_config_arguments(parser)
    parser.add_argument("--output", metavar="DIR", help="default: runs/<config name>-cv")
    parser.add_argument("--folds", metavar="A,B", help="only these folds (default: all in splits.json)")
    args = parser.parse_args(argv)
    if args.config is None:
        raise InputError(
            "--config is required: the experiment to cross-validate, e.g. configs/ravdess/ser_whisper.yaml"
        )

    from bimer_tf.training.run_data import data_format, splits_path

    config = load_config(args.config, args.overrides)
    if data_format(config) == "tfrecord":
        splits_file, protocol, all_folds = shard_fold_list(config, args.folds)
    else:
        _, splits_file = splits_path(config)
        protocol, all_folds = read_splits(splits_file)
    folds = select_folds(all_folds, args.folds)
    # Folds read from shard folders list no ids here, so only manifest folds are checked.
    untested = [fold.name for fold in folds if fold.train and not fold.test]
    if untested:
        raise InputError(
            f"{splits_file}: fold(s) {', '.join(untested)} have no test rows (`split --refit`, or "
            "`--test-per-class 0`), so a cross-validation over them would report validation figures as "
            "held-out ones; train such a fold with `python train.py --set data.fold=NAME`, or "
            "cross-validate folds that hold test speakers"
        )
    if config.data.fold is not None:
        print(f"note: data.fold={config.data.fold} is ignored; every selected fold is trained")
    config.data.fold = None
    output = Path(args.output or os.path.join("runs", f"{config.name}-cv"))
    command = " ".join(
        ["python -m bimer_tf.crossval", "--config", shlex.quote(args.config)]
        + [f"--set {shlex.quote(o)}" for o in args.overrides]
        + ([f"--output {shlex.quote(args.output)}"] if args.output else [])
        + ([f"--folds {args.folds}"] if args.folds else [])
    )
    from bimer_tf.config import to_dict

    document = {
        "benchmark": "crossval",
        "command": command,
        "config": {"file": args.config, "overrides": list(args.overrides), "name": config.name,
                   "resolved": to_dict(config)},
        "splits": str(splits_file),
        "folds_total": len(all_folds),
        "cpu_cores": os.cpu_count(),
    }
    document = cross_validate(config, output, folds, protocol, document)
    summary = document["summary"]
    print(
        f"{len(folds)} folds ({protocol}), n={summary['n']}: "
        + "  ".join(f"{name} {summary[key]['mean']:.4f} ± {summary[key]['sd']:.4f}" for key, name in METRICS)
    )
    print(f"wrote {output / 'crossval.json'} and {output / 'crossval.md'}")

