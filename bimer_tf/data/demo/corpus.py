"""The demo corpus on disk: who says what, the speaker-holdout split, generation and caching.

Utterance `i` draws from `np.random.default_rng([seed, UTTERANCE_STREAM, i])`,
so the same seed gives byte-identical WAVs and manifest whatever the order of
work. The corpus folder holds `wav/<speaker>/<id>.wav`, `manifest.jsonl`, a
speaker-independent split (`splits.json`, `heldout-speakers/{train,val,test}.jsonl`)
and `demo_info.json`, which `ensure_demo_corpus` reads to skip work already done.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from bimer_tf.audio.wav import write_pcm16
from bimer_tf.config import AudioConfig, DataConfig
from bimer_tf.data.demo.sentences import (
    AMBIGUOUS_SENTENCES,
    EMOTION_SENTENCES,
    SENTENCE_KIND_SHARES,
    VALENCE_SENTENCES,
    sentence_pools,
)
from bimer_tf.data.demo.synthesizer import (
    EMOTIONS,
    TEXT_STREAM,
    UTTERANCE_STREAM,
    SpeakerVoice,
    make_speakers,
    synthesize_utterance,
)
from bimer_tf.data.manifest import Fold, make_row, write_manifest, write_splits
from bimer_tf.errors import InputError

# Bump whenever a change alters the generated audio or text: cached corpora
# recorded with another version are regenerated.
DEMO_VERSION = 1
CORPUS = "demo"
PROTOCOL = "speaker-holdout"
FOLD_NAME = "heldout-speakers"
INFO_FILE = "demo_info.json"
MANIFEST_FILE = "manifest.jsonl"
# Two held-out test speakers, two validation speakers and at least two to train on.
MIN_SPEAKERS = 6


@dataclass(frozen=True)
class UtterancePlan:
    index: int  # seeds this utterance's random stream
    id: str
    speaker: str
    label: str
    text: str


def plan_utterances(
    num_speakers: int = 10,
    per_class: int = 12,
    labels=EMOTIONS,
    seed: int = 0,
) -> list[UtterancePlan]:
    """Who says what in which emotion: the corpus without its audio.

    Each emotion's utterances cycle through sentence kinds in the proportions
    of SENTENCE_KIND_SHARES and through each pool in a seeded order. Emotions
    that share a pool walk it in the same order, so even a small corpus has
    every shared sentence under several emotions.
    """
    labels = _check_parameters(num_speakers, per_class, labels)
    rng = np.random.default_rng([seed, TEXT_STREAM])
    order = {}  # one seeded order per pool, shared by the emotions using it
    for pool in [*EMOTION_SENTENCES.values(), *VALENCE_SENTENCES.values(), AMBIGUOUS_SENTENCES]:
        order[pool] = [pool[i] for i in rng.permutation(len(pool))]

    kinds = list(SENTENCE_KIND_SHARES)
    shares = np.array(list(SENTENCE_KIND_SHARES.values()))
    texts = {}
    for label in labels:
        pools, drawn, used = sentence_pools(label), np.zeros(len(kinds)), Counter()
        sequence = []
        for position in range(num_speakers * per_class):
            # The kind furthest behind its share comes next: an even spread.
            kind = kinds[int(np.argmax(shares * (position + 1) - drawn))]
            drawn[kinds.index(kind)] += 1
            pool = order[pools[kind]]
            sequence.append(pool[used[kind] % len(pool)])
            used[kind] += 1
        texts[label] = sequence

    width = max(2, len(str(per_class)))
    plans = []
    for speaker_index in range(num_speakers):
        speaker = f"spk{speaker_index + 1:02d}"
        for label in labels:
            for k in range(per_class):
                plans.append(
                    UtterancePlan(
                        index=len(plans),
                        id=f"{speaker}_{label}_{k + 1:0{width}d}",
                        speaker=speaker,
                        label=label,
                        text=texts[label][speaker_index * per_class + k],
                    )
                )
    return plans


def shared_sentence_fraction(rows) -> float:
    """Share of distinct sentences that occur under more than one label."""
    labels_of = defaultdict(set)
    for row in rows:
        labels_of[row["text"]].add(row["label"])
    return sum(len(v) > 1 for v in labels_of.values()) / max(1, len(labels_of))


def speaker_holdout_fold(speakers: list[SpeakerVoice], rows: list[dict]) -> Fold:
    """Test: the last low- and high-pitched speakers; val: the two before; train: the rest."""
    low = [s.name for s in speakers if s.pitch == "low"]
    high = [s.name for s in speakers if s.pitch == "high"]
    test, val = {low[-1], high[-1]}, {low[-2], high[-2]}
    split_of = {name: "train" for name in low + high}
    split_of.update({name: "test" for name in test} | {name: "val" for name in val})
    ids = defaultdict(list)
    for row in rows:
        ids[split_of[row["speaker"]]].append(row["id"])
    return Fold(FOLD_NAME, ids["train"], ids["val"], ids["test"])


def _check_parameters(num_speakers, per_class, labels, sample_rate=16000) -> tuple[str, ...]:
    if not isinstance(num_speakers, int) or num_speakers < MIN_SPEAKERS:
        raise InputError(
            f"the demo corpus needs at least {MIN_SPEAKERS} speakers (2 test, 2 validation, "
            f"2 or more training), got {num_speakers}; use --speakers {MIN_SPEAKERS} or more"
        )
    if not isinstance(per_class, int) or per_class < 1:
        raise InputError(
            f"utterances per class and speaker must be at least 1, got {per_class}; "
            "use --per-class 1 or more"
        )
    labels = tuple(labels)
    unknown = [label for label in labels if label not in EMOTIONS]
    if unknown or len(labels) < 2 or len(set(labels)) != len(labels):
        raise InputError(
            f"demo labels must be 2 or more distinct names out of {', '.join(EMOTIONS)}, "
            f"got {list(labels)}"
        )
    if sample_rate < 16000:
        raise InputError(f"the demo corpus needs a sample rate of 16000 Hz or more, got {sample_rate}")
    return labels


def _parameters(seed, num_speakers, per_class, labels, sample_rate) -> dict:
    return {
        "version": DEMO_VERSION,
        "seed": seed,
        "num_speakers": num_speakers,
        "per_class": per_class,
        "labels": list(labels),
        "sample_rate": sample_rate,
    }


def _read_info(out_dir: Path) -> dict | None:
    try:
        return json.loads((out_dir / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def generate_demo_corpus(
    out_dir: str | Path,
    seed: int = 0,
    num_speakers: int = 10,
    per_class: int = 12,
    labels=EMOTIONS,
    sample_rate: int = AudioConfig().sample_rate,
    progress: bool = True,
) -> Path:
    """Writes the demo corpus into `out_dir` (always) and returns the manifest path."""
    out_dir = Path(out_dir).resolve()
    labels = _check_parameters(num_speakers, per_class, labels, sample_rate)
    if (out_dir / MANIFEST_FILE).exists() and _read_info(out_dir) is None:
        raise InputError(
            f"{out_dir} holds a manifest that is not a demo corpus; "
            "choose an empty or demo folder for --out"
        )
    parameters = _parameters(seed, num_speakers, per_class, labels, sample_rate)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Marked incomplete until the last file is written, so an interrupted run is redone.
    _write_json(out_dir / INFO_FILE, {"parameters": parameters, "complete": False})

    speakers = make_speakers(num_speakers, seed)
    voice_of = {s.name: s for s in speakers}
    plans = plan_utterances(num_speakers, per_class, labels, seed)
    rows, written = [], set()
    for plan in tqdm(plans, desc="demo corpus", unit="utt", file=sys.stderr, disable=not progress):
        rng = np.random.default_rng([seed, UTTERANCE_STREAM, plan.index])
        voice = voice_of[plan.speaker]
        samples = synthesize_utterance(plan.text, plan.label, voice, rng, sample_rate)
        path = write_pcm16(out_dir / "wav" / plan.speaker / f"{plan.id}.wav", samples, sample_rate)
        written.add(path)
        rows.append(
            make_row(
                plan.id,
                plan.label,
                audio=str(path),
                text=plan.text,
                speaker=plan.speaker,
                corpus=CORPUS,
            )
        )
    for stale in (out_dir / "wav").glob("*/*.wav"):  # left over from other parameters
        if stale not in written:
            stale.unlink()

    manifest = write_manifest(rows, out_dir / MANIFEST_FILE)
    write_splits(rows, PROTOCOL, [speaker_holdout_fold(speakers, rows)], out_dir)
    _write_json(
        out_dir / INFO_FILE,
        {
            "parameters": parameters,
            "complete": True,
            "utterances": len(rows),
            "per_label": dict(Counter(row["label"] for row in rows)),
            "shared_sentence_fraction": round(shared_sentence_fraction(rows), 4),
            "speakers": [asdict(s) for s in speakers],
        },
    )
    return manifest


def ensure_demo_corpus(
    out_dir: str | Path = DataConfig().demo_dir,
    seed: int = 0,
    num_speakers: int = 10,
    per_class: int = 12,
    labels=EMOTIONS,
    sample_rate: int = AudioConfig().sample_rate,
    progress: bool = True,
) -> Path:
    """The demo manifest in `out_dir`, generated only if missing or made with other parameters."""
    out_dir = Path(out_dir).resolve()
    labels = _check_parameters(num_speakers, per_class, labels, sample_rate)
    info = _read_info(out_dir)
    wanted = _parameters(seed, num_speakers, per_class, labels, sample_rate)
    manifest = out_dir / MANIFEST_FILE
    if (
        info is not None
        and info.get("complete")
        and info.get("parameters") == wanted
        and manifest.is_file()
        and (out_dir / "splits.json").is_file()
    ):
        return manifest
    return generate_demo_corpus(
        out_dir, seed, num_speakers, per_class, labels, sample_rate, progress
    )


def _write_json(path: Path, document: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
