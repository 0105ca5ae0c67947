"""Corpus readers: each turns a corpus folder into a `CorpusListing`.

A reader parses a corpus's own label, transcript and metadata files and lists
every utterance it saw: the candidates (`Utterance`, with the source audio
still to be checked) and those it already had to leave out (`Skipped`, with a
reason). Readers never open audio; `bimer_tf.data.prepare` checks and
converts audio, writes the manifest, the official split and the report.

Skip reasons are short fixed phrases (the constants below) so that reports
can count them; the `detail` says what exactly was wrong with the item.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bimer_tf.audio.wav import convert_audio

# Skip reasons shared by every reader and the audio stage.
LABEL_NOT_IN_CLASSES = "label not in class map"
MALFORMED_LINE = "malformed line"
MALFORMED_NAME = "malformed file name"
BROKEN_CSV_ROW = "broken csv row"
NO_TEXT = "no transcript"
NO_LABEL = "no label"
UNSAFE_PATH = "unsafe path"
DUPLICATE_ID = "duplicate id"
NOT_SPEECH = "not speech audio"
AUDIO_MISSING = "audio missing"
AUDIO_EMPTY = "audio empty"
AUDIO_UNREADABLE = "audio unreadable"
AUDIO_REJECTED = "audio rejected"
AUDIO_TOO_LONG = "audio too long"


@dataclass
class Utterance:
    """A candidate manifest row whose audio (if any) is still to be checked."""

    id: str
    label: str
    text: str | None
    speaker: str | None
    session: int | None
    # Source audio inside the corpus root, or None for a text-only corpus.
    audio: Path | None = None
    # Where a converted copy goes, relative to the output's `audio/` folder.
    audio_copy: str | None = None
    # Turns `audio` into a 16-bit PCM mono WAV: converter(source, target, sample_rate).
    converter: Callable[[Path, Path, int], object] = convert_audio
    # Official split ("train", "val", "test") for corpora that define one.
    split: str | None = None


@dataclass
class Skipped:
    """An item the reader saw and left out, with a reason phrase and details."""

    id: str
    reason: str
    detail: str
    label: str | None = None
    speaker: str | None = None
    session: int | None = None


@dataclass
class CorpusListing:
    """Everything a reader saw in a corpus folder."""

    corpus: str
    root: Path
    options: dict
    utterances: list[Utterance] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    # Something about the corpus as a whole looks wrong (e.g. unexpected counts).
    warnings: list[str] = field(default_factory=list)
    # Expected oddities worth knowing about (e.g. non-utterance transcript lines).
    notes: list[str] = field(default_factory=list)

    def skip(self, id: str, reason: str, detail: str, **fields) -> None:
        self.skipped.append(Skipped(id, reason, detail, **fields))


def path_inside(root: str | Path, *parts: str) -> Path | None:
    """`root/parts...`, or None when the parts would lead outside `root`.

    The check is lexical (`..`, absolute parts), so a corpus whose folders are
    symbolic links to another disk still works, while an id such as
    `../../etc/passwd` read from a corpus file cannot reach outside the root.
    """
    base = os.path.normpath(os.path.abspath(root))
    joined = os.path.normpath(os.path.join(base, *parts))
    if os.path.commonpath([base, joined]) != base or joined == base:
        return None
    return Path(joined)


def read_lines(path: Path) -> list[str]:
    """The lines of a text file, split on newlines only (no `\\r`, no final empty line).

    `str.splitlines` would also split on characters such as U+2028 that can
    occur inside a tweet or a transcript; a stray non-UTF-8 byte is replaced
    rather than failing the whole file.
    """
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]
