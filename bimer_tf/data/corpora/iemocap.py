"""IEMOCAP, read from the `IEMOCAP_full_release` folder as distributed.

Files read::

    Session{1..5}/dialog/EmoEvaluation/<dialog>.txt    consensus label per utterance
    Session{1..5}/dialog/transcriptions/<dialog>.txt   "<utterance> [start-end]: text"
    Session{1..5}/sentences/wav/<dialog>/<utterance>.wav

A label line looks like `[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5, 2.5, 2.5]`
and is followed by the annotators' lines (`C-E2: ...`, `A-F1: ...`), which
are not needed. Transcripts also hold lines that are not utterances
(`F: [LAUGHTER]`) and ids with `XX` in place of a number; both are ignored.

The four classes of BiMER and most IEMOCAP work are neutral (neu), angry
(ang), sad (sad) and happy (hap); `merge_excited` relabels excited (exc) as
happy. Every other label is counted and left out. The speaker is the session
plus the gender letter of the utterance suffix: in `Ses01F_impro01_M000` the
speaker is "Ses01M" (the dialog name's letter says who wore the motion-capture
markers, not who speaks). The session is the session number (int).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

from bimer_tf.data.corpora import (
    LABEL_NOT_IN_CLASSES,
    MALFORMED_LINE,
    NO_TEXT,
    UNSAFE_PATH,
    CorpusListing,
    Utterance,
    path_inside,
    read_lines,
)
from bimer_tf.errors import InputError

NAME = "iemocap"
HAS_AUDIO = True
ROOT_HINT = "the IEMOCAP_full_release folder (Session1..Session5/dialog/EmoEvaluation/*.txt)"
CLASSES = ("neutral", "angry", "sad", "happy")
SUBSETS = ("improvised", "scripted", "all")
LABEL_NAMES = {
    "neu": "neutral",
    "ang": "angry",
    "sad": "sad",
    "hap": "happy",
    "exc": "excited",
    "fru": "frustrated",
    "sur": "surprised",
    "fea": "fearful",
    "dis": "disgusted",
    "oth": "other",
    "xxx": "no_agreement",
}
# Utterances per label in the full release, by dialog type. A complete,
# unmodified copy must reproduce these (improvised: 2280 in the four classes,
# 2943 with excited merged; all dialogs with excited merged: 5531).
FULL_RELEASE_COUNTS = {
    "improvised": {"neutral": 1099, "angry": 289, "sad": 608, "happy": 284, "excited": 663},
    "all": {"neutral": 1708, "angry": 1103, "sad": 1084, "happy": 595, "excited": 1041},
}
SESSIONS = (1, 2, 3, 4, 5)

LABEL_LINE = re.compile(
    r"\[\s*(?P<start>\d+(?:\.\d+)?)\s*-\s*(?P<end>\d+(?:\.\d+)?)\s*\]\s+"
    r"(?P<id>\S+)\s+(?P<code>[A-Za-z]+)(?:\s+\[[^\]]*\])?\s*"
)
ANNOTATOR_LINE = re.compile(r"[A-Z]-[A-Z]+\d*:")
TRANSCRIPT_LINE = re.compile(r"(?P<id>\S+)\s+\[[\d.]+-[\d.]+\]:\s*(?P<text>.*)")
SESSION_FOLDER = re.compile(r"Session(\d+)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--subset",
        choices=SUBSETS,
        default="improvised",
        help="dialogs to read: improvised (name contains 'impro', BiMER's choice), "
        "scripted or all (default: %(default)s)",
    )
    parser.add_argument(
        "--merge-excited",
        action="store_true",
        help="keep excited (exc) utterances, labelled happy",
    )


def expected_counts(subset: str, merge_excited: bool) -> dict[str, int]:
    """Per-class counts a full release gives for these options."""
    if subset == "scripted":
        improvised, all_dialogs = FULL_RELEASE_COUNTS["improvised"], FULL_RELEASE_COUNTS["all"]
        counts = {label: all_dialogs[label] - improvised[label] for label in all_dialogs}
    else:
        counts = dict(FULL_RELEASE_COUNTS[subset])
    excited = counts.pop("excited")
    if merge_excited:
        counts["happy"] += excited
    return counts


def read_iemocap(
    root: str | Path, *, subset: str = "improvised", merge_excited: bool = False
) -> CorpusListing:
    """Lists the utterances of `subset` with their labels, transcripts and audio paths."""
    if subset not in SUBSETS:
        raise InputError(f"unknown IEMOCAP subset '{subset}'; choose one of {', '.join(SUBSETS)}")
    root = Path(root)
    if (root / "IEMOCAP_full_release").is_dir():
        root = root / "IEMOCAP_full_release"
    sessions = _session_folders(root)
    listing = CorpusListing(NAME, root, {"subset": subset, "merge_excited": merge_excited})
    label_counts = Counter()  # over every well-formed label line, for the full-release check
    ignored_lines = []
    other_dialogs = 0
    for number, session_dir in sessions.items():
        # Only the top-level files: Categorical/, Attribute/ and Self-evaluation/
        # hold the individual annotators' ratings. Names starting with "." are
        # macOS resource forks found in some copies.
        label_files = sorted(
            p for p in (session_dir / "dialog" / "EmoEvaluation").glob("*.txt")
            if not p.name.startswith(".")
        )
        for label_file in label_files:
            dialog = label_file.stem
            if not _in_subset(dialog, subset):
                other_dialogs += 1
                continue
            transcripts = _read_transcripts(
                session_dir / "dialog" / "transcriptions" / f"{dialog}.txt", ignored_lines
            )
            for utterance_id, code, gender in _label_entries(label_file, number, listing):
                label = LABEL_NAMES.get(code, code)
                label_counts[label] += 1
                if merge_excited and label == "excited":
                    label = "happy"
                known = dict(label=label, speaker=utterance_id[:5] + gender, session=number)
                audio = path_inside(
                    root, session_dir.name, "sentences", "wav", dialog, f"{utterance_id}.wav"
                )
                if label not in CLASSES:
                    hint = " (add --merge-excited to keep it as happy)" if label == "excited" else ""
                    detail = f"'{code}' ({label}) is not one of {', '.join(CLASSES)}{hint}"
                    listing.skip(utterance_id, LABEL_NOT_IN_CLASSES, detail, **known)
                elif not transcripts.get(utterance_id):
                    state = "has no line for it" if transcripts else "is missing or empty"
                    detail = f"{session_dir.name}/dialog/transcriptions/{dialog}.txt {state}"
                    listing.skip(utterance_id, NO_TEXT, detail, **known)
                elif audio is None:  # the id pattern rules this out; the joined path is checked anyway
                    detail = "the audio path leaves the corpus root"
                    listing.skip(utterance_id, UNSAFE_PATH, detail, **known)
                else:
                    listing.utterances.append(
                        Utterance(
                            id=utterance_id, text=transcripts[utterance_id], audio=audio,
                            audio_copy=f"{dialog}/{utterance_id}.wav", **known,
                        )
                    )
    if other_dialogs:
        listing.notes.append(f"subset {subset}: {other_dialogs} other dialogs not read")
    if ignored_lines:
        examples = "; ".join(repr(line[:40]) for line in ignored_lines[:3])
        listing.notes.append(
            f"{len(ignored_lines)} transcript lines are not utterances and were ignored "
            f"(e.g. {examples})"
        )
    _check_full_release_counts(listing, sessions, label_counts, subset, merge_excited)
    return listing


def _label_entries(label_file: Path, session: int, listing: CorpusListing):
    """(utterance id, label code, gender letter) per label line; bad lines are reported."""
    dialog = label_file.stem
    own_id = re.compile(rf"{re.escape(dialog)}_(?P<gender>[MF])[0-9A-Z]+")
    session_name = label_file.parent.parent.parent.name
    for line_number, line in enumerate(read_lines(label_file), 1):
        where = f"{session_name}/dialog/EmoEvaluation/{label_file.name}:{line_number}"
        line = line.strip()
        if not line or line.startswith("%") or ANNOTATOR_LINE.match(line):
            continue
        match = LABEL_LINE.fullmatch(line)
        if match is None:
            listing.skip(where, MALFORMED_LINE, f"not a label line: {line[:80]!r}", session=session)
            continue
        utterance_id, code = match["id"], match["code"].lower()
        own = own_id.fullmatch(utterance_id)
        if own is None:
            # The id becomes a file name; one such as ../../etc/passwd must not.
            unsafe = any(mark in utterance_id for mark in ("/", "\\", ".."))
            problem = "would leave the corpus root" if unsafe else f"does not belong to dialog {dialog}"
            listing.skip(
                utterance_id, UNSAFE_PATH if unsafe else MALFORMED_LINE,
                f"{where}: utterance id {utterance_id!r} {problem}",
                label=LABEL_NAMES.get(code, code), session=session,
            )
            continue
        yield utterance_id, code, own["gender"]


def _session_folders(root: Path) -> dict[int, Path]:
    if not root.is_dir():
        raise InputError(f"IEMOCAP root not found: {root}; expected {ROOT_HINT}")
    sessions = {}
    for folder in sorted(root.iterdir()):
        match = SESSION_FOLDER.fullmatch(folder.name)
        if match and (folder / "dialog" / "EmoEvaluation").is_dir():
            sessions[int(match[1])] = folder
    if not sessions:
        raise InputError(f"{root} does not look like IEMOCAP: expected {ROOT_HINT}")
    return sessions


def _in_subset(dialog: str, subset: str) -> bool:
    improvised = "impro" in dialog
    return subset == "all" or improvised == (subset == "improvised")


def _read_transcripts(path: Path, ignored: list[str]) -> dict[str, str]:
    """Utterance id -> transcript; lines that are not utterances go to `ignored`."""
    if not path.is_file():
        return {}
    transcripts = {}
    for line in read_lines(path):
        line = line.strip()
        if not line:
            continue
        match = TRANSCRIPT_LINE.fullmatch(line)
        if match is None:
            ignored.append(line)
            continue
        transcripts.setdefault(match["id"], match["text"].strip())
    return transcripts


def _check_full_release_counts(listing, sessions, label_counts, subset, merge_excited) -> None:
    if set(sessions) != set(SESSIONS):
        present = ", ".join(str(n) for n in sessions)
        listing.notes.append(f"sessions present: {present}; not the full release, count check skipped")
        return
    found = {label: label_counts[label] for label in CLASSES}
    if merge_excited:
        found["happy"] += label_counts["excited"]
    expected = expected_counts(subset, merge_excited)
    if found != expected:
        listing.warnings.append(
            f"all five sessions are present, but the label files give {found} for subset {subset}"
            f"{' with excited merged' if merge_excited else ''}; the full release gives {expected}. "
            "Check that the copy is complete and unmodified."
        )
