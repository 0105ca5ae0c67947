"""Corpus preparation: a manifest, the official split and a report from a corpus folder.

    python -m bimer_tf.data.prepare emodb --root ../shared/corpora/emodb --out data/emodb
    python -m bimer_tf.data.prepare iemocap --root IEMOCAP_full_release --out data/iemocap
    python -m bimer_tf.data.prepare meld --root MELD.Raw --out data/meld
    python -m bimer_tf.data.prepare ravdess --root ../shared/corpora/ravdess4 --out data/ravdess
    python -m bimer_tf.data.prepare tweeteval --root ../shared/corpora/tweeteval --out data/tweeteval

Writes into --out:

- `manifest.jsonl`: one row per kept utterance (the contract of
  `bimer_tf.data.manifest`);
- `prep_report.json`: items seen, kept and skipped in all, per class, speaker
  and session (kept + skipped = seen everywhere), every skipped item with its
  id and reason, and warnings about the corpus as a whole;
- `official_split.json` for corpora that define one (MELD, TweetEval):
  `{"train": [ids], "val": [ids], "test": [ids]}`, which
  `bimer_tf.data.split` reads for its `official` protocol;
- `audio/`: 16 kHz mono 16-bit PCM WAV copies of audio in any other form.
  Audio already in that form is referenced in place. A re-run reuses the
  copies that are still valid and newer than their source.

A file that is missing, empty, undecodable, silent or longer than
`--max-duration` is skipped and reported; the rest goes on.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import soundfile
from tqdm import tqdm

from bimer_tf.cli import run_main
from bimer_tf.config import AudioConfig
from bimer_tf.data.corpora import (
    AUDIO_EMPTY,
    AUDIO_MISSING,
    AUDIO_REJECTED,
    AUDIO_TOO_LONG,
    AUDIO_UNREADABLE,
    DUPLICATE_ID,
    CorpusListing,
    Utterance,
    emodb,
    iemocap,
    meld,
    ravdess,
    tweeteval,
)
from bimer_tf.data.manifest import SPLIT_NAMES, make_row, write_manifest
from bimer_tf.data.process_pool import available_cpus, map_in_processes
from bimer_tf.audio.wav import check_wav
from bimer_tf.errors import InputError

MANIFEST_NAME = "manifest.jsonl"
REPORT_NAME = "prep_report.json"
OFFICIAL_SPLIT_NAME = "official_split.json"
AUDIO_DIR = "audio"
# Longer utterances are rare in acted corpora and mostly segmentation errors;
# the models crop to AudioConfig.max_duration_s anyway.
DEFAULT_MAX_DURATION_S = 30.0
NONE_KEY = "<none>"


@dataclass(frozen=True)
class CorpusReader:
    read: Callable[..., CorpusListing]
    add_arguments: Callable[[argparse.ArgumentParser], None]
    has_audio: bool
    root_hint: str
    description: str


def _reader(module, read) -> CorpusReader:
    return CorpusReader(
        read, module.add_arguments, module.HAS_AUDIO, module.ROOT_HINT, module.__doc__.split("\n")[0]
    )


READERS = {
    "emodb": _reader(emodb, emodb.read_emodb),
    "iemocap": _reader(iemocap, iemocap.read_iemocap),
    "meld": _reader(meld, meld.read_meld),
    "ravdess": _reader(ravdess, ravdess.read_ravdess),
    "tweeteval": _reader(tweeteval, tweeteval.read_tweeteval),
}


# === Audio stage ===


@dataclass(frozen=True)
class AudioJob:
    source: Path
    copy: Path
    converter: Callable[[Path, Path, int], object]
    sample_rate: int
    max_duration_s: float
    silence_floor_dbfs: float


@dataclass(frozen=True)
class AudioOutcome:
    path: str | None  # the WAV the manifest points at; None when skipped
    action: str  # "in_place", "converted", "reused" or "skipped"
    reason: str | None = None
    detail: str | None = None


def prepare_audio(job: AudioJob) -> AudioOutcome:
    """Checks one source file, converting it when it is readable but not in model form.

    Model form is what `check_wav` accepts and the front end reads: 16-bit PCM
    WAV at the sample rate, here also mono so copies are no larger than needed.
    """
    source = job.source
    if not source.is_file():
        return AudioOutcome(None, "skipped", AUDIO_MISSING, f"{source} not found")
    if source.stat().st_size == 0:
        return AudioOutcome(None, "skipped", AUDIO_EMPTY, f"{source} is empty (0 bytes)")
    if _in_model_form(source, job.sample_rate):
        path, action = source, "in_place"
    elif _in_model_form(job.copy, job.sample_rate) and not _is_older(job.copy, source):
        path, action = job.copy, "reused"
    else:
        duration = _duration_s(source)
        if duration is not None and duration > job.max_duration_s:
            return _too_long(source, duration, job)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # librosa's fallback decoders warn on every file
                job.converter(source, job.copy, job.sample_rate)
        except (InputError, OSError, ValueError, RuntimeError) as error:
            return AudioOutcome(None, "skipped", AUDIO_UNREADABLE, str(error))
        path, action = job.copy, "converted"
    try:
        info = check_wav(path, job.sample_rate, job.silence_floor_dbfs)
    except InputError as error:
        return AudioOutcome(None, "skipped", AUDIO_REJECTED, str(error))
    except (OSError, RuntimeError) as error:  # a header that reads but a body that does not
        return AudioOutcome(None, "skipped", AUDIO_UNREADABLE, f"{path}: {error}")
    if info.duration_s > job.max_duration_s:
        return _too_long(path, info.duration_s, job)
    return AudioOutcome(str(path), action)


def _in_model_form(path: Path, sample_rate: int) -> bool:
    if not path.is_file():
        return False
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, OSError, TypeError):  # not a format libsndfile reads
        return False
    form = (info.format, info.subtype, info.samplerate, info.channels)
    return form == ("WAV", "PCM_16", sample_rate, 1)


def _is_older(copy: Path, source: Path) -> bool:
    return copy.stat().st_mtime < source.stat().st_mtime


def _duration_s(path: Path) -> float | None:
    try:
        return soundfile.info(str(path)).duration
    except (RuntimeError, OSError, TypeError):
        return None


def _too_long(path: Path, duration: float, job: AudioJob) -> AudioOutcome:
    detail = f"{path} lasts {duration:.1f} s, over --max-duration {job.max_duration_s:g} s"
    return AudioOutcome(None, "skipped", AUDIO_TOO_LONG, detail)


def run_audio_jobs(jobs: list[AudioJob], workers: int, progress: bool = True) -> list[AudioOutcome]:
    """`prepare_audio` over all jobs, in order, on a pool of `workers` processes."""
    # Starting processes pays only with more jobs than workers.
    workers = max(1, workers) if len(jobs) > workers else 1
    chunksize = max(1, min(64, len(jobs) // (workers * 8)))
    outcomes = []
    with tqdm(total=len(jobs), desc="audio", unit="file", disable=not progress or not jobs) as bar:
        for outcome in map_in_processes(prepare_audio, jobs, workers, chunksize=chunksize):
            outcomes.append(outcome)
            bar.update()
    return outcomes


# === Preparation ===


def prepare(
    corpus: str,
    root: str | Path,
    out_dir: str | Path,
    *,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    workers: int | None = None,
    progress: bool = True,
    **options,
) -> dict:
    """Reads `corpus` at `root` and writes manifest, official split and report into `out_dir`.

    `options` go to the corpus reader (e.g. `subset="all", merge_excited=True`
    for IEMOCAP). Returns the report, also written to `out_dir/prep_report.json`.
    """
    started = time.perf_counter()
    if corpus not in READERS:
        raise InputError(f"unknown corpus '{corpus}'; choose one of {', '.join(READERS)}")
    reader = READERS[corpus]
    root, out_dir = Path(root), Path(out_dir)
    if not root.is_dir():
        raise InputError(f"{corpus} root not found: {root}; expected {reader.root_hint}")
    if not max_duration_s > 0:
        raise InputError(f"--max-duration must be a positive number of seconds, got {max_duration_s}")
    workers = available_cpus() if workers is None else workers
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    try:
        listing = reader.read(root, **options)
    except OSError as error:  # e.g. a label file without read permission
        raise InputError(f"cannot read the {corpus} corpus at {root}: {error}") from None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create the output folder {out_dir} ({error.strerror})") from None

    candidates = _drop_duplicate_ids(listing)
    audio_config = AudioConfig()
    jobs = [
        AudioJob(
            u.audio, out_dir / AUDIO_DIR / u.audio_copy, u.converter,
            audio_config.sample_rate, max_duration_s, audio_config.silence_floor_dbfs,
        )
        for u in candidates
        if u.audio is not None
    ]
    outcomes = iter(run_audio_jobs(jobs, workers, progress))
    kept, audio_actions = [], Counter()
    for utterance in candidates:
        outcome = next(outcomes) if utterance.audio is not None else AudioOutcome(None, "none")
        audio_actions[outcome.action] += 1
        if outcome.action == "skipped":
            listing.skip(
                utterance.id, outcome.reason, outcome.detail,
                label=utterance.label, speaker=utterance.speaker, session=utterance.session,
            )
        else:
            kept.append((utterance, outcome.path))

    rows = [
        make_row(
            u.id, u.label, audio=path, text=u.text, speaker=u.speaker, session=u.session,
            corpus=listing.corpus,
        )
        for u, path in kept
    ]
    outputs = {"manifest": str(write_manifest(rows, out_dir / MANIFEST_NAME))}
    if any(u.split for u in candidates):
        split_ids = {name: [u.id for u, _ in kept if u.split == name] for name in SPLIT_NAMES}
        split_path = out_dir / OFFICIAL_SPLIT_NAME
        split_path.write_text(json.dumps(split_ids, indent=1), encoding="utf-8")
        outputs["official_split"] = str(split_path)
    if reader.has_audio:
        options = {
            **listing.options,
            "max_duration_s": max_duration_s,
            "sample_rate": audio_config.sample_rate,
        }
    else:
        options = listing.options
    report_path = out_dir / REPORT_NAME
    outputs["report"] = str(report_path)
    report = build_report(
        listing,
        [u for u, _ in kept],
        options=options,
        audio={k: audio_actions[k] for k in ("in_place", "converted", "reused")} if jobs else None,
        outputs=outputs,
        seconds=time.perf_counter() - started,
    )
    report_path.write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    return report


def _drop_duplicate_ids(listing: CorpusListing) -> list[Utterance]:
    """The utterances with the first of each id; later ones are reported as skipped."""
    seen, unique = set(), []
    for utterance in listing.utterances:
        if utterance.id in seen:
            listing.skip(
                utterance.id, DUPLICATE_ID, "an earlier item has the same id",
                label=utterance.label, speaker=utterance.speaker, session=utterance.session,
            )
        else:
            seen.add(utterance.id)
            unique.append(utterance)
    return unique


def build_report(
    listing: CorpusListing,
    kept: list[Utterance],
    *,
    options: dict,
    audio: dict | None,
    outputs: dict,
    seconds: float,
) -> dict:
    """The prep_report.json document: counts that add up, and every skip with its reason."""
    tables = {"per_class": {}, "per_speaker": {}, "per_session": {}}

    def tally(item, outcome: str) -> None:
        for table, key in zip(tables.values(), (item.label, item.speaker, item.session)):
            key = NONE_KEY if key is None else str(key)
            counts = table.setdefault(key, {"seen": 0, "kept": 0, "skipped": 0})
            counts["seen"] += 1
            counts[outcome] += 1

    for utterance in kept:
        tally(utterance, "kept")
    for skipped in listing.skipped:
        tally(skipped, "skipped")
    # Classes the manifest keeps first, largest first; left-out labels after them.
    per_class = dict(
        sorted(tables["per_class"].items(), key=lambda kv: (-kv[1]["kept"], -kv[1]["seen"], kv[0]))
    )
    return {
        "corpus": listing.corpus,
        "root": str(listing.root.resolve()),
        "options": options,
        "seen": len(kept) + len(listing.skipped),
        "kept": len(kept),
        "skipped": len(listing.skipped),
        "per_class": per_class,
        "per_speaker": dict(sorted(tables["per_speaker"].items())),
        "per_session": dict(sorted(tables["per_session"].items())),
        "skipped_by_reason": dict(Counter(s.reason for s in listing.skipped).most_common()),
        "skipped_items": [
            {"id": s.id, "reason": s.reason, "detail": s.detail} for s in listing.skipped
        ],
        "audio": audio,
        "warnings": listing.warnings,
        "notes": listing.notes,
        "outputs": outputs,
        "seconds": round(seconds, 2),
    }


def format_summary(report: dict) -> str:
    """A short human summary of a report."""
    lines = [
        f"{report['corpus']}: kept {report['kept']} of {report['seen']} seen, "
        f"skipped {report['skipped']} ({report['seconds']:.1f} s)",
        f"  {'class':<16}{'seen':>8}{'kept':>8}{'skipped':>9}",
    ]
    for label, counts in report["per_class"].items():
        lines.append(f"  {label:<16}{counts['seen']:>8}{counts['kept']:>8}{counts['skipped']:>9}")
    speakers = [s for s in report["per_speaker"] if s != NONE_KEY]
    sessions = [s for s in report["per_session"] if s != NONE_KEY]
    if speakers or sessions:
        lines.append(f"  speakers: {len(speakers)}, sessions: {len(sessions)}")
    if report["skipped_by_reason"]:
        reasons = ", ".join(f"{n} {reason}" for reason, n in report["skipped_by_reason"].items())
        lines.append(f"  skipped: {reasons} (details in the report)")
    if report["audio"]:
        audio = report["audio"]
        lines.append(
            f"  audio: {audio['in_place']} used in place, {audio['converted']} converted, "
            f"{audio['reused']} reused from an earlier run"
        )
    lines += [f"  note: {note}" for note in report["notes"]]
    lines += [f"  WARNING: {warning}" for warning in report["warnings"]]
    lines += [f"  wrote {path}" for path in report["outputs"].values()]
    return "\n".join(lines)


# === Command line ===

COMMON_ARGUMENTS = ("corpus", "root", "out", "max_duration", "workers", "no_progress")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bimer_tf.data.prepare",
        description="Write a manifest, report (and official split, converted audio) for a corpus.",
    )
    corpora = parser.add_subparsers(dest="corpus", required=True, metavar="CORPUS")
    for name, reader in READERS.items():
        sub = corpora.add_parser(name, help=reader.description, description=reader.description)
        sub.add_argument("--root", type=Path, required=True, help=f"corpus folder: {reader.root_hint}")
        sub.add_argument("--out", type=Path, required=True, help="output folder (created if needed)")
        if reader.has_audio:
            sub.add_argument(
                "--max-duration",
                type=float,
                default=DEFAULT_MAX_DURATION_S,
                metavar="SECONDS",
                help="skip longer utterances (default: %(default)s)",
            )
            sub.add_argument(
                "--workers",
                type=int,
                default=None,
                help="processes checking and converting audio (default: all CPUs)",
            )
        sub.add_argument("--no-progress", action="store_true", help="no progress bar")
        reader.add_arguments(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    options = {key: value for key, value in vars(args).items() if key not in COMMON_ARGUMENTS}
    report = prepare(
        args.corpus,
        args.root,
        args.out,
        max_duration_s=getattr(args, "max_duration", DEFAULT_MAX_DURATION_S),
        workers=getattr(args, "workers", None),
        progress=not args.no_progress,
        **options,
    )
    print(format_summary(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
