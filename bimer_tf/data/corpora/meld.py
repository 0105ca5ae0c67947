"""MELD (Friends dialogues): transcripts, 7 emotions, the official split, audio when present.

Files read, under the root::

    train_sent_emo.csv  dev_sent_emo.csv  test_sent_emo.csv

with the columns `Sr No., Utterance, Speaker, Emotion, Sentiment,
Dialogue_ID, Utterance_ID, Season, Episode, StartTime, EndTime`. Utterances
hold commas, doubled quotes and non-ASCII text, so each line goes through
the csv module; MELD has no line breaks inside fields, so one physical line
is one row, and a row with broken quoting is reported without swallowing the
rows after it. Text that was once mis-decoded as Windows-1252 (`Iâ€™m`) is
repaired (`I’m`).

Clips `dia{D}_utt{U}.mp4` are looked for in the folders of the MELD.Raw
archives, `train_splits/`, `dev_splits_complete/` and
`output_repeated_splits_test/`, under `audio_root` (or the root) up to three
levels down. Their audio track is decoded by the ffmpeg binary that
imageio-ffmpeg ships. Without those folders the manifest is text-only.

Ids are `meld-<train|dev|test>-dia{D}_utt{U}`; the speaker is the Speaker
column; there are no sessions; the official split maps dev to val.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
from pathlib import Path

from bimer_tf.data.corpora import (
    BROKEN_CSV_ROW,
    LABEL_NOT_IN_CLASSES,
    NO_TEXT,
    CorpusListing,
    Utterance,
)
from bimer_tf.errors import InputError

NAME = "meld"
HAS_AUDIO = True
ROOT_HINT = "the MELD folder holding train_sent_emo.csv, dev_sent_emo.csv and test_sent_emo.csv"
CLASSES = ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")
# MELD split -> (label file, clip folder of the MELD.Raw archive, official split name).
SPLITS = {
    "train": ("train_sent_emo.csv", "train_splits", "train"),
    "dev": ("dev_sent_emo.csv", "dev_splits_complete", "val"),
    "test": ("test_sent_emo.csv", "output_repeated_splits_test", "test"),
}
REQUIRED_COLUMNS = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")
CLIP_SEARCH_DEPTH = 3
FFMPEG_TIMEOUT_S = 300


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--audio-root",
        type=Path,
        default=None,
        help="folder holding train_splits/, dev_splits_complete/ and "
        "output_repeated_splits_test/ (default: searched under --root)",
    )
    parser.add_argument(
        "--text-only", action="store_true", help="ignore the clips even when they are present"
    )


def read_meld(
    root: str | Path, *, audio_root: str | Path | None = None, text_only: bool = False
) -> CorpusListing:
    """Lists the rows of the three CSV files, with their clips when the clip folders exist."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"MELD root not found: {root}; expected {ROOT_HINT}")
    missing = [name for name, _, _ in SPLITS.values() if not (root / name).is_file()]
    if missing:
        raise InputError(
            f"{root} does not look like MELD: {', '.join(missing)} missing; expected {ROOT_HINT}"
        )
    if text_only:
        clip_dirs = {}
    else:
        clip_dirs = find_clip_folders(Path(audio_root or root), required=audio_root is not None)
    listing = CorpusListing(
        NAME, root, {"audio_root": str(audio_root) if audio_root else None, "text_only": text_only}
    )
    if not clip_dirs:
        listing.notes.append("no clip folders found: text-only manifest (audio null)")
    repaired = 0
    for split, (file_name, _, official) in SPLITS.items():
        rows = _read_csv_rows(root / file_name, listing, split)
        for line_number, row in rows:
            known = dict(speaker=row["Speaker"].strip() or None, session=None)
            try:
                dialogue, utterance = int(row["Dialogue_ID"]), int(row["Utterance_ID"])
                if dialogue < 0 or utterance < 0:
                    raise ValueError
            except ValueError:
                listing.skip(
                    f"meld-{split}-line{line_number}", BROKEN_CSV_ROW,
                    f"{file_name}:{line_number}: Dialogue_ID {row['Dialogue_ID']!r} / Utterance_ID "
                    f"{row['Utterance_ID']!r} are not non-negative integers",
                    label=row["Emotion"].strip().lower() or None, **known,
                )
                continue
            clip = f"dia{dialogue}_utt{utterance}"
            item_id = f"meld-{split}-{clip}"
            label = row["Emotion"].strip().lower()
            known["label"] = label or None
            if label not in CLASSES:
                listing.skip(
                    item_id, LABEL_NOT_IN_CLASSES,
                    f"{file_name}:{line_number}: {label!r} is not one of {', '.join(CLASSES)}", **known,
                )
                continue
            text = repair_mojibake(row["Utterance"].strip())
            repaired += text != row["Utterance"].strip()
            if not text:
                listing.skip(item_id, NO_TEXT, f"{file_name}:{line_number}: empty Utterance", **known)
                continue
            listing.utterances.append(
                Utterance(
                    id=item_id, text=text, split=official,
                    audio=clip_dirs[split] / f"{clip}.mp4" if clip_dirs else None,
                    audio_copy=f"{split}/{clip}.wav", converter=extract_audio, **known,
                )
            )
    if repaired:
        listing.notes.append(
            f"{repaired} utterances repaired from Windows-1252 mojibake (e.g. 'â€™' -> '’')"
        )
    return listing


def find_clip_folders(base: Path, required: bool) -> dict[str, Path]:
    """MELD split -> its clip folder under `base`; {} when there are none.

    Finding only some of the three folders is an error: a manifest with audio
    for some splits and not others would be a silent surprise later.
    """
    names = [clip_folder for _, clip_folder, _ in SPLITS.values()]
    found = {}
    if base.is_dir():
        for folder, subfolders, _ in os.walk(base):
            depth = len(Path(folder).relative_to(base).parts)
            for split, (_, clip_folder, _) in SPLITS.items():
                if clip_folder in subfolders and split not in found:
                    found[split] = Path(folder) / clip_folder
            # Never list the clip folders themselves (thousands of files) or go deeper.
            subfolders[:] = [] if depth >= CLIP_SEARCH_DEPTH - 1 else [
                name for name in subfolders if name not in names
            ]
    if required and not found:
        raise InputError(f"no MELD clip folders ({', '.join(names)}) under --audio-root {base}")
    if found and len(found) < len(SPLITS):
        absent = [SPLITS[s][1] for s in SPLITS if s not in found]
        raise InputError(
            f"MELD clip folders {', '.join(absent)} not found under {base} (found "
            f"{', '.join(str(p) for p in found.values())}); extract all three archives, "
            "or add --text-only"
        )
    return found


def _read_csv_rows(path: Path, listing: CorpusListing, split: str):
    """(line number, row dict) for each well-formed line; broken lines are reported."""
    lines = path.read_bytes().split(b"\n")
    header = _decode(lines[0]).lstrip("\ufeff").rstrip("\r")
    columns = next(csv.reader([header]), [])
    absent = [c for c in REQUIRED_COLUMNS if c not in columns]
    if absent:
        raise InputError(f"{path}: header lacks the MELD columns {absent}; found {columns}")
    rows = []
    for line_number, raw in enumerate(lines[1:], 2):
        line = _decode(raw).rstrip("\r")
        if not line.strip():
            continue
        try:
            fields = next(csv.reader([line], strict=True))
            if len(fields) != len(columns):
                raise csv.Error(f"{len(fields)} fields, the header has {len(columns)}")
        except csv.Error as error:
            listing.skip(
                f"meld-{split}-line{line_number}", BROKEN_CSV_ROW,
                f"{path.name}:{line_number}: {error}: {line[:80]!r}",
            )
            continue
        rows.append((line_number, dict(zip(columns, fields))))
    return rows


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # a Windows-1252 line in an otherwise UTF-8 file
        return raw.decode("cp1252", errors="replace")


def repair_mojibake(text: str) -> str:
    """Undoes UTF-8 text having been decoded as Windows-1252 ('Iâ€™m' -> 'I’m').

    Only applied when the text round-trips exactly, so correct text such as
    'pâté' is left alone.
    """
    if "â" not in text and "Ã" not in text:
        return text
    try:
        return text.encode("cp1252").decode("utf-8")
    except UnicodeError:
        return text


def extract_audio(source: Path, target: Path, sample_rate: int = 16000) -> Path:
    """Decodes a clip's audio track into a 16-bit PCM mono WAV at `sample_rate`.

    Runs the ffmpeg binary that imageio-ffmpeg ships (no system ffmpeg is
    needed); writes through a `.part` file so an interrupted run leaves no
    half-written WAV behind.
    """
    from imageio_ffmpeg import get_ffmpeg_exe

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    command = [
        get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-i", str(source), "-vn", "-ac", "1", "-ar", str(sample_rate),
        "-c:a", "pcm_s16le", "-f", "wav", str(partial),
    ]
    try:
        result = subprocess.run(command, capture_output=True, timeout=FFMPEG_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        partial.unlink(missing_ok=True)
        raise InputError(f"ffmpeg took over {FFMPEG_TIMEOUT_S} s on {source}") from None
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        message = result.stderr.decode("utf-8", errors="replace").strip().splitlines()
        reason = message[-1] if message else f"exit status {result.returncode}"
        raise InputError(f"ffmpeg cannot decode the audio of {source}: {reason}")
    partial.replace(target)
    return target
