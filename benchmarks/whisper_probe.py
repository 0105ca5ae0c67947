"""What the frozen Whisper encoders know: linear probes on every layer, per fold.

    python benchmarks/whisper_probe.py --manifest data/ravdess/manifest.jsonl \
        --splits data/ravdess/splits/splits.json \
        --source whisper-base-offline --source whisper-tiny-offline \
        [--cross-manifest data/emodb/manifest.jsonl] [--max-duration-s 5] [--loudness-dbfs -23] \
        [--cache runs/probe_cache]

Each clip goes through the served model's front end (decode, trim, the
level step when `--loudness-dbfs` is given, crop or zero-pad to
`--max-duration-s`) and each source's frozen encoder; every hidden state
(the embedding output and each layer's) is pooled as mean + std over the
clip's own frames (the padding's states left out). A standardiser and a
class-balanced logistic regression are fitted on each fold's training rows
and scored (unweighted accuracy) on its validation and test rows, and on
every row of `--cross-manifest` whose label the folds know (trained on that
fold's training rows only). Rows without a readable WAV are left out, each
named with the reason.

Probes: every single layer of every source, then, per source, the layer
with the best mean validation UA, and all the sources' best layers
concatenated (the encoders "together"). The choice of layers reads
validation rows only; test and cross-corpus figures are printed beside it,
not used. One JSON line per probe, then a Markdown table. `--cache` keeps
the pooled states (one .npz per source and front end), so a second run
fits the probes only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bimer_tf.cli import quiet_startup, run_main  # noqa: E402

quiet_startup()  # before anything imports TensorFlow

import numpy as np  # noqa: E402


def pooled_states(source: str, rows: list[dict], audio, batch: int) -> np.ndarray:
    """[rows, hidden states, 2 * hidden] mean + std of each hidden state over
    the clip's frames (the states of the window's zero padding left out)."""
    import tensorflow as tf

    from bimer_tf.pipeline.frontend import WhisperFrontend
    from bimer_tf.pretrained.whisper_branch import whisper_encoder_parts

    bottom, _, _ = whisper_encoder_parts(source, layers=0, trainable_layers=0, layer_sum=True)
    frontend = WhisperFrontend(audio, bottom, zero_padding_states=True)

    @tf.function(reduce_retracing=True)
    def pool(wav_bytes):
        states = frontend.batch_features(frontend.batch_waveforms(wav_bytes))  # [b, steps, layers, hidden]
        in_clip = tf.cast(tf.reduce_any(tf.not_equal(states, 0.0), axis=[2, 3]), states.dtype)
        weights = in_clip / tf.maximum(tf.reduce_sum(in_clip, axis=1, keepdims=True), 1.0)
        weights = weights[:, :, tf.newaxis, tf.newaxis]
        mean = tf.reduce_sum(states * weights, axis=1)
        variance = tf.reduce_sum(tf.square(states - mean[:, tf.newaxis]) * weights, axis=1)
        return tf.concat([mean, tf.sqrt(variance + 1e-8)], axis=-1)

    pooled = []
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        pooled.append(pool(tf.constant([Path(row["audio"]).read_bytes() for row in chunk])).numpy())
        print(f"  {source}: {start + len(chunk)}/{len(rows)} clips", end="\r", file=sys.stderr)
    print(file=sys.stderr)
    return np.concatenate(pooled)


def cached_states(source, rows, audio, batch, cache: Path | None) -> np.ndarray:
    """`pooled_states`, kept in `cache` under a key of the source, the front
    end's settings and the rows' ids."""
    if cache is None:
        return pooled_states(source, rows, audio, batch)
    key = json.dumps([source, vars(audio), [row["id"] for row in rows]], sort_keys=True, default=str)
    path = cache / f"{source.replace('/', '_')}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    if path.is_file():
        return np.load(path)["pooled"]
    pooled = pooled_states(source, rows, audio, batch)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, pooled=pooled)
    return pooled


def readable(rows: list[dict], manifest: str) -> list[dict]:
    """The rows whose audio is a readable WAV; the others are left out, each
    named with the reason (a fold then has fewer rows, never a wrong one)."""
    from bimer_tf.audio.wav import check_wav
    from bimer_tf.errors import InputError

    kept = []
    for row in rows:
        try:
            if not row.get("audio"):
                raise InputError("the row has no audio")
            check_wav(row["audio"])
        except InputError as error:
            print(f"left out {row['id']} of {manifest}: {error}", file=sys.stderr)
            continue
        kept.append(row)
    return kept


def probe(features, labels, folds, cross, classes: list[str], c: float) -> dict:
    """Per fold: a standardiser + balanced logistic regression fitted on the
    training rows; UA on validation, test and the cross-corpus rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from bimer_tf.evaluation.metrics import classification_report

    def unweighted_accuracy(model, x, y) -> float:
        return classification_report(y, model.predict_proba(x), classes)["ua"]

    scores = {"val": [], "test": [], "cross": []}
    for fold in folds:
        model = make_pipeline(
            StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=3000)
        )
        model.fit(features[fold["train"]], labels[fold["train"]])
        for split in ("val", "test"):
            index = fold[split]
            scores[split].append(unweighted_accuracy(model, features[index], labels[index]))
        if cross is not None:
            scores["cross"].append(unweighted_accuracy(model, cross[0], cross[1]))
    return {split: values for split, values in scores.items() if values}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", required=True, help="the corpus the folds split")
    parser.add_argument("--splits", required=True, help="its splits.json (e.g. speaker folds)")
    parser.add_argument("--source", action="append", required=True, help="a Whisper source (repeat for several)")
    parser.add_argument("--cross-manifest", help="a corpus scored by each fold's probe (rows of unknown labels left out)")
    parser.add_argument(
        "--max-duration-s", type=float, default=5.0, help="the window, as audio.max_duration_s (default %(default)s: the RAVDESS recipes')"
    )
    parser.add_argument(
        "--loudness-dbfs", type=float, default=None, help="the level step, as audio.loudness_dbfs (-23 in the served recipe; default: none)"
    )
    parser.add_argument("--c", type=float, default=1.0, help="inverse regularisation of the regression")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--cache", type=Path, help="folder keeping the pooled states between runs")
    args = parser.parse_args(argv)

    from bimer_tf.config import AudioConfig
    from bimer_tf.data.manifest import read_manifest, read_splits
    from bimer_tf.errors import InputError

    rows = readable([row for row in read_manifest(args.manifest) if row.get("augmentation") is None], args.manifest)
    _, folds = read_splits(args.splits)
    classes = sorted({row["label"] for row in rows})
    position = {row["id"]: i for i, row in enumerate(rows)}
    fold_rows = [
        {split: np.array([position[i] for i in getattr(fold, split) if i in position]) for split in ("train", "val", "test")}
        for fold in folds
    ]
    for fold, indices in zip(folds, fold_rows):
        empty = [split for split, index in indices.items() if not len(index)]
        if empty:
            raise InputError(
                f"{args.splits}: fold {fold.name} has no readable row of {args.manifest} in its "
                f"{', '.join(empty)} split; split this manifest with `python -m bimer_tf.data.split`"
            )
    labels = np.array([classes.index(row["label"]) for row in rows])
    cross_rows = []
    if args.cross_manifest:
        cross_rows = readable(
            [row for row in read_manifest(args.cross_manifest) if row["label"] in classes], args.cross_manifest
        )
    audio = AudioConfig(max_duration_s=args.max_duration_s, loudness_dbfs=args.loudness_dbfs)

    per_layer = {}  # (source, layer) -> pooled features of the corpus and the cross corpus
    for source in args.source:
        states = cached_states(source, rows, audio, args.batch, args.cache)
        cross_states = cached_states(source, cross_rows, audio, args.batch, args.cache) if cross_rows else None
        for layer in range(states.shape[1]):
            per_layer[(source, layer)] = (states[:, layer], None if cross_states is None else cross_states[:, layer])
    cross_labels = np.array([classes.index(row["label"]) for row in cross_rows]) if cross_rows else None

    def run(name: str, keys: list) -> dict:
        features = np.concatenate([per_layer[key][0] for key in keys], axis=1)
        cross = None
        if cross_labels is not None:
            cross = (np.concatenate([per_layer[key][1] for key in keys], axis=1), cross_labels)
        scores = probe(features, labels, fold_rows, cross, classes, args.c)
        result = {"probe": name, "dims": int(features.shape[1])}
        for split, values in scores.items():
            result[f"{split}_ua"] = round(float(np.mean(values)), 4)
            result[f"{split}_ua_per_fold"] = [round(v, 4) for v in values]
        print(json.dumps(result), flush=True)
        return result

    results, best = [], {}
    for (source, layer) in per_layer:
        result = run(f"{source} state {layer}", [(source, layer)])
        results.append(result)
        if source not in best or result["val_ua"] > best[source][1]["val_ua"]:
            best[source] = (layer, result)
    if len(args.source) > 1:
        chosen = [(source, best[source][0]) for source in args.source]
        names = " + ".join(f"{source} state {layer}" for source, layer in chosen)
        results.append(run(f"together: {names}", chosen))

    has_cross = cross_labels is not None
    print("\n| probe | dims | validation UA | test UA |" + (" cross-corpus UA |" if has_cross else ""))
    print("|---|---:|---:|---:|" + ("---:|" if has_cross else ""))
    for result in results:
        chosen = any(result is best[source][1] for source in best)
        name = f"**{result['probe']}** (best validation of its source)" if chosen else result["probe"]
        line = f"| {name} | {result['dims']} | {result['val_ua']:.3f} | {result['test_ua']:.3f} |"
        print(line + (f" {result['cross_ua']:.3f} |" if has_cross else ""))
    print(f"\n{len(rows)} clips, {len(folds)} folds of {args.splits}; state 0 is the embedding output, "
          f"state k the k-th layer's; cross-corpus: {len(cross_rows)} rows of {args.cross_manifest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
