"""Train/validation/test splits of a manifest under a named protocol.

    python -m bimer_tf.data.split --manifest data/ravdess/manifest.jsonl \
        --protocol speaker-folds --out data/ravdess/splits

writes `OUT/splits.json` and `OUT/<fold>/{train,val,test}.jsonl`. Protocols:

- `loso` (IEMOCAP): leave one session out, one fold per session
  (`session1`..`session5`). Test: every row of session k. Validation: one
  speaker of the next session (cyclically), the speakers taken in turn so
  that the gender alternates across folds (Ses02F, Ses03M, ...). Training:
  every other speaker. Speaker-independent.
- `speaker-folds` (`--folds K`, e.g. RAVDESS actors): the speakers, in
  natural order, are dealt into K groups like cards in a snake order
  (0,1,..,K-1,K-1,..,0), which spreads alternating ids (RAVDESS: odd actors
  male, even female) evenly over the groups. Fold k: test = group k,
  validation = the first `--val-speakers` speakers of group k+1, training =
  the rest. Speaker-independent.
- `official` (MELD, TweetEval): the corpus's own split, read from
  `official_split.json` beside the manifest (written by the corpus reader).
- `bimer-balanced`: the BiMER paper's balanced sets. Per class: validation
  = `--val-per-class` original recordings (never augmented), test =
  `--test-per-class` originals, training = `--train-per-class` rows: larger
  classes are under-sampled at random, smaller ones are filled with
  augmented copies of their own training originals (from `--aug-manifest`),
  an equal share per augmentation method. The paper reported on its
  validation set and had no test set; `--test-per-class 0` reproduces that
  (test = []), while the default 120 keeps a held-out test set so that model
  selection (validation) and the reported number (test) use different data.
  This protocol mixes speakers between training and evaluation; with
  `--holdout-speakers S1,S2` validation and test come only from those
  speakers and training from the others (speaker-independent).

Augmented rows (augmentation != null) in the manifest or in `--aug-manifest`
follow their origin: a copy enters training only when its original is a
training row, and is dropped otherwise. Every fold passes
`check_no_leakage` before anything is written.

Augmentation comes after the split. For `bimer-balanced`, which needs the
copies to fill classes: split once without `--aug-manifest`, augment that
fold's training originals (`python -m bimer_tf.data.augment --manifest
OUT/balanced/train.jsonl ...`), then split again with `--aug-manifest` and
the same seed: validation, test and the training originals stay the same
(each class draws from its own seeded generator) and the copies fill the
training set.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

from bimer_tf.data.augment_audio import METHODS
from bimer_tf.data.manifest import Fold, read_manifest, write_splits
from bimer_tf.errors import InputError

PROTOCOLS = ("bimer-balanced", "loso", "speaker-folds", "official")
OFFICIAL_SPLIT_FILE = "official_split.json"


class LeakageError(InputError):
    """A fold whose training data overlaps its validation or test data."""


def _some(items, limit: int = 10) -> str:
    items = list(items)
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def natural_key(text) -> list:
    """Sort key with numbers compared as numbers: Actor_2 before Actor_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(text))]


def check_no_leakage(rows: list[dict], fold: Fold, speaker_independent: bool) -> None:
    """Raises LeakageError naming the offending ids when training sees evaluation data.

    Leaks: a validation/test id in training (or in both validation and test);
    a training row sharing its origin with a validation/test row (an
    augmented copy of an evaluation recording, or the recording of an
    evaluation copy); and, when `speaker_independent`, a validation/test
    speaker with rows in training.
    """
    by_id = {row["id"]: row for row in rows}
    unknown = [i for i in fold.train + fold.val + fold.test if i not in by_id]
    if unknown:
        raise InputError(f"fold {fold.name}: ids not in the manifest: {_some(unknown)}")
    held_out = set(fold.val) | set(fold.test)
    problems = []
    in_train = [i for i in fold.train if i in held_out]
    if in_train:
        problems.append(f"val/test ids in train: {_some(in_train)}")
    in_both = [i for i in fold.val if i in set(fold.test)]
    if in_both:
        problems.append(f"ids in both val and test: {_some(in_both)}")
    held_out_origins = {by_id[i]["origin"] for i in held_out}
    copies = [i for i in fold.train if i not in held_out and by_id[i]["origin"] in held_out_origins]
    if copies:
        problems.append(
            "train rows sharing their origin with val/test rows (augmented copies): "
            + _some(copies)
        )
    if speaker_independent:
        held_out_speakers = {by_id[i]["speaker"] for i in held_out} - {None}
        leaking = [i for i in fold.train if by_id[i]["speaker"] in held_out_speakers]
        if leaking:
            speakers = sorted({by_id[i]["speaker"] for i in leaking}, key=natural_key)
            problems.append(f"val/test speakers {_some(speakers)} also in train: {_some(leaking)}")
    if problems:
        raise LeakageError(
            f"fold {fold.name} leaks evaluation data into training: " + "; ".join(problems)
        )


# === Protocols ===


def _originals(rows: list[dict]) -> list[dict]:
    return [row for row in rows if row["augmentation"] is None]


def _require(rows: list[dict], field: str, protocol: str, example: str) -> None:
    missing = [row["id"] for row in rows if row[field] in (None, "")]
    if missing:
        raise InputError(
            f"--protocol {protocol} needs a `{field}` on every row, but {len(missing)} rows "
            f"have none ({_some(missing, 5)}); the corpus reader must fill it ({example}), "
            "or choose another protocol"
        )


def _fold_by_speakers(name: str, rows: list[dict], test_speakers, val_speakers) -> Fold:
    """Test and validation rows chosen by speaker, training = every other speaker."""
    split_of = {speaker: "test" for speaker in test_speakers}
    split_of.update({speaker: "val" for speaker in val_speakers})
    ids = {"train": [], "val": [], "test": []}
    for row in rows:  # manifest order
        ids[split_of.get(row["speaker"], "train")].append(row["id"])
    return Fold(name, **ids)


def _session_key(value) -> tuple:
    match = re.search(r"(\d+)$", str(value))
    return (0, int(match.group(1)), "") if match else (1, 0, str(value))


def loso_folds(rows: list[dict]) -> list[Fold]:
    """Leave-one-session-out folds over the original rows."""
    originals = _originals(rows)
    _require(originals, "session", "loso", "IEMOCAP: 1-5")
    _require(originals, "speaker", "loso", "IEMOCAP: Ses01F, Ses01M, ...")
    sessions_of = defaultdict(set)
    for row in originals:
        sessions_of[row["speaker"]].add(_session_key(row["session"]))
    spanning = sorted(s for s, sessions in sessions_of.items() if len(sessions) > 1)
    if spanning:
        raise InputError(
            f"--protocol loso: speakers {_some(spanning)} appear in several sessions; speaker ids "
            "must be unique per session (IEMOCAP: Ses01F, Ses01M, ...)"
        )
    sessions = sorted({_session_key(row["session"]) for row in originals})
    if len(sessions) < 2:
        raise InputError("--protocol loso needs rows from 2 or more sessions")
    speakers_in = {
        s: sorted((spk for spk, ss in sessions_of.items() if s in ss), key=natural_key)
        for s in sessions
    }
    folds = []
    for index, session in enumerate(sessions):
        next_speakers = speakers_in[sessions[(index + 1) % len(sessions)]]
        val_speaker = next_speakers[index % len(next_speakers)]
        test_speakers = {spk for spk, ss in sessions_of.items() if session in ss}
        name = f"session{session[1]}" if session[0] == 0 else f"session-{session[2]}"
        folds.append(_fold_by_speakers(name, originals, test_speakers, [val_speaker]))
    return folds


def speaker_groups(speakers, count: int) -> list[list]:
    """Deals speakers (natural order) into `count` groups in snake order."""
    groups = [[] for _ in range(count)]
    for index, speaker in enumerate(sorted(set(speakers), key=natural_key)):
        turn, seat = divmod(index, count)
        groups[seat if turn % 2 == 0 else count - 1 - seat].append(speaker)
    return groups


def speaker_folds(
    rows: list[dict], folds: int = 4, val_speakers: int = 2, members: int = 1, refit: bool = False
) -> list[Fold]:
    """K speaker-independent folds: test = one speaker group, val = speakers of the next.

    `refit`: each fold becomes `<fold>-refit`, its test speakers moved into
    training and no test set: the final model of a recipe whose
    cross-validation already measured it, trained on every speaker but the
    fold's validation ones (which still choose its checkpoint). Such a model
    is scored only on data of other corpora or speakers.

    `members` > 1: each fold becomes that many folds `<fold>-member<m>` for an
    ensemble trained inside the fold. The fold's training speakers are dealt
    into `members` groups; member m trains on all but group m and validates
    on the fold's validation speakers plus group m; the test speakers stay
    the fold's. The fold's own validation speakers are then the only ones
    no member trained on: the ensemble's validation set.
    """
    originals = _originals(rows)
    _require(originals, "speaker", "speaker-folds", "RAVDESS: the actor")
    speakers = {row["speaker"] for row in originals}
    if folds < 2 or len(speakers) < folds:
        raise InputError(
            f"--folds {folds}: needs 2 or more folds and a speaker or more per fold "
            f"(the manifest has {len(speakers)} speakers)"
        )
    groups = speaker_groups(speakers, folds)
    if not 1 <= val_speakers <= min(len(g) for g in groups):
        raise InputError(
            f"--val-speakers {val_speakers}: must be between 1 and the smallest group size "
            f"({min(len(g) for g in groups)} speakers with --folds {folds})"
        )
    if refit and members != 1:
        raise InputError("--refit and --members do not go together: a refit has no test speakers to share")
    result = []
    for k in range(folds):
        test, val = groups[k], groups[(k + 1) % folds][:val_speakers]
        if refit:
            result.append(_fold_by_speakers(f"fold{k + 1}-refit", originals, [], val))
            continue
        if members == 1:
            result.append(_fold_by_speakers(f"fold{k + 1}", originals, test, val))
            continue
        training = speakers - set(test) - set(val)
        if not 2 <= members <= len(training) - 1:
            raise InputError(
                f"--members {members}: must be between 2 and one less than the training speakers "
                f"of a fold ({len(training)} with --folds {folds} --val-speakers {val_speakers}), "
                "so that every member trains on some of them"
            )
        for m, left_out in enumerate(speaker_groups(training, members)):
            result.append(_fold_by_speakers(f"fold{k + 1}-member{m + 1}", originals, test, [*val, *left_out]))
    return result


def official_fold(rows: list[dict], split_path: str | Path) -> Fold:
    """The corpus's own split from `official_split.json`."""
    split_path = Path(split_path)
    if not split_path.is_file():
        raise InputError(
            f"{split_path} not found: --protocol official reads the corpus's own split, written "
            "by `python -m bimer_tf.data.prepare` for corpora that have one (MELD, TweetEval); "
            "for other corpora choose loso, speaker-folds or bimer-balanced"
        )
    try:
        document = json.loads(split_path.read_text(encoding="utf-8"))
        lists = {name: [str(i) for i in document[name]] for name in ("train", "val", "test")}
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise InputError(
            f'{split_path}: expected {{"train": [ids], "val": [ids], "test": [ids]}} ({error}); '
            "write it again with `python -m bimer_tf.data.prepare`"
        ) from None
    known = {row["id"] for row in rows}
    unknown = [i for ids in lists.values() for i in ids if i not in known]
    if unknown:
        raise InputError(
            f"{split_path}: {len(unknown)} ids are not in the manifest ({_some(unknown, 5)}); "
            "the manifest and the split must come from the same `prepare` run"
        )
    return Fold("official", lists["train"], lists["val"], lists["test"])


def balanced_fold(
    rows: list[dict],
    *,
    val_per_class: int = 120,
    train_per_class: int = 800,
    test_per_class: int = 120,
    holdout_speakers=None,
    seed: int = 0,
) -> tuple[Fold, list[str]]:
    """The BiMER balanced sets (see module docstring); returns the fold and notes."""
    if val_per_class < 1 or train_per_class < 1 or test_per_class < 0:
        raise InputError(
            "--val-per-class and --train-per-class must be 1 or more, --test-per-class 0 or more"
        )
    originals = _originals(rows)
    copies = [row for row in rows if row["augmentation"] is not None]
    holdout = set(holdout_speakers or ())
    if holdout:
        absent = sorted(holdout - {row["speaker"] for row in originals}, key=natural_key)
        if absent:
            raise InputError(f"--holdout-speakers: no original rows of speakers {_some(absent)}")
    speaker_of = {row["id"]: row["speaker"] for row in originals}
    held_out_count = val_per_class + test_per_class
    val, test, train, notes = set(), set(), set(), []
    for label in sorted({row["label"] for row in originals}):
        # One generator per class: a class's draw does not depend on the others
        # nor on whether augmented copies are given.
        rng = random.Random(f"{seed}/{label}")
        members = [row["id"] for row in originals if row["label"] == label]
        if holdout:
            candidates = [i for i in members if speaker_of[i] in holdout]
            pool = [i for i in members if speaker_of[i] not in holdout]
        else:
            candidates, pool = members, members
        candidates = rng.sample(candidates, len(candidates))
        if len(candidates) < held_out_count:
            source = f" of speakers {_some(sorted(holdout))}" if holdout else ""
            remedy = "lower them" + (" or hold out more speakers" if holdout else "")
            raise InputError(
                f"class '{label}' has {len(candidates)} original recordings{source}, but "
                f"--val-per-class {val_per_class} + --test-per-class {test_per_class} need "
                f"{held_out_count}; {remedy}"
            )
        val.update(candidates[:val_per_class])
        test.update(candidates[val_per_class:held_out_count])
        held = set(candidates[:held_out_count])
        pool = [i for i in pool if i not in held]
        if len(pool) >= train_per_class:
            train.update(rng.sample(pool, train_per_class))
            if len(pool) > train_per_class:
                notes.append(
                    f"{label}: under-sampled {len(pool)} training originals to {train_per_class}"
                )
            continue
        train.update(pool)
        need = train_per_class - len(pool)
        pool_ids = set(pool)
        eligible = [row for row in copies if row["label"] == label and row["origin"] in pool_ids]
        if not eligible:
            notes.append(
                f"{label}: {len(pool)} training originals, {need} short of {train_per_class}; "
                "no augmented copies of them given (--aug-manifest)"
            )
            continue
        fill, per_method = _equal_share(eligible, need, random.Random(f"{seed}/{label}/fill"))
        if len(fill) < need:
            raise InputError(
                f"class '{label}' needs {need} augmented copies to reach --train-per-class "
                f"{train_per_class}, but only {len(eligible)} copies of its {len(pool)} training "
                "originals were given; augment with more methods or lower --train-per-class"
            )
        train.update(fill)
        shares = ", ".join(f"{m} {n}" for m, n in per_method.items())
        notes.append(
            f"{label}: {len(pool)} training originals + {need} augmented copies ({shares})"
        )
    unused = sum(1 for row in copies if row["id"] not in train)
    if unused:
        notes.append(
            f"{unused} augmented rows not used (not needed, or copies of rows outside training)"
        )
    fold = Fold(
        "balanced",
        train=[row["id"] for row in rows if row["id"] in train],  # manifest order
        val=[row["id"] for row in rows if row["id"] in val],
        test=[row["id"] for row in rows if row["id"] in test],
    )
    return fold, notes


def _equal_share(
    copies: list[dict], need: int, rng: random.Random
) -> tuple[list[str], dict[str, int]]:
    """Draws `need` copies, as equal a number from each method as the copies allow."""
    by_method = defaultdict(list)
    for row in copies:
        by_method[row["augmentation"]].append(row["id"])
    order = [m for m in METHODS if m in by_method] + sorted(
        m for m in by_method if m not in METHODS
    )
    pools = {m: rng.sample(by_method[m], len(by_method[m])) for m in order}
    share, extra = divmod(need, len(order))
    taken = {m: min(len(pools[m]), share + (i < extra)) for i, m in enumerate(order)}
    # A method with too few copies leaves its remainder to the others, in turn.
    while sum(taken.values()) < need:
        spare = [m for m in order if taken[m] < len(pools[m])]
        if not spare:
            break
        for m in spare[: need - sum(taken.values())]:
            taken[m] += 1
    return [i for m in order for i in pools[m][: taken[m]]], taken


def add_augmented_copies(folds: list[Fold], rows: list[dict]) -> tuple[list[Fold], list[str]]:
    """Adds each augmented row to training where its origin is a training row."""
    copies = [row for row in rows if row["augmentation"] is not None]
    if not copies:
        return folds, []
    result, notes = [], []
    for fold in folds:
        in_train = set(fold.train)
        added = [row["id"] for row in copies if row["origin"] in in_train]
        result.append(Fold(fold.name, fold.train + added, fold.val, fold.test))
        notes.append(
            f"fold {fold.name}: {len(added)} augmented rows added to train, "
            f"{len(copies) - len(added)} dropped (their origin is not a training row)"
        )
    return result, notes


def make_folds(
    rows: list[dict],
    protocol: str,
    *,
    manifest_path: str | Path | None = None,
    seed: int = 0,
    val_per_class: int = 120,
    train_per_class: int = 800,
    test_per_class: int = 120,
    holdout_speakers=None,
    folds: int = 4,
    val_speakers: int = 2,
    members: int = 1,
    refit: bool = False,
) -> tuple[list[Fold], list[str], bool]:
    """Folds of `protocol` over `rows`; returns (folds, notes, speaker_independent)."""
    if members != 1 and protocol != "speaker-folds":
        raise InputError(f"--members is an option of --protocol speaker-folds, not of {protocol}")
    if refit and protocol != "speaker-folds":
        raise InputError(f"--refit is an option of --protocol speaker-folds, not of {protocol}")
    if protocol == "bimer-balanced":
        fold, notes = balanced_fold(
            rows,
            val_per_class=val_per_class,
            train_per_class=train_per_class,
            test_per_class=test_per_class,
            holdout_speakers=holdout_speakers,
            seed=seed,
        )
        return [fold], notes, bool(holdout_speakers)
    notes = []
    if protocol == "loso":
        result, speaker_independent = loso_folds(rows), True
    elif protocol == "speaker-folds":
        result, speaker_independent = speaker_folds(rows, folds, val_speakers, members, refit), True
    elif protocol == "official":
        if manifest_path is None:
            raise InputError(
                "--protocol official needs the manifest's path to find official_split.json"
            )
        result = [official_fold(rows, Path(manifest_path).parent / OFFICIAL_SPLIT_FILE)]
        speaker_independent = False
        listed = set(result[0].train + result[0].val + result[0].test)
        unlisted = sum(1 for row in _originals(rows) if row["id"] not in listed)
        if unlisted:
            notes.append(f"{unlisted} original rows are in no official split and left out")
    else:
        raise InputError(f"unknown protocol '{protocol}'; choose one of {', '.join(PROTOCOLS)}")
    result, copy_notes = add_augmented_copies(result, rows)
    return result, notes + copy_notes, speaker_independent


def summarize(rows: list[dict], folds: list[Fold], protocol: str, speaker_independent: bool) -> str:
    """A table per fold: rows per class and split, speakers, augmented rows."""
    by_id = {row["id"]: row for row in rows}
    labels = sorted({row["label"] for row in rows})
    kind = "speaker-independent" if speaker_independent else "speakers may overlap"
    lines = [f"protocol {protocol} ({kind}), {len(folds)} fold(s)"]
    width = max(7, *(len(label) for label in labels))
    header = f"  {'split':<6}{'rows':>7}{'speakers':>9}{'augm.':>7}" + "".join(
        f"{label:>{width + 1}}" for label in labels
    )
    for fold in folds:
        lines += [f"fold {fold.name}", header]
        for split in ("train", "val", "test"):
            members = [by_id[i] for i in getattr(fold, split)]
            per_class = Counter(row["label"] for row in members)
            speakers = len({row["speaker"] for row in members if row["speaker"] is not None})
            augmented = sum(row["augmentation"] is not None for row in members)
            lines.append(
                f"  {split:<6}{len(members):>7}{speakers:>9}{augmented:>7}"
                + "".join(f"{per_class[label]:>{width + 1}}" for label in labels)
            )
    return "\n".join(lines)


def split_manifest(
    manifest: str | Path,
    protocol: str,
    out_dir: str | Path,
    *,
    aug_manifest: str | Path | None = None,
    **options,
) -> tuple[Path, list[Fold], str]:
    """Splits `manifest` (plus `aug_manifest` rows), checks every fold, writes the splits.

    `options` go to `make_folds`. Returns the splits.json path, the folds and
    a printable summary.
    """
    if protocol not in PROTOCOLS:
        raise InputError(f"unknown protocol '{protocol}'; choose one of {', '.join(PROTOCOLS)}")
    rows = read_manifest(manifest)
    known = {row["id"] for row in rows}
    if aug_manifest is not None:
        augmented = read_manifest(aug_manifest)
        # augment_text writes a whole balanced set: its originals are rows of
        # `manifest` already, and only its copies are new.
        originals = [row["id"] for row in augmented if row["augmentation"] is None and row["id"] not in known]
        if originals:
            raise InputError(
                f"--aug-manifest {aug_manifest}: rows {_some(originals, 5)} are neither augmented "
                f"copies nor rows of {manifest}; pass the manifest.jsonl written by "
                "`python -m bimer_tf.data.augment` or `python -m bimer_tf.data.augment_text`"
            )
        augmented = [row for row in augmented if row["augmentation"] is not None]
        clashes = known & {row["id"] for row in augmented}
        if clashes:
            raise InputError(
                f"--aug-manifest {aug_manifest}: ids also in {manifest}: "
                + _some(sorted(clashes), 5)
            )
        rows += augmented
    folds, notes, speaker_independent = make_folds(
        rows, protocol, manifest_path=manifest, **options
    )
    for fold in folds:
        check_no_leakage(rows, fold, speaker_independent)
    path = write_splits(rows, protocol, folds, out_dir)
    summary = summarize(rows, folds, protocol, speaker_independent)
    return path, folds, "\n".join([summary, *notes])


def _names(text: str | None) -> list[str] | None:
    return [n.strip() for n in text.split(",") if n.strip()] if text else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bimer_tf.data.split",
        description=(
            "Write train/val/test splits (splits.json and per-fold manifests) of a manifest. "
            "Split first, then augment the training manifest only."
        ),
    )
    parser.add_argument("--manifest", required=True, help="manifest (JSON Lines) to split")
    parser.add_argument("--protocol", required=True, help=f"one of: {', '.join(PROTOCOLS)}")
    parser.add_argument(
        "--out", required=True, help="output folder for splits.json and <fold>/*.jsonl"
    )
    parser.add_argument(
        "--aug-manifest",
        help="augmented rows (bimer_tf.data.augment_audio); a copy joins training only with its origin",
    )
    parser.add_argument("--seed", type=int, default=0, help="random draws of bimer-balanced")
    balanced = parser.add_argument_group("bimer-balanced")
    balanced.add_argument(
        "--val-per-class", type=int, default=120, help="original recordings (default %(default)s)"
    )
    balanced.add_argument(
        "--train-per-class",
        type=int,
        default=800,
        help="rows, filled with copies (default %(default)s)",
    )
    balanced.add_argument(
        "--test-per-class",
        type=int,
        default=120,
        help="held-out originals (default %(default)s; 0 = the paper's setting, no test set)",
    )
    balanced.add_argument(
        "--holdout-speakers",
        help="comma-separated speakers for val/test, excluded from training (speaker-independent)",
    )
    folds = parser.add_argument_group("speaker-folds")
    folds.add_argument("--folds", type=int, default=4, help="speaker groups (default %(default)s)")
    folds.add_argument(
        "--val-speakers",
        type=int,
        default=2,
        help="validation speakers per fold (default %(default)s)",
    )
    folds.add_argument(
        "--members",
        type=int,
        default=1,
        help="split each fold for an ensemble of this many members: member m trains on all but the "
        "m-th group of the fold's training speakers and validates on them too (default %(default)s: "
        "no ensemble)",
    )
    folds.add_argument(
        "--refit",
        action="store_true",
        help="folds <fold>-refit: each fold's test speakers moved into training, no test set (the "
        "recipe's final models, once the cross-validation has measured it)",
    )
    args = parser.parse_args(argv)

    path, _, summary = split_manifest(
        args.manifest,
        args.protocol,
        args.out,
        aug_manifest=args.aug_manifest,
        seed=args.seed,
        val_per_class=args.val_per_class,
        train_per_class=args.train_per_class,
        test_per_class=args.test_per_class,
        holdout_speakers=_names(args.holdout_speakers),
        folds=args.folds,
        val_speakers=args.val_speakers,
        members=args.members,
        refit=args.refit,
    )
    print(summary)
    print(path)
    return 0


if __name__ == "__main__":
    from bimer_tf.cli import run_main

    raise SystemExit(run_main(main))
