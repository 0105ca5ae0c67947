"""RAVDESS speech (audio-only), labelled by its file names.

A file name has seven two-digit fields,
`modality-channel-emotion-intensity-statement-repetition-actor`, e.g.
`03-01-05-02-01-01-14.wav` is audio-only (03) speech (01), angry (05), strong
(02), statement 01 ("Kids are talking by the door"), first take, actor 14.
Files are found anywhere under the root, so both the original
`Audio_Speech_Actors_01-24/Actor_XX/` and the 16 kHz copy's
`wav/Actor_XX/` layouts work.

`classes=4` keeps neutral, happy, sad and angry; `classes=8` keeps all eight
emotions. The speaker is "Actor_XX" (the name of the actor's folder in the
distribution, so speaker ids never look like bare numbers); there are no
sessions. The text is the statement, which carries no emotion: the same two
sentences occur under every label.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from bimer_tf.data.corpora import (
    LABEL_NOT_IN_CLASSES,
    MALFORMED_NAME,
    NOT_SPEECH,
    CorpusListing,
    Utterance,
)
from bimer_tf.errors import InputError

NAME = "ravdess"
HAS_AUDIO = True
ROOT_HINT = "a RAVDESS folder with Actor_XX/03-01-EE-II-SS-RR-AA.wav files"
EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
CLASS_SETS = {4: ("neutral", "happy", "sad", "angry"), 8: tuple(EMOTIONS.values())}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
AUDIO_ONLY, SPEECH = "03", "01"
CODED_NAME = re.compile(r"(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--classes",
        type=int,
        choices=sorted(CLASS_SETS),
        default=4,
        help="4: neutral, happy, sad, angry; 8: all emotions (default: %(default)s)",
    )
    parser.add_argument(
        "--actors",
        type=parse_actors,
        default=None,
        metavar="LIST",
        help="read only these actors, e.g. '1-6,9' (default: all)",
    )


def parse_actors(value: str) -> list[int]:
    """'1-3,7' -> [1, 2, 3, 7]."""
    actors = set()
    try:
        for part in value.split(","):
            low, _, high = part.strip().partition("-")
            actors.update(range(int(low), int(high or low) + 1))
    except ValueError:
        message = f"expected actor numbers such as '1-6,9', got {value!r}"
        raise argparse.ArgumentTypeError(message) from None
    return sorted(actors)


def read_ravdess(
    root: str | Path, *, classes: int = 4, actors: list[int] | None = None
) -> CorpusListing:
    """Lists the coded WAV files under `root` with labels decoded from their names."""
    if classes not in CLASS_SETS:
        raise InputError(f"RAVDESS classes must be one of {sorted(CLASS_SETS)}, got {classes}")
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"RAVDESS root not found: {root}; expected {ROOT_HINT}")
    keep = CLASS_SETS[classes]
    listing = CorpusListing(NAME, root, {"classes": classes, "actors": actors})
    files = sorted(root.rglob("*.wav"))
    coded = [p for p in files if CODED_NAME.fullmatch(p.stem)]
    if not coded:
        raise InputError(f"{root} does not look like RAVDESS: no coded WAV files; expected {ROOT_HINT}")
    for path in files:
        match = CODED_NAME.fullmatch(path.stem)
        if match is None:
            # A stray file inside an actor folder is reported; others are not RAVDESS files at all.
            if path.parent.name.startswith("Actor_"):
                detail = "the file name is not RAVDESS-coded"
                listing.skip(str(path.relative_to(root)), MALFORMED_NAME, detail)
            continue
        modality, channel, emotion, _, statement, _, actor = match.groups()
        if actors is not None and int(actor) not in actors:
            continue
        item_id = f"ravdess-{path.stem}"
        speaker = f"Actor_{actor}"
        label = EMOTIONS.get(emotion)
        known = dict(label=label, speaker=speaker, session=None)
        if label is None or statement not in STATEMENTS:
            detail = f"{path.name}: unknown emotion ({emotion}) or statement ({statement}) code"
            listing.skip(item_id, MALFORMED_NAME, detail, **known)
        elif (modality, channel) != (AUDIO_ONLY, SPEECH):
            detail = f"{path.name}: modality {modality}, channel {channel} (audio-only speech is 03-01)"
            listing.skip(item_id, NOT_SPEECH, detail, **known)
        elif label not in keep:
            detail = f"{label} is not one of {', '.join(keep)}"
            listing.skip(item_id, LABEL_NOT_IN_CLASSES, detail, **known)
        else:
            listing.utterances.append(
                Utterance(
                    id=item_id, text=STATEMENTS[statement], audio=path,
                    audio_copy=f"{speaker}/{path.name}", **known,
                )
            )
    if actors is not None:
        listing.notes.append(f"only actors {','.join(map(str, actors))} read")
    return listing
