"""Emo-DB (Berlin Database of Emotional Speech): German acted speech, labelled by its file names.

A file name `SSTTTEV.wav` holds the speaker (SS, two digits), the sentence
(TTT, e.g. `a01`), the emotion (E, one letter of the German name) and the
version (V, a lowercase letter), e.g. `03a01Wa.wav` is speaker 03 saying
sentence a01 ("Der Lappen liegt auf dem Eisschrank.") in anger, version a.
The file name is the source of truth for the label, the speaker and the
sentence; files are found anywhere under the root (the distribution's
`wav/` folder, or a flat folder).

Labels are English and, where RAVDESS has the same emotion, spelled as the
RAVDESS reader spells it, so that a model trained on RAVDESS is scored on
Emo-DB without any `--label-map`:

    N neutral   W angry   F happy   T sad   A fearful   E disgust   L bored

All seven are kept. The 4-class subset of the other corpora (neutral,
angry, happy, sad) is what `python -m bimer_tf.evaluate` keeps for a
4-class model: rows labelled fearful, disgust or bored are counted as
"unmapped" and left out, never scored. There is therefore no `--classes`
option; a 4-class Emo-DB training run sets `data.labels` (rows with other
labels are skipped and counted).

The speaker is `emodb-SS` (so that ids never look like bare numbers and
cannot collide with another corpus's speakers when manifests are pooled);
there are no sessions. The text is the German sentence of the sentence code,
from the table below; the ten sentences are lexically neutral and the same
under every emotion, so the text carries no emotion.

When the root holds `metadata.csv` (the copy in `../shared/corpora/emodb`
has one), it is only cross-checked: an emotion code or sentence that
disagrees with the file name is a warning, and its `cut_at_2s` column is
counted in a note (that copy keeps only the first 2.0 s of 410 of the 535
recordings, so its figures are not comparable with whole-recording ones).
"""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path

from bimer_tf.data.corpora import MALFORMED_NAME, CorpusListing, Utterance, read_lines
from bimer_tf.errors import InputError

NAME = "emodb"
HAS_AUDIO = True
ROOT_HINT = "an Emo-DB folder with wav/SSTTTEV.wav files (e.g. wav/03a01Wa.wav)"
# Official emotion codes (German initials) -> labels of this toolkit.
EMOTIONS = {
    "N": "neutral",
    "W": "angry",  # Wut
    "F": "happy",  # Freude
    "T": "sad",  # Trauer
    "A": "fearful",  # Angst
    "E": "disgust",  # Ekel
    "L": "bored",  # Langeweile
}
FOUR_CLASSES = ("neutral", "angry", "happy", "sad")
SPEAKERS = ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16")
SENTENCES = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
FULL_CORPUS_FILES = 535
METADATA_FILE = "metadata.csv"
# Loose on purpose: a name of the right shape with an unknown code is reported
# with that code, not as "not Emo-DB-coded".
CODED_NAME = re.compile(r"(\d\d)([a-z]\d\d)([A-Za-z])([a-z])")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Emo-DB has no options: all seven emotions are kept (see the module docstring)."""


def read_emodb(root: str | Path) -> CorpusListing:
    """Lists the WAV files under `root` with labels decoded from their names."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"Emo-DB root not found: {root}; expected {ROOT_HINT}")
    files = sorted(root.rglob("*.wav"))
    if not any(CODED_NAME.fullmatch(p.stem) for p in files):
        raise InputError(f"{root} does not look like Emo-DB: no coded WAV files; expected {ROOT_HINT}")
    listing = CorpusListing(NAME, root, {})
    metadata = _read_metadata(root / METADATA_FILE, listing)
    disagreements, cut = [], 0
    for path in files:
        match = CODED_NAME.fullmatch(path.stem)
        if match is None:
            detail = f"{path.name}: not an Emo-DB name SSTTTEV.wav (e.g. 03a01Wa.wav)"
            listing.skip(str(path.relative_to(root)), MALFORMED_NAME, detail)
            continue
        speaker_code, sentence, emotion, _ = match.groups()
        item_id = f"{NAME}-{path.stem}"
        speaker = f"{NAME}-{speaker_code}"
        label = EMOTIONS.get(emotion)
        known = dict(label=label, speaker=speaker, session=None)
        problems = []
        if label is None:
            problems.append(f"unknown emotion code {emotion} (one of {''.join(EMOTIONS)})")
        if speaker_code not in SPEAKERS:
            problems.append(f"unknown speaker {speaker_code} (one of {', '.join(SPEAKERS)})")
        if sentence not in SENTENCES:
            problems.append(f"unknown sentence code {sentence} (one of {', '.join(SENTENCES)})")
        if problems:
            listing.skip(item_id, MALFORMED_NAME, f"{path.name}: " + "; ".join(problems), **known)
            continue
        listing.utterances.append(
            Utterance(
                id=item_id, text=SENTENCES[sentence], audio=path,
                audio_copy=f"{speaker}/{path.name}", **known,
            )
        )
        row = metadata.get(path.name)
        if row is not None:
            text = row.get("text", SENTENCES[sentence])
            if row.get("emotion_code") != emotion or text != SENTENCES[sentence]:
                disagreements.append(path.name)
            cut += row.get("cut_at_2s") == "yes"
    if disagreements:
        shown = ", ".join(disagreements[:5])
        if len(disagreements) > 5:
            shown += f" (+{len(disagreements) - 5} more)"
        listing.warnings.append(
            f"{METADATA_FILE} disagrees with the file name (emotion code or sentence) for "
            f"{len(disagreements)} files: {shown}; labels and text follow the file names"
        )
    if cut:
        listing.notes.append(
            f"{cut} of the {len(listing.utterances)} validly named recordings hold only their first 2.0 s "
            f"({METADATA_FILE} column cut_at_2s): figures are not comparable with whole-recording ones"
        )
    speakers = {u.speaker for u in listing.utterances}
    seen = len(listing.utterances) + len(listing.skipped)
    if len(speakers) == len(SPEAKERS) and seen != FULL_CORPUS_FILES:
        listing.warnings.append(
            f"all {len(SPEAKERS)} speakers present but {seen} WAV files seen; "
            f"the full Emo-DB has {FULL_CORPUS_FILES}"
        )
    return listing


def _read_metadata(path: Path, listing: CorpusListing) -> dict[str, dict]:
    """file name -> row of the copy's metadata.csv; {} without one or with one unreadable."""
    if not path.is_file():
        return {}
    lines = read_lines(path)
    try:
        rows = list(csv.DictReader(lines, strict=True))
    except csv.Error as error:
        listing.warnings.append(f"{path.name} not read ({error}); labels come from the file names anyway")
        return {}
    if not rows or "file" not in rows[0]:
        listing.warnings.append(f"{path.name} has no `file` column; not read")
        return {}
    return {Path(row["file"] or "").name: row for row in rows}
