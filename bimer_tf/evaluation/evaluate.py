"""Evaluate a trained run or an exported SavedModel on any manifest.

    python -m bimer_tf.evaluate --run runs/ravdess --manifest data/ravdess/manifest.jsonl \
        --fold fold1 --split test
    python -m bimer_tf.evaluate --saved-model export/bimer/1 --manifest data/meld/manifest.jsonl \
        --label-map joy=happy,sadness=sad,anger=angry        # cross-corpus
    python -m bimer_tf.evaluate --run runs/ravdess --shards data/ravdess_shards --split test
    python -m bimer_tf.evaluate --run runs/ravdess --split test   # the run's own data (its config)

Writes `eval.json` (the run-directory contract: ua, wa, macro_f1, per_class,
confusion, labels, n, protocol, split; plus the row counts) and
`confusion.png` to `--output` (default `<run>/evaluations/<data>/` or
`evaluations/<model>-<version>/<data>/`).

A run is evaluated with its own front end and tokenizer, built from its
config.yaml; a SavedModel with the graph TF Serving would run, fed the inputs
its `serving_default` signature takes (`audio_wav` and/or `text`).

Rows are accounted for, never dropped silently: seen = kept + unmapped
(a label the model does not know and `--label-map` does not map) + skipped
(unusable audio or text, as in training).

`--shards DIR` reads sharded TFRecords (`python -m bimer_tf.data.shard`)
instead of a manifest: a run through the same input pipeline as training
from shards, an export fed each clip's samples as a WAV. Their counts come
from the split's index. Without `--manifest` or `--shards` the model's own
config names the data (`data.format`, `data.shards` or `data.manifest`).
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bimer_tf.cli import add_saved_model_argument
from bimer_tf.config import ExperimentConfig
from bimer_tf.data import shards
from bimer_tf.data.manifest import read_manifest, read_splits, select_fold
from bimer_tf.errors import InputError

SPLITS = ("train", "val", "test")


# === Label mapping ===


def parse_label_map(text: str | None) -> dict[str, str]:
    """'other=ours,other2=ours2' -> {"other": "ours", ...}."""
    if not text:
        return {}
    mapping = {}
    for item in text.split(","):
        parts = [part.strip() for part in item.split("=")]
        if len(parts) != 2 or not all(parts):
            raise InputError(
                f"--label-map: cannot read '{item}'; expected other=ours pairs separated by commas, "
                "e.g. --label-map joy=happy,anger=angry"
            )
        other, ours = parts
        if other in mapping and mapping[other] != ours:
            raise InputError(f"--label-map maps '{other}' twice ({mapping[other]}, {ours})")
        mapping[other] = ours
    return mapping


def check_label_map(mapping: dict[str, str], model_labels: list[str], corpus_labels: set[str]) -> None:
    """Both sides must name real labels: ours the model's, other the manifest's."""
    unknown = sorted({ours for ours in mapping.values() if ours not in model_labels})
    if unknown:
        raise InputError(
            f"--label-map maps to {', '.join(unknown)}, which the model does not know; "
            f"its labels are {', '.join(model_labels)}"
        )
    absent = sorted(other for other in mapping if other not in corpus_labels)
    if absent:
        raise InputError(
            f"--label-map names {', '.join(absent)}, which no row of the manifest has; "
            f"its labels are {', '.join(sorted(corpus_labels))}"
        )


@dataclass
class MappedRows:
    rows: list[dict]  # labels now the model's
    unmapped: Counter = field(default_factory=Counter)  # original label -> rows left out


def map_labels(rows: list[dict], mapping: dict[str, str], model_labels: list[str]) -> MappedRows:
    """Relabels rows for the model: the map first, else a label the model knows as it is."""
    known = set(model_labels)
    result = MappedRows([])
    for row in rows:
        label = mapping.get(row["label"], row["label"] if row["label"] in known else None)
        if label is None:
            result.unmapped[row["label"]] += 1
        else:
            result.rows.append({**row, "label": label})
    return result


# === Data ===


@dataclass
class Selection:
    rows: list[dict]
    corpus_labels: set[str]
    protocol: str
    split: str
    tag: str  # names the default output folder
    shards: "ShardSource | None" = None


@dataclass
class ShardSource:
    """One split of sharded TFRecords: its folder and index."""

    directory: str
    index: dict


def select_shards(directory, fold=None, split=None) -> Selection:
    """One split (default test) of a folder of sharded TFRecords."""
    directory = str(directory)
    split = split or "test"
    index = shards.read_index(directory, split)
    report = shards.read_report(directory) or {}
    written_fold = report.get("fold")
    if fold is not None and fold != written_fold:
        raise InputError(
            f"{directory} holds the shards of fold '{written_fold}', not --fold {fold}; "
            f"write that fold with `python -m bimer_tf.data.shard ... --fold {fold}` or drop --fold"
        )
    name = directory.rstrip("/").rsplit("/", 1)[-1]
    return Selection(
        rows=[],
        corpus_labels=set(index["per_class"]),
        protocol=report.get("protocol") or "shards",
        split=f"{written_fold}/{split}" if written_fold else split,
        tag=f"{name}-{split}",
        shards=ShardSource(directory, index),
    )


def select_from_config(config: ExperimentConfig, fold=None, split=None) -> Selection:
    """The data a model's config names: its shards (data.format=tfrecord) or its
    manifest and splits, the fold `--fold` or data.fold."""
    from bimer_tf.training.run_data import data_format, shard_directory

    fold = fold or config.data.fold
    if data_format(config) == "tfrecord":
        return select_shards(shard_directory(config, fold), fold, split)
    if config.data.manifest is None:
        raise InputError(
            "the model's config names no manifest (data.manifest is null: the demo corpus); "
            "pass --manifest or --shards"
        )
    return select_rows(config.data.manifest, config.data.splits, fold, split or "test")


def relabel_index(index: dict, mapping: dict[str, str], model_labels: list[str]) -> tuple[dict, Counter]:
    """An index's counts with labels as `map_labels` relabels rows, and the
    unmapped rows per original label."""
    known = set(model_labels)
    per_class, inputs, unmapped = Counter(), {}, Counter()
    for label, count in index["per_class"].items():
        ours = mapping.get(label, label if label in known else None)
        if ours is None:
            unmapped[label] += count
            continue
        per_class[ours] += count
        target = inputs.setdefault(ours, dict.fromkeys(shards.INPUT_KINDS, 0))
        for kind, n in index["per_class_inputs"][label].items():
            target[kind] += n
    return {**index, "per_class": dict(per_class), "per_class_inputs": inputs, "rows": sum(per_class.values())}, unmapped


def select_rows(manifest, splits=None, fold=None, split=None) -> Selection:
    """All rows of a manifest, or one split of one fold of its splits file."""
    manifest = Path(manifest)
    rows = read_manifest(manifest)
    corpus_labels = {row["label"] for row in rows}
    data_name = manifest.parent.name or manifest.stem
    if splits is None and fold is None and split is None:
        return Selection(rows, corpus_labels, "all rows of the manifest", "all", data_name)
    splits_file = Path(splits) if splits else manifest.parent / "splits.json"
    protocol, folds = read_splits(splits_file)
    chosen = select_fold(folds, fold)
    split = split or "test"
    by_id = {row["id"]: row for row in rows}
    ids = getattr(chosen, split)
    # Augmented training copies live in the fold's own manifest (as in training).
    fold_manifest = splits_file.parent / chosen.name / f"{split}.jsonl"
    if any(i not in by_id for i in ids) and fold_manifest.is_file():
        for row in read_manifest(fold_manifest):
            by_id.setdefault(row["id"], row)
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise InputError(f"{splits_file}: fold '{chosen.name}' {split} names ids missing from {manifest}: {missing[:3]}")
    return Selection(
        [by_id[i] for i in ids], corpus_labels, protocol, f"{chosen.name}/{split}",
        f"{data_name}-{chosen.name}-{split}",
    )


# === Models ===


class RunModel:
    """A run directory's best checkpoint with the run's own front end and tokenizer."""

    def __init__(self, run_dir):
        from bimer_tf.training.run_dir import read_run_config

        self.path = Path(run_dir)
        self.config: ExperimentConfig = read_run_config(self.path)
        self.labels = list(self.config.data.labels)
        self.default_output = self.path / "evaluations"

    def modalities(self) -> tuple[bool, bool]:
        from bimer_tf.models import task_modalities

        return task_modalities(self.config)

    def predict(self, rows, batch_size):
        from bimer_tf.evaluation.metrics import predict_dataset
        from bimer_tf.models import build_text_preprocessor
        from bimer_tf.pipeline.dataset import build_dataset
        from bimer_tf.pipeline.frontend import build_speech_frontend
        from bimer_tf.training.run_dir import load_best_model

        needs_audio, needs_text = self.modalities()
        model = load_best_model(self.path)
        dataset = build_dataset(
            rows,
            self.labels,
            build_speech_frontend(self.config) if needs_audio else None,
            build_text_preprocessor(self.config) if needs_text else None,
            batch_size=batch_size,
            training=False,
            cache=False,
        )
        return predict_dataset(model, dataset)

    def predict_shards(self, check, mapping, batch_size):
        """Labels and probabilities of a split in shards, through the training input pipeline."""
        from bimer_tf.evaluation.metrics import predict_dataset
        from bimer_tf.models import build_text_preprocessor
        from bimer_tf.pipeline.dataset import build_shard_dataset
        from bimer_tf.pipeline.frontend import build_speech_frontend
        from bimer_tf.training.run_dir import load_best_model

        needs_audio, needs_text = self.modalities()
        model = load_best_model(self.path)
        dataset = build_shard_dataset(
            check.files,
            self.labels,
            build_speech_frontend(self.config) if needs_audio else None,
            build_text_preprocessor(self.config) if needs_text else None,
            count=check.kept,
            batch_size=batch_size,
            training=False,
            label_map=mapping,
        )
        return predict_dataset(model, dataset)


class ServedModel:
    """An exported SavedModel version folder, run through `serving_default`."""

    def __init__(self, version_dir):
        from bimer_tf.serving.export_dir import read_export_info

        self.path = Path(version_dir)
        info = read_export_info(self.path)
        self.labels = list(info.labels)
        self.config: ExperimentConfig = info.experiment_config()
        self.default_output = Path("evaluations") / f"{self.path.parent.name}-{self.path.name}"
        self._serve = None

    def serve(self):
        if self._serve is None:
            from bimer_tf.serving.export_dir import load_saved_model

            self._serve, _ = load_saved_model(self.path)
        return self._serve

    def modalities(self) -> tuple[bool, bool]:
        from bimer_tf.serving.export_dir import AUDIO_INPUT, TEXT_INPUT, function_input_names

        inputs = function_input_names(self.serve())
        return AUDIO_INPUT in inputs, TEXT_INPUT in inputs

    def predict(self, rows, batch_size):
        """Probabilities of checked rows (16 kHz PCM16 WAV, as `validate_rows` keeps them),
        fed as the Python API feeds an export: one `serving_default` call per batch."""
        import numpy as np

        from bimer_tf.serving.feed import serve_batch

        needs_audio, needs_text = self.modalities()
        y_prob = []
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            y_prob.append(
                serve_batch(
                    self.serve(),
                    [Path(row["audio"]).read_bytes() for row in batch] if needs_audio else None,
                    [row["text"] for row in batch] if needs_text else None,
                )
            )
        y_true = np.array([self.labels.index(row["label"]) for row in rows])
        return y_true, np.concatenate(y_prob)

    def predict_shards(self, check, mapping, batch_size):
        """A split in shards, each usable clip fed as a WAV of its samples (the
        rows the shard pipeline keeps: known or mapped label, audio not quieter
        than the silence floor, a transcript when the model reads text)."""
        import numpy as np

        from bimer_tf.serving.feed import serve_batch

        needs_audio, needs_text = self.modalities()
        floor = 10.0 ** (self.config.audio.silence_floor_dbfs / 20.0)
        y_true, y_prob, batch = [], [], []

        def flush():
            y_prob.append(
                serve_batch(
                    self.serve(),
                    [shards.pcm16_wav(samples) for _, samples in batch] if needs_audio else None,
                    [row["text"] for row, _ in batch] if needs_text else None,
                )
            )
            batch.clear()

        for path in check.files:
            for row, samples in shards.read_shard(path):
                label = mapping.get(row["label"], row["label"])
                if label not in self.labels:
                    continue
                if needs_audio and (samples is None or np.max(np.abs(shards.to_float(samples))) < floor):
                    continue
                if needs_text and not (row["text"] or "").strip():
                    continue
                y_true.append(self.labels.index(label))
                batch.append((row, samples))
                if len(batch) == batch_size:
                    flush()
        if batch:
            flush()
        return np.array(y_true), np.concatenate(y_prob) if y_prob else np.zeros((0, len(self.labels)))


# === Evaluation ===


def evaluate(model, selection: Selection, mapping: dict[str, str], output, batch_size: int) -> dict:
    """Evaluates `model` (a RunModel or ServedModel) on the selected rows; writes eval.json."""
    from bimer_tf.pipeline.dataset import validate_rows
    from bimer_tf.evaluation.metrics import classification_report
    from bimer_tf.pipeline.frontend import AudioFrontend

    needs_audio, needs_text = model.modalities()
    frontend = AudioFrontend(model.config.audio) if needs_audio else None
    if selection.shards is not None:
        return evaluate_shards(model, selection, mapping, output, batch_size, frontend, needs_text)
    mapped = map_labels(selection.rows, mapping, model.labels)
    # The checks of training (readable WAV at the right rate, not silent; a
    # transcript when the model reads text); they need only the audio config.
    check = validate_rows(mapped.rows, model.labels, frontend, needs_text)
    counts = {
        "seen": len(selection.rows),
        "kept": len(check.kept),
        "unmapped": sum(mapped.unmapped.values()),
        "skipped": len(check.skipped),
    }
    print(
        f"{selection.split} ({selection.protocol}): {counts['kept']} of {counts['seen']} rows evaluated, "
        f"{counts['unmapped']} with a label the model does not know, {counts['skipped']} unusable"
    )
    for label, count in sorted(mapped.unmapped.items()):
        print(f"  left out {count} rows labelled '{label}' (no mapping; add --label-map {label}=<one of {','.join(model.labels)}>)")
    for item in check.skipped[:5]:
        print(f"  skipped {item['id']}: {item['reason']}")
    if len(check.skipped) > 5:
        print(f"  ... {len(check.skipped) - 5} more in eval.json")
    if not check.kept:
        raise InputError("no row left to evaluate; check the labels (--label-map) and the audio")

    y_true, y_prob = model.predict(check.kept, batch_size)
    report = classification_report(y_true, y_prob, model.labels)
    report.update(
        {
            "model": str(model.path),
            "manifest_rows": counts,
            "unmapped_labels": dict(sorted(mapped.unmapped.items())),
            "skipped_items": check.skipped,
            "label_map": mapping,
        }
    )
    return _write(report, selection, output)


def evaluate_shards(model, selection: Selection, mapping, output, batch_size, frontend, needs_text) -> dict:
    """`evaluate` on one split of sharded TFRecords; counts from its index."""
    from bimer_tf.evaluation.metrics import classification_report
    from bimer_tf.pipeline.dataset import check_shard_split

    source = selection.shards
    index, unmapped = relabel_index(source.index, mapping, model.labels)
    check = check_shard_split(source.directory, index, model.labels, frontend, needs_text)
    counts = {
        "seen": source.index["rows"],
        "kept": check.kept,
        "unmapped": sum(unmapped.values()),
        "skipped": index["rows"] - check.kept,
    }
    print(
        f"{selection.split} ({selection.protocol}, shards in {source.directory}): {counts['kept']} of "
        f"{counts['seen']} rows evaluated, {counts['unmapped']} with a label the model does not know, "
        f"{counts['skipped']} unusable"
    )
    for label, count in sorted(unmapped.items()):
        print(f"  left out {count} rows labelled '{label}' (no mapping; add --label-map {label}=<one of {','.join(model.labels)}>)")
    for reason, count in check.skipped_reasons.items():
        print(f"  skipped {count}: {reason}")
    if not check.kept:
        raise InputError("no row left to evaluate; check the labels (--label-map) and the shards' index")
    y_true, y_prob = model.predict_shards(check, mapping, batch_size)
    report = classification_report(y_true, y_prob, model.labels)
    report.update(
        {
            "model": str(model.path),
            "shards": source.directory,
            "rows_sha256": source.index["rows_sha256"],
            "manifest_rows": counts,
            "unmapped_labels": dict(sorted(unmapped.items())),
            "skipped_items": [],
            "skipped_reasons": check.skipped_reasons,
            "label_map": mapping,
        }
    )
    return _write(report, selection, output)


def _write(report: dict, selection: Selection, output) -> dict:
    from bimer_tf.evaluation.metrics import write_eval

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    write_eval(report, output, protocol=selection.protocol, split=selection.split)
    print(
        f"UA {report['ua']:.4f}  WA {report['wa']:.4f}  macro-F1 {report['macro_f1']:.4f}  n={report['n']}"
    )
    print(f"wrote {output / 'eval.json'} and {output / 'confusion.png'}")
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m bimer_tf.evaluate",
        description=__doc__.split("\n")[0],
        epilog="Without --fold/--split/--splits every row of the manifest is evaluated; "
        "with any of them, one split of one fold (default: the first fold, the test split).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", metavar="DIR", help="a finished run directory (checkpoints/best.keras + config.yaml)")
    add_saved_model_argument(source, required=False)
    data = parser.add_mutually_exclusive_group()
    data.add_argument("--manifest", metavar="FILE", help="manifest (JSON Lines) to evaluate on")
    data.add_argument(
        "--shards", metavar="DIR",
        help="sharded TFRecords to evaluate on (python -m bimer_tf.data.shard; local or gs://)",
    )
    parser.add_argument("--splits", metavar="FILE", help="splits file (default: splits.json beside the manifest)")
    parser.add_argument("--fold", metavar="NAME", help="fold of the splits file (default: the first)")
    parser.add_argument(
        "--split", choices=SPLITS + (shards.ALL_SPLIT,),
        help=f"split of the fold (default: test; '{shards.ALL_SPLIT}': shards written without --splits)",
    )
    parser.add_argument(
        "--label-map", metavar="OTHER=OURS,...",
        help="relabel the manifest's labels to the model's, e.g. joy=happy,anger=angry; "
        "labels the model knows map to themselves, rows with other labels are counted and left out",
    )
    parser.add_argument("--output", metavar="DIR", help="folder for eval.json and confusion.png")
    parser.add_argument("--batch-size", type=int, metavar="N", help="default: the model's data.batch_size")
    args = parser.parse_args(argv)
    if args.batch_size is not None and args.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {args.batch_size}")

    # Everything that can be wrong with the arguments is checked before
    # TensorFlow loads.
    mapping = parse_label_map(args.label_map)
    if args.shards and args.splits:
        raise InputError("--splits is for --manifest; shards hold their split already (--split)")
    if args.split == shards.ALL_SPLIT and not args.shards:
        raise InputError(f"--split {shards.ALL_SPLIT} is for --shards; without --split every row of a manifest is evaluated")
    model = RunModel(args.run) if args.run else ServedModel(args.saved_model)
    if args.shards:
        selection = select_shards(args.shards, args.fold, args.split)
    elif args.manifest:
        selection = select_rows(args.manifest, args.splits, args.fold, args.split)
    else:
        selection = select_from_config(model.config, args.fold, args.split)
    check_label_map(mapping, model.labels, selection.corpus_labels)
    output = Path(args.output) if args.output else model.default_output / selection.tag
    evaluate(model, selection, mapping, output, args.batch_size or model.config.data.batch_size)

