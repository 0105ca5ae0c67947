"""Split protocols, augmented rows following their origin, the leakage guard, CLI."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from bimer_tf.cli import run_main
from bimer_tf.data.manifest import Fold, make_row, read_manifest, read_splits, write_manifest
from bimer_tf.data.split import (
    LeakageError,
    balanced_fold,
    check_no_leakage,
    loso_folds,
    main,
    speaker_folds,
    speaker_groups,
    split_manifest,
)
from bimer_tf.errors import InputError

# Original recordings per class: neutral is the majority, as in IEMOCAP.
CLASS_SIZES = {"neutral": 30, "angry": 12, "sad": 20, "happy": 10}
COPIES = (
    ("speed", "-speed0.75"),
    ("speed", "-speed1.25"),
    ("rir", "-rir"),
    ("noise", "-noise"),
    ("pitch", "-pitch"),
)


def _originals(speakers=("s1", "s2", "s3", "s4")):
    rows = []
    for label, size in CLASS_SIZES.items():
        for index in range(size):
            speaker = speakers[index % len(speakers)]
            rows.append(
                make_row(f"{label}{index:02d}", label, text="t", speaker=speaker, corpus="test")
            )
    return rows


def _copies(rows):
    """Every augmentation of every row, as `bimer_tf.data.augment_audio` names them."""
    return [
        {**row, "id": row["id"] + suffix, "origin": row["id"], "augmentation": method}
        for row in rows
        for method, suffix in COPIES
    ]


def _by_id(rows):
    return {row["id"]: row for row in rows}


def _labels(rows, ids):
    by_id = _by_id(rows)
    return Counter(by_id[i]["label"] for i in ids)


# === bimer-balanced ===


def test_balanced_sizes_fill_and_undersampling():
    originals = _originals()
    rows = originals + _copies(originals)
    fold, notes = balanced_fold(rows, val_per_class=3, test_per_class=2, train_per_class=15, seed=1)
    by_id = _by_id(rows)
    assert _labels(rows, fold.val) == {label: 3 for label in CLASS_SIZES}
    assert _labels(rows, fold.test) == {label: 2 for label in CLASS_SIZES}
    assert _labels(rows, fold.train) == {label: 15 for label in CLASS_SIZES}
    assert all(by_id[i]["augmentation"] is None for i in fold.val + fold.test)
    train_originals = {i for i in fold.train if by_id[i]["augmentation"] is None}
    per_method = {label: Counter() for label in CLASS_SIZES}
    for i in fold.train:
        row = by_id[i]
        if row["augmentation"] is not None:
            # Copies of this class's own training originals only.
            assert (
                row["origin"] in train_originals and by_id[row["origin"]]["label"] == row["label"]
            )
            per_method[row["label"]][row["augmentation"]] += 1
    # neutral: 25 originals left, under-sampled to 15, no copies.
    assert per_method["neutral"] == Counter()
    # angry: 7 originals + 8 copies, 2 per method; happy: 5 + 10 -> 3, 3, 2, 2.
    assert per_method["angry"] == {"speed": 2, "rir": 2, "noise": 2, "pitch": 2}
    assert per_method["happy"] == {"speed": 3, "rir": 3, "noise": 2, "pitch": 2}
    assert (
        sum(by_id[i]["augmentation"] is None for i in fold.train if by_id[i]["label"] == "sad")
        == 15
    )
    assert any("under-sampled" in note for note in notes)
    check_no_leakage(rows, fold, speaker_independent=False)


def test_balanced_is_seeded_and_stable_when_copies_are_added():
    originals = _originals()
    options = dict(val_per_class=3, test_per_class=2, train_per_class=15, seed=5)
    plain, notes = balanced_fold(originals, **options)
    assert any("no augmented copies" in note for note in notes)
    filled, _ = balanced_fold(originals + _copies(originals), **options)
    # Split, augment the training originals, split again: same evaluation sets.
    assert (filled.val, filled.test) == (plain.val, plain.test)
    assert set(plain.train) <= set(filled.train)
    assert balanced_fold(originals, **options)[0] == plain
    assert balanced_fold(originals, **{**options, "seed": 6})[0].val != plain.val


def test_balanced_without_test_set_and_with_holdout_speakers():
    originals = _originals()
    fold, _ = balanced_fold(originals, val_per_class=2, test_per_class=0, train_per_class=5)
    assert fold.test == [] and len(fold.val) == 8
    rows = originals + _copies(originals)
    fold, _ = balanced_fold(
        rows, val_per_class=1, test_per_class=1, train_per_class=10, holdout_speakers=["s4"]
    )
    by_id = _by_id(rows)
    assert {by_id[i]["speaker"] for i in fold.val + fold.test} == {"s4"}
    assert "s4" not in {by_id[i]["speaker"] for i in fold.train}
    check_no_leakage(rows, fold, speaker_independent=True)


def test_balanced_bad_input():
    originals = _originals()
    with pytest.raises(InputError, match="class 'happy' has 10 original recordings.*need 12"):
        balanced_fold(originals, val_per_class=6, test_per_class=6)
    only_rir = [row for row in _copies(originals) if row["augmentation"] == "rir"]
    with pytest.raises(InputError, match="needs .* augmented copies"):
        balanced_fold(originals + only_rir, val_per_class=3, test_per_class=2, train_per_class=15)
    with pytest.raises(InputError, match="no original rows of speakers"):
        balanced_fold(originals, holdout_speakers=["nobody"])


# === loso ===


def _iemocap_rows():
    rows = []
    for session in range(1, 6):
        for gender in "FM":
            speaker = f"Ses{session:02d}{gender}"
            for index, label in enumerate(["neutral", "angry", "sad", "happy"] * 2):
                rows.append(
                    make_row(
                        f"{speaker}_{index}",
                        label,
                        speaker=speaker,
                        session=session,
                        corpus="iemocap",
                    )
                )
    return rows


def test_loso_folds():
    rows = _iemocap_rows()
    folds = loso_folds(rows)
    by_id = _by_id(rows)
    assert [f.name for f in folds] == [f"session{k}" for k in range(1, 6)]
    val_speakers = []
    for k, fold in enumerate(folds, 1):
        assert {by_id[i]["session"] for i in fold.test} == {k}
        (val_speaker,) = {by_id[i]["speaker"] for i in fold.val}
        assert val_speaker.startswith(f"Ses{k % 5 + 1:02d}")
        val_speakers.append(val_speaker)
        assert len(fold.train) + len(fold.val) + len(fold.test) == len(rows)
        assert len({by_id[i]["speaker"] for i in fold.train}) == 7
        check_no_leakage(rows, fold, speaker_independent=True)
    assert [s[-1] for s in val_speakers] == ["F", "M", "F", "M", "F"]


def test_loso_needs_sessions():
    rows = _iemocap_rows()
    rows[3]["session"] = None
    with pytest.raises(InputError, match="needs a `session` on every row.*Ses01F_3"):
        loso_folds(rows)


# === speaker-folds ===


def _actor_rows():
    return [
        make_row(f"a{actor:02d}-{label}", label, speaker=f"Actor_{actor}", corpus="ravdess")
        for actor in range(1, 25)
        for label in ("neutral", "angry")
    ]


def test_speaker_groups_spread_alternating_ids():
    groups = speaker_groups([f"Actor_{a}" for a in range(1, 25)], 4)
    assert [len(g) for g in groups] == [6, 6, 6, 6]
    for group in groups:  # RAVDESS: odd actors male, even female
        assert sum(int(s.split("_")[1]) % 2 for s in group) == 3
    assert groups[0][:2] == ["Actor_1", "Actor_8"]  # natural order, not Actor_10 after Actor_1


def test_speaker_folds_disjoint_and_augmented_rows_follow_origin():
    originals = _actor_rows()
    rows = originals + _copies(originals[:10])
    folds = speaker_folds(rows, folds=4, val_speakers=2)
    by_id = _by_id(rows)
    tests = [set(f.test) for f in folds]
    assert set().union(*tests) == {r["id"] for r in originals} and sum(map(len, tests)) == len(
        originals
    )
    for fold in folds:
        speakers = {
            split: {by_id[i]["speaker"] for i in getattr(fold, split)}
            for split in ("train", "val", "test")
        }
        assert (
            len(speakers["val"]) == 2
            and len(speakers["test"]) == 6
            and len(speakers["train"]) == 16
        )
        assert not speakers["train"] & (speakers["val"] | speakers["test"])
        check_no_leakage(rows, fold, speaker_independent=True)


def test_speaker_folds_for_an_ensemble_inside_each_fold():
    """`members=4`: each fold's 16 training actors dealt into 4 groups; member m
    trains on 12 and validates on the fold's 2 validation actors plus its 4 left
    out; the test actors are the fold's; copies follow their origin."""
    originals = _actor_rows()
    rows = originals + _copies(originals)
    plain = {fold.name: fold for fold in speaker_folds(rows, folds=4, val_speakers=2)}
    folds = speaker_folds(rows, folds=4, val_speakers=2, members=4)
    assert [f.name for f in folds] == [f"fold{k}-member{m}" for k in range(1, 5) for m in range(1, 5)]
    by_id = _by_id(rows)

    def speakers(ids):
        return {by_id[i]["speaker"] for i in ids}

    for k in range(1, 5):
        fold, members = plain[f"fold{k}"], [f for f in folds if f.name.startswith(f"fold{k}-")]
        left_out = []
        for member in members:
            assert member.test == fold.test
            assert speakers(fold.val) < speakers(member.val) and len(speakers(member.val)) == 6
            assert len(speakers(member.train)) == 12 and speakers(member.train) < speakers(fold.train)
            assert set(member.train) < set(fold.train)  # the copies of its own training rows only
            left_out.append(speakers(member.val) - speakers(fold.val))
            check_no_leakage(rows, member, speaker_independent=True)
        # every training actor of the fold is left out by exactly one member
        assert sorted(s for group in left_out for s in group) == sorted(speakers(fold.train))
    with pytest.raises(InputError, match="--members 16: must be between 2 and one less"):
        speaker_folds(rows, folds=4, val_speakers=2, members=16)


def test_refit_folds_train_on_every_actor_but_the_validation_ones():
    """`refit=True`: fold k's test actors join its training set, its validation
    actors stay, there is no test set."""
    originals = _actor_rows()
    rows = originals + _copies(originals)
    plain = {fold.name: fold for fold in speaker_folds(rows, folds=4, val_speakers=2)}
    refits = speaker_folds(rows, folds=4, val_speakers=2, refit=True)
    assert [f.name for f in refits] == [f"fold{k}-refit" for k in range(1, 5)]
    by_id = _by_id(rows)
    for k, refit in enumerate(refits, start=1):
        fold = plain[f"fold{k}"]
        assert refit.test == [] and refit.val == fold.val
        assert sorted(refit.train) == sorted(fold.train + fold.test)
        assert len({by_id[i]["speaker"] for i in refit.train}) == 22
        check_no_leakage(rows, refit, speaker_independent=True)
    with pytest.raises(InputError, match="--refit and --members do not go together"):
        speaker_folds(rows, folds=4, val_speakers=2, members=4, refit=True)


def test_split_manifest_adds_copies_of_training_rows_only(tmp_path):
    originals = _actor_rows()
    write_manifest(originals, tmp_path / "manifest.jsonl")
    write_manifest(_copies(originals[:10]), tmp_path / "aug.jsonl")
    _, folds, summary = split_manifest(
        tmp_path / "manifest.jsonl",
        "speaker-folds",
        tmp_path / "splits",
        aug_manifest=tmp_path / "aug.jsonl",
    )
    rows = read_manifest(tmp_path / "manifest.jsonl") + read_manifest(tmp_path / "aug.jsonl")
    by_id = _by_id(rows)
    for fold in folds:
        in_train = set(fold.train)
        copies = [i for i in fold.train if by_id[i]["augmentation"] is not None]
        assert all(by_id[i]["origin"] in in_train for i in copies)
        expected = sum(1 for r in rows if r["augmentation"] is not None and r["origin"] in in_train)
        assert len(copies) == expected
        assert (
            f"fold {fold.name}: {expected} augmented rows added to train, {50 - expected} dropped"
            in summary
        )
    assert sum(len(f.train) for f in folds) > sum(len(f.train) for f in speaker_folds(originals))


def test_aug_manifest_may_hold_the_originals_it_balanced(tmp_path):
    """augment_text writes originals + copies; only the copies are new rows."""
    from bimer_tf.config import ExperimentConfig
    from bimer_tf.training.run_data import resolve_data

    originals = _actor_rows()
    write_manifest(originals, tmp_path / "manifest.jsonl")
    write_manifest(originals[:10] + _copies(originals[:10]), tmp_path / "balanced.jsonl")
    splits, folds, _ = split_manifest(
        tmp_path / "manifest.jsonl", "speaker-folds", tmp_path / "splits",
        aug_manifest=tmp_path / "balanced.jsonl",
    )
    fold = next(f for f in folds if any("-speed" in i for i in f.train))
    # Training reads the copies from the fold's own manifest beside splits.json.
    config = ExperimentConfig()
    config.data.manifest = str(tmp_path / "manifest.jsonl")
    config.data.splits = str(splits)
    config.data.fold = fold.name
    train = resolve_data(config).splits["train"]
    assert [row["id"] for row in train] == fold.train
    assert any(row["augmentation"] is not None for row in train)
    stranger = make_row("stranger", "sad", text="t", speaker="x", corpus="test")
    write_manifest([stranger], tmp_path / "stranger.jsonl")
    with pytest.raises(InputError, match="neither augmented copies nor rows of"):
        split_manifest(tmp_path / "manifest.jsonl", "speaker-folds", tmp_path / "s2",
                       aug_manifest=tmp_path / "stranger.jsonl")


# === official ===


def test_official_split(tmp_path):
    rows = [make_row(f"u{i}", "joy", text="t", corpus="tweeteval") for i in range(6)]
    write_manifest(rows, tmp_path / "manifest.jsonl")
    with pytest.raises(InputError, match="official_split.json not found"):
        split_manifest(tmp_path / "manifest.jsonl", "official", tmp_path / "out")
    (tmp_path / "official_split.json").write_text(
        json.dumps({"train": ["u0", "u1", "u2"], "val": ["u3"], "test": ["u4", "u9"]})
    )
    with pytest.raises(InputError, match="not in the manifest.*u9"):
        split_manifest(tmp_path / "manifest.jsonl", "official", tmp_path / "out")
    (tmp_path / "official_split.json").write_text(
        json.dumps({"train": ["u0", "u1", "u2"], "val": ["u3"], "test": ["u4"]})
    )
    path, folds, summary = split_manifest(tmp_path / "manifest.jsonl", "official", tmp_path / "out")
    assert folds == [Fold("official", ["u0", "u1", "u2"], ["u3"], ["u4"])]
    assert "1 original rows are in no official split" in summary
    assert read_splits(path)[0] == "official"
    assert [r["id"] for r in read_manifest(tmp_path / "out" / "official" / "train.jsonl")] == [
        "u0",
        "u1",
        "u2",
    ]


# === leakage guard ===


def test_leakage_guard_accepts_clean_folds_and_names_leaks():
    rows = [make_row(f"r{i}", "sad", speaker=f"s{i % 3}", corpus="test") for i in range(6)]
    rows.append({**rows[4], "id": "r4-rir", "origin": "r4", "augmentation": "rir"})
    check_no_leakage(rows, Fold("ok", ["r0", "r3"], ["r1", "r4"], ["r2"]), speaker_independent=True)
    with pytest.raises(LeakageError, match="val/test ids in train: r1"):
        check_no_leakage(rows, Fold("f", ["r0", "r1"], ["r1"], ["r2"]), speaker_independent=False)
    with pytest.raises(LeakageError, match=r"augmented copies\): r4-rir"):
        check_no_leakage(
            rows, Fold("f", ["r0", "r4-rir"], ["r1"], ["r4"]), speaker_independent=False
        )
    with pytest.raises(
        LeakageError, match=r"augmented copies\): r4"
    ):  # the original of an evaluation copy
        check_no_leakage(rows, Fold("f", ["r4"], ["r4-rir"], []), speaker_independent=False)
    with pytest.raises(LeakageError, match="ids in both val and test: r2"):
        check_no_leakage(rows, Fold("f", ["r0"], ["r2"], ["r2"]), speaker_independent=False)
    # r0 and r3 share speaker s0: fine for a random split, a leak for a speaker-independent one.
    mixed = Fold("mixed", ["r0", "r1"], ["r3"], [])
    check_no_leakage(rows, mixed, speaker_independent=False)
    with pytest.raises(LeakageError, match=r"fold mixed .*val/test speakers s0 also in train: r0"):
        check_no_leakage(rows, mixed, speaker_independent=True)


# === command line ===


def test_cli_writes_splits_and_summary(tmp_path, capsys):
    write_manifest(_actor_rows(), tmp_path / "manifest.jsonl")
    args = [
        "--manifest",
        str(tmp_path / "manifest.jsonl"),
        "--protocol",
        "speaker-folds",
        "--out",
        str(tmp_path / "s"),
    ]
    assert run_main(main, args + ["--folds", "3", "--val-speakers", "1"]) == 0
    out = capsys.readouterr().out
    assert "protocol speaker-folds (speaker-independent), 3 fold(s)" in out and "fold fold3" in out
    protocol, folds = read_splits(tmp_path / "s" / "splits.json")
    assert protocol == "speaker-folds" and [f.name for f in folds] == ["fold1", "fold2", "fold3"]
    assert len(read_manifest(tmp_path / "s" / "fold2" / "test.jsonl")) == 16
    assert run_main(main, args + ["--out", str(tmp_path / "m"), "--members", "3"]) == 0
    _, folds = read_splits(tmp_path / "m" / "splits.json")
    assert [f.name for f in folds][:4] == ["fold1-member1", "fold1-member2", "fold1-member3", "fold2-member1"]


def test_cli_exits_2_on_bad_input(tmp_path, capsys):
    write_manifest(_actor_rows(), tmp_path / "manifest.jsonl")
    base = ["--manifest", str(tmp_path / "manifest.jsonl"), "--out", str(tmp_path / "s")]
    cases = {
        "unknown protocol 'random'": ["--protocol", "random"],
        "needs a `session`": ["--protocol", "loso"],
        "original recordings": ["--protocol", "bimer-balanced", "--val-per-class", "20"],
        "--val-speakers 9": ["--protocol", "speaker-folds", "--val-speakers", "9"],
        "--members is an option of --protocol speaker-folds": ["--protocol", "loso", "--members", "2"],
        "official_split.json not found": ["--protocol", "official"],
    }
    for message, extra in cases.items():
        assert run_main(main, base + extra) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
