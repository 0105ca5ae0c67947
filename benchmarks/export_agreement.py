"""How far two exports answer alike on every row of a manifest, labels unread.

    python benchmarks/export_agreement.py --saved-model export/ensemble/1 \
        --saved-model export/ensemble_encoder/1 --manifest data/emodb/manifest.jsonl [--batch 8]

Both exports answer every row (their `serving_default`, with the inputs the
first export's metadata names: the WAV bytes and/or the transcript). Prints
one JSON line: the rows answered, how many get the same class from both,
the mean and largest absolute difference of their probabilities, and the
rows left out (a missing or unreadable file, with the reason). No label is
read, so a corpus kept for testing can be used to check that a cheaper
export (`export.py --average encoder`, say) stands in for the one it
approximates without scoring either.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bimer_tf.cli import quiet_startup, run_main  # noqa: E402

quiet_startup()  # before anything imports TensorFlow

import numpy as np  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--saved-model", action="append", required=True, metavar="DIR", help="an export version folder (twice)")
    parser.add_argument("--manifest", required=True, help="the rows to answer (their labels are not read)")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args(argv)
    if len(args.saved_model) != 2:
        parser.error("give --saved-model exactly twice")

    import tensorflow as tf

    from bimer_tf.data.manifest import read_manifest
    from bimer_tf.errors import op_error_message
    from bimer_tf.serving.export_dir import AUDIO_INPUT, TEXT_INPUT, load_saved_model, read_export_info

    inputs = read_export_info(args.saved_model[0]).inputs
    signatures = [load_saved_model(folder)[0] for folder in args.saved_model]

    def answer(batch) -> tuple:
        """Both exports' probabilities for the rows."""
        values = {}
        if AUDIO_INPUT in inputs:
            values[AUDIO_INPUT] = tf.constant([Path(row["audio"]).read_bytes() for row in batch])
        if TEXT_INPUT in inputs:
            values[TEXT_INPUT] = tf.constant([row["text"] or "" for row in batch])
        return tuple(signature(**values)["probabilities"].numpy() for signature in signatures)

    rows, left_out = [], []
    for row in read_manifest(args.manifest):
        if AUDIO_INPUT in inputs and not (row["audio"] and Path(row["audio"]).is_file()):
            left_out.append(f"{row['id']}: no audio file ({row['audio']})")
        else:
            rows.append(row)
    answered = []
    for start in range(0, len(rows), args.batch):
        batch = rows[start : start + args.batch]
        try:
            answered.append(answer(batch))
        except tf.errors.InvalidArgumentError:
            for row in batch:  # the export refuses a batch for one bad clip: answer the rows alone
                try:
                    answered.append(answer([row]))
                except tf.errors.InvalidArgumentError as error:
                    left_out.append(f"{row['id']}: {op_error_message(error)}")
    if not answered:
        raise SystemExit(f"no row of {args.manifest} was answered by both exports: {left_out[:3]}")
    first, second = (np.concatenate([pair[index] for pair in answered]) for index in (0, 1))
    difference = np.abs(first - second)
    same = first.argmax(axis=1) == second.argmax(axis=1)
    print(json.dumps({
        "benchmark": "export_agreement",
        "saved_models": args.saved_model,
        "manifest": args.manifest,
        "rows": len(first),
        "left_out": left_out,
        "same_class": int(same.sum()),
        "same_class_share": round(float(same.mean()), 4),
        "mean_abs_difference": round(float(difference.mean()), 4),
        "max_abs_difference": round(float(difference.max()), 4),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
