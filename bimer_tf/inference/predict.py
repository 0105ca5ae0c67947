"""Predict emotions with an exported model: one utterance, or a whole collection.

    python -m bimer_tf.predict --saved-model export/bimer/1 --audio clip.mp3 --text "..."
    python -m bimer_tf.predict --saved-model export/ser/1 --inputs calls/ --output calls.csv
    python -m bimer_tf.predict --saved-model export/bimer/1 --manifest data/x/manifest.jsonl \
        --output predictions.jsonl --batch-size 32 --resume

One utterance (`--audio` and/or `--text`/`--text-file`): prints JSON
{"label": ..., "probabilities": {label: p, ...}}. The model's signature says
which inputs it takes: both for bimodal models, `--audio` alone for speech
models, `--text` alone for text models. Audio may be in any format
libsndfile or ffmpeg reads (WAV of any width or rate, FLAC, MP3, OGG, WebM,
M4A); it is decoded and resampled before it reaches the graph. A bad file gets
a message naming the problem and the fix (exit code 2).

Many (`--inputs` or `--manifest`): the model is loaded once; threads read,
decode and resample the next files while it runs a batch. `--inputs` takes
folders (searched for audio files), files or glob patterns; a model that
reads text finds each transcript in a UTF-8 `.txt` file beside the audio
(`clip.wav` -> `clip.txt`). `--manifest` takes the project's manifest
(JSON Lines; `audio` paths relative to it, `text`). One output row per input:
`input` (the path, or the manifest id), `label`, `probabilities` (a
{label: p} object in JSON Lines, one column per label in CSV) and `error`
(null, or why the input was skipped). Bad inputs are skipped, never dropped:
the counts printed at the end add up (seen = predicted + skipped). Exit code 0
when at least one input was predicted.
"""

from __future__ import annotations

import argparse
import csv
import glob
import io
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bimer_tf.cli import add_saved_model_argument
from bimer_tf.errors import InputError
from bimer_tf.inference.recognizer import DEFAULT_BATCH_SIZE, BatchResult, Recognizer, prepare_input
from bimer_tf.serving.export_dir import AUDIO_INPUT, TEXT_INPUT, ExportInfo, read_export_info

MISSING = {
    AUDIO_INPUT: "no audio: pass --audio FILE.wav",
    TEXT_INPUT: 'no transcript: pass --text "..." or --text-file FILE',
}
# What a folder given to --inputs is searched for (a glob pattern or a file name takes any file).
AUDIO_SUFFIXES = frozenset(
    ".wav .wave .flac .mp3 .ogg .oga .opus .webm .weba .m4a .mp4 .aac .aif .aiff .caf .wma .mka".split()
)
OUTPUT_SUFFIXES = (".jsonl", ".csv")
PROBABILITY_DIGITS = 6


# === One utterance ===


def read_text(text: str | None, text_file: str | None) -> str | None:
    """The transcript from --text or --text-file as checked UTF-8; None when neither is given."""
    if text_file is not None:
        path = Path(text_file)
        if not path.is_file():
            raise InputError(f"text file not found: {path}")
        text = _read_utf8(path)
    if text is None:
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(
            "--text holds bytes that are not valid UTF-8; set a UTF-8 locale or use --text-file"
        ) from None
    if not text.strip():
        raise InputError("the transcript is empty; pass the words spoken with --text")
    return text


def _read_utf8(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(
            f"{path} is not UTF-8 (invalid byte at offset {error.start}); "
            "re-save it as UTF-8, e.g. `iconv -f latin1 -t utf-8`"
        ) from None


def predict(model_dir: str | Path, audio: str | Path | None = None, text: str | None = None) -> dict:
    """Checks the inputs, then runs the exported model on the ones it takes.

    Raises InputError when the model needs an input that was not given, when
    the audio is unusable, or when the graph rejects an input (the op's own
    reason, first line only); all before TensorFlow loads except the last.
    A given input the model does not take is left out with a note on stderr.
    """
    info = read_export_info(model_dir)
    given = {AUDIO_INPUT: audio, TEXT_INPUT: text}
    missing = [name for name in info.inputs if given.get(name) is None]
    if missing:
        reasons = "; ".join(MISSING.get(name, f"no '{name}' input") for name in missing)
        raise InputError(f"{reasons} (the model {model_dir} takes {' and '.join(info.inputs)})")
    for name, value in given.items():
        if value is not None and name not in info.inputs:
            option = "--audio" if name == AUDIO_INPUT else "--text"
            print(f"note: {model_dir} takes only {', '.join(info.inputs)}; {option} is not used", file=sys.stderr)
    prepared = prepare_input(
        info, audio if info.takes_audio else None, text if info.takes_text else None
    )
    result = Recognizer.from_saved_model(model_dir).predict_prepared([prepared])[0]
    if result.error is not None:
        raise InputError(result.error)
    output = result.prediction.as_json(PROBABILITY_DIGITS)
    notes = output.pop("notes", None)
    if notes:
        output["note"] = "; ".join(notes)
    return output


# === Many ===


@dataclass(frozen=True)
class Entry:
    """One input of a batch run."""

    input: str  # the output's `input`: the path as found, or the manifest id
    audio: str | None = None
    text: str | None = None
    transcript_file: str | None = None  # --inputs with a model that reads text


def find_audio_files(specs: list[str]) -> list[str]:
    """The files that --inputs names: folders (searched for audio files), files and glob patterns."""
    found, seen = [], set()
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            matches = sorted(
                str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
            )
            if not matches:
                raise InputError(
                    f"--inputs {spec}: no audio files in this folder (looked for {', '.join(sorted(AUDIO_SUFFIXES))})"
                )
        elif glob.has_magic(spec):
            matches = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
            if not matches:
                raise InputError(f"--inputs {spec}: the pattern matches no file")
        elif path.is_file():
            matches = [spec]
        else:
            raise InputError(f"--inputs {spec}: no such folder or file (and not a glob pattern such as 'calls/*.mp3')")
        for match in matches:
            if match not in seen:
                seen.add(match)
                found.append(match)
    return found


def input_entries(specs: list[str], info: ExportInfo) -> list[Entry]:
    if not info.takes_audio:
        raise InputError(
            f"the model {info.path} takes only text, and --inputs gives audio files; "
            "list the transcripts in a --manifest (its text field) instead"
        )
    return [
        Entry(path, audio=path, transcript_file=str(Path(path).with_suffix(".txt")) if info.takes_text else None)
        for path in find_audio_files(specs)
    ]


def manifest_entries(manifest: str | Path) -> list[Entry]:
    from bimer_tf.data.manifest import read_manifest

    return [Entry(str(row["id"]), audio=row["audio"], text=row["text"]) for row in read_manifest(manifest)]


def entry_loader(info: ExportInfo):
    """Entry -> the Recognizer's item, in a worker thread; InputError says what the entry lacks."""

    def load(entry: Entry) -> dict:
        text = entry.text
        if entry.transcript_file is not None:
            transcript = Path(entry.transcript_file)
            if not transcript.is_file():
                raise InputError(
                    f"no transcript for {entry.audio}: the model takes {' and '.join(info.inputs)}; put the words "
                    f"spoken in {transcript} (UTF-8), or list audio and text in a --manifest"
                )
            text = _read_utf8(transcript)
        if info.takes_audio and entry.audio is None:
            raise InputError(f"no audio (the row's audio is null); the model takes {' and '.join(info.inputs)}")
        if info.takes_text and not (text or "").strip():
            raise InputError(f"no transcript (text is empty or null); the model takes {' and '.join(info.inputs)}")
        return {
            "audio": entry.audio if info.takes_audio else None,
            "text": text if info.takes_text else None,
        }

    return load


class OutputFile:
    """The batch output: JSON Lines or CSV (by suffix), or JSON Lines on stdout.

    With `resume`, the inputs already written are read back (a last line cut
    short by an interrupted run is dropped and redone) and rows are appended.
    """

    def __init__(self, path: str | None, labels, resume: bool = False):
        self.path = Path(path) if path else None
        self.labels = list(labels)
        self.csv = self.path is not None and self.path.suffix.lower() == ".csv"
        reserved = {"input", "label", "error"}
        self.columns = [f"p_{label}" if label in reserved else label for label in self.labels]
        self.header = ["input", "label", *self.columns, "error"]
        self.done: set[str] = set()
        if self.path is not None:
            if self.path.suffix.lower() not in OUTPUT_SUFFIXES:
                raise InputError(f"--output {self.path}: name a .jsonl or .csv file")
            if self.path.exists() and not resume:
                raise InputError(
                    f"--output {self.path} exists; pass --resume to skip the inputs it holds and append, "
                    "or remove it"
                )
            if resume and self.path.exists():
                self.done = self._read_done()
        self._handle = None

    def _read_done(self) -> set[str]:
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]  # drop a row cut short by an interrupted run
        if len(complete) != len(data):
            with self.path.open("r+b") as handle:
                handle.truncate(len(complete))
        text = complete.decode("utf-8")
        if self.csv:
            rows = list(csv.reader(io.StringIO(text)))
            if rows and rows[0] != self.header:
                raise InputError(
                    f"--output {self.path} has the columns {rows[0]}, not {self.header}: it was written by "
                    "another model; choose another --output"
                )
            return {row[0] for row in rows[1:] if row}
        done = set()
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                done.add(json.loads(line)["input"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise InputError(
                    f"--output {self.path}:{number} is not a row of `python -m bimer_tf.predict`; "
                    "choose another --output"
                ) from None
        return done

    def __enter__(self):
        if self.path is None:
            self._handle = sys.stdout
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            new = not self.path.exists() or self.path.stat().st_size == 0
            self._handle = self.path.open("a", encoding="utf-8", newline="")
            if self.csv:
                self._csv = csv.writer(self._handle, lineterminator="\n")
                if new:
                    self._csv.writerow(self.header)
        return self

    def __exit__(self, *exc):
        if self._handle is not None and self._handle is not sys.stdout:
            self._handle.close()
        elif self._handle is sys.stdout:
            sys.stdout.flush()
        self._handle = None

    def write(self, name: str, result: BatchResult) -> None:
        prediction = result.prediction
        probabilities = (
            None
            if prediction is None
            else {label: round(p, PROBABILITY_DIGITS) for label, p in prediction.probabilities.items()}
        )
        if self.csv:
            values = [probabilities[label] for label in self.labels] if probabilities else [""] * len(self.labels)
            self._csv.writerow([name, prediction.label if prediction else "", *values, result.error or ""])
        else:
            row = {
                "input": name,
                "label": prediction.label if prediction else None,
                "probabilities": probabilities,
                "error": result.error,
            }
            self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._handle.flush()


@dataclass
class Counts:
    seen: int = 0
    predicted: int = 0
    skipped: int = 0
    resumed: int = 0  # already in the output (--resume), not run again
    examples: list = field(default_factory=list)  # (input, reason) of the first skipped inputs

    def line(self) -> str:
        text = f"{self.seen} inputs: {self.predicted} predicted, {self.skipped} skipped"
        if self.resumed:
            text += f" ({self.resumed} more were already in the output and not run again)"
        return text


def predict_entries(
    recognizer: Recognizer,
    entries: list[Entry],
    output: OutputFile,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    progress: bool = True,
) -> Counts:
    """Runs the entries the output does not hold yet; writes one row each, in order."""
    from tqdm import tqdm

    counts = Counts()
    todo = [entry for entry in entries if entry.input not in output.done]
    counts.resumed = len(entries) - len(todo)
    bar = tqdm(total=len(todo), unit="input", file=sys.stderr, disable=None if progress else True)
    results = recognizer.iter_predict(
        todo, batch_size, workers=workers, load=entry_loader(recognizer.info)
    )
    with bar, output:
        for result in results:
            name = todo[result.index].input
            output.write(name, result)
            counts.seen += 1
            if result.ok:
                counts.predicted += 1
            else:
                counts.skipped += 1
                if len(counts.examples) < 5:
                    counts.examples.append((name, result.error))
            bar.update(1)
    return counts


def run_batch(args) -> int:
    """--inputs / --manifest: every check before the model loads, then one pass."""
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}")
    if args.resume and not args.output:
        raise InputError("--resume needs --output: the file whose rows are skipped and appended to")
    info = read_export_info(args.saved_model)
    if args.manifest is not None:
        entries = manifest_entries(args.manifest)
    else:
        entries = input_entries(args.inputs, info)
    output = OutputFile(args.output, info.labels, resume=args.resume)
    if all(entry.input in output.done for entry in entries):
        print(f"all {len(entries)} inputs are already in {output.path}; nothing to do", file=sys.stderr)
        return 0
    recognizer = Recognizer.from_saved_model(args.saved_model)
    counts = predict_entries(recognizer, entries, output, args.batch_size, args.workers)
    for name, reason in counts.examples:
        print(f"  skipped {name}: {reason}", file=sys.stderr)
    if counts.skipped > len(counts.examples):
        print(f"  ... {counts.skipped - len(counts.examples)} more (see the error column)", file=sys.stderr)
    where = f"; wrote {output.path}" if output.path else ""
    print(counts.line() + where, file=sys.stderr)
    if counts.seen and not counts.predicted:
        raise InputError(f"none of the {counts.seen} inputs could be predicted; each row's error says why")
    return 0


# === The command ===


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bimer_tf.predict",
        description=__doc__.split("\n")[0],
        epilog="One utterance: --audio and/or --text/--text-file, JSON on stdout. "
        "Many: --inputs or --manifest, rows to --output (JSON Lines on stdout without it).",
    )
    add_saved_model_argument(parser)
    single = parser.add_argument_group("one utterance")
    single.add_argument(
        "--audio", help="audio file, any format (WAV, FLAC, MP3, OGG, WebM, M4A; needed by speech and bimodal models)"
    )
    text = single.add_mutually_exclusive_group()
    text.add_argument("--text", help="the transcript (needed by text and bimodal models)")
    text.add_argument("--text-file", help="a UTF-8 file holding the transcript")
    many = parser.add_argument_group("many files")
    sources = many.add_mutually_exclusive_group()
    sources.add_argument(
        "--inputs", nargs="+", metavar="DIR_OR_GLOB",
        help="audio folders, files or glob patterns (quoted: 'calls/**/*.mp3'); "
        "a model that reads text takes each transcript from the .txt file beside the audio",
    )
    sources.add_argument(
        "--manifest", metavar="FILE.jsonl", help="the project's manifest: audio (relative to it) and/or text per row"
    )
    many.add_argument("--output", metavar="FILE", help="FILE.jsonl or FILE.csv (default: JSON Lines on stdout)")
    many.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="N",
        help=f"inputs per SavedModel call (default {DEFAULT_BATCH_SIZE})",
    )
    many.add_argument("--resume", action="store_true", help="skip the inputs --output already holds; append the rest")
    many.add_argument(
        "--workers", type=int, metavar="N", help="threads decoding ahead of the model (default: the cores, at most 4)"
    )
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    single_given = args.audio is not None or args.text is not None or args.text_file is not None
    if args.inputs is not None or args.manifest is not None:
        if single_given:
            parser.error("--audio/--text/--text-file predict one utterance, --inputs/--manifest many: use one or the other")
        return run_batch(args)
    if args.output or args.resume:
        parser.error("--output and --resume go with --inputs or --manifest")
    if not single_given:
        parser.error("give the model's inputs: --audio FILE and/or --text \"...\" (or many: --inputs / --manifest)")
    text = read_text(args.text, args.text_file)
    print(json.dumps(predict(args.saved_model, args.audio, text), ensure_ascii=False))
    return 0
