"""`python -m bimer_tf.data.demo`: generate the synthetic demo corpus.

    python -m bimer_tf.data.demo --out data/demo [--seed 0] [--speakers 10] [--per-class 12]

Training generates the corpus into `data.demo_dir` on first use, so this is
only needed for another size, seed or folder.
"""

from __future__ import annotations

import argparse
from collections import Counter

from bimer_tf.config import DataConfig
from bimer_tf.data.demo.corpus import ensure_demo_corpus, generate_demo_corpus, shared_sentence_fraction
from bimer_tf.data.demo.synthesizer import EMOTIONS
from bimer_tf.data.manifest import read_manifest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bimer_tf.data.demo",
        description="Generate the synthetic speech + text emotion corpus (no download needed).",
    )
    parser.add_argument(
        "--out", default=DataConfig().demo_dir, help="corpus folder (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--speakers",
        type=int,
        default=10,
        help="number of speakers, alternately low- and high-pitched (default: %(default)s)",
    )
    parser.add_argument(
        "--per-class",
        type=int,
        default=12,
        help="utterances per emotion and speaker (default: %(default)s)",
    )
    parser.add_argument(
        "--labels",
        default=",".join(EMOTIONS),
        help="comma-separated labels in class-id order (default: %(default)s)",
    )
    parser.add_argument(
        "--force", action="store_true", help="regenerate even if the folder holds this corpus"
    )
    args = parser.parse_args(argv)

    labels = tuple(label.strip() for label in args.labels.split(",") if label.strip())
    build = generate_demo_corpus if args.force else ensure_demo_corpus
    manifest = build(args.out, args.seed, args.speakers, args.per_class, labels)
    rows = read_manifest(manifest)
    counts = Counter(row["label"] for row in rows)
    print(f"{manifest}: {len(rows)} utterances, {len({r['speaker'] for r in rows})} speakers")
    print("per label: " + ", ".join(f"{label} {counts[label]}" for label in labels))
    print(f"sentences under more than one label: {shared_sentence_fraction(rows):.0%}")
    return 0


if __name__ == "__main__":
    from bimer_tf.cli import run_main

    raise SystemExit(run_main(main))
