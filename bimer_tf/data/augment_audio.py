"""Offline audio augmentation: pre-augmented training waveforms (BiMER, section 3).

    python -m bimer_tf.data.augment --manifest splits/fold1/train.jsonl \
        --out data/aug/fold1 --methods speed,rir,noise,pitch

Augment only training data, after the split. Give this tool the training
manifest of a fold (`<fold>/train.jsonl` from `python -m bimer_tf.data.split`),
never a whole corpus: a copy of a validation or test recording in training
data leaks the evaluation set into the model. (`split` refuses such folds.)

The four methods of the BiMER paper, each built on a maintained library:

- `speed`: tempo change by 0.75 and 1.25 with the pitch kept (time stretch,
  audiomentations `TimeStretch`); two copies per recording, the duration
  becomes 1/0.75 and 1/1.25 of the original.
- `rir`: reverberation. Without `--rir-dir`, a simulated shoebox room
  (pyroomacoustics `ShoeBox`, image source method) with a random size, a wall
  absorption chosen for a random RT60, and random source and microphone
  positions. With `--rir-dir`, a measured impulse response drawn from that
  folder (audiomentations `ApplyImpulseResponse`).
- `noise`: background noise at a random SNR in `--snr-db`. With `--noise-dir`
  (e.g. MUSAN noise), a random excerpt of a random recording there
  (audiomentations `AddBackgroundNoise`); without it, generated coloured noise
  of a random spectral slope (audiomentations `AddColorNoise`).
- `pitch`: a pitch shift of a random size in `--pitch-semitones` (never 0),
  up or down (audiomentations `PitchShift`), duration kept.

SpecAugment is not here: it masks spectrograms on the fly in the input
pipeline.

Outputs are 16 kHz mono 16-bit PCM WAVs under `OUT/<method>/`, listed in
`OUT/manifest.jsonl` (ids `<origin>-speed0.75`, `<origin>-rir`, ...; `origin`
names the recording, `augmentation` the method; label, text, speaker,
session and corpus are copied). `OUT/augment_report.json` counts rows seen,
augmented and skipped (with reasons) and clips written, reused and failed,
per method.

Each clip's randomness comes from a seed derived from `--seed` and the clip's
id, so the result does not depend on the number of workers or their order.
A rerun skips every clip whose file exists (files appear only complete: they
are written under a temporary name and renamed), so an interrupted run
resumes where it stopped. `OUT/augment_settings.json` records the settings;
a rerun with different settings into the same folder is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import os
import random
import re
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bimer_tf.config import AudioConfig
from bimer_tf.data.manifest import read_manifest, write_manifest
from bimer_tf.data.process_pool import available_cpus, map_in_processes
from bimer_tf.audio.wav import encode_pcm16, load_audio
from bimer_tf.errors import InputError

METHODS = ("speed", "rir", "noise", "pitch")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".m4a", ".opus")


@dataclass(frozen=True)
class AugmentSettings:
    """Everything that decides the content of an augmented clip."""

    seed: int = 0
    sample_rate: int = AudioConfig.sample_rate
    # Tempo factors of `speed`: 0.75 slows down (longer clip), 1.25 speeds up.
    speed_factors: tuple[float, ...] = (0.75, 1.25)
    # Folder of measured impulse responses; None simulates rooms instead.
    rir_dir: str | None = None
    # Reverberation time range of simulated rooms (seconds); living rooms and
    # offices lie around 0.3-0.6 s, lecture halls near 1 s.
    rt60_s: tuple[float, float] = (0.2, 0.8)
    # Folder of noise recordings; None generates coloured noise instead.
    noise_dir: str | None = None
    snr_db: tuple[float, float] = (5.0, 20.0)
    # Size range of the pitch shift in semitones; the direction is drawn.
    pitch_semitones: tuple[float, float] = (1.0, 2.0)

    def check(self) -> None:
        """Raises InputError for values the methods cannot use."""
        if not self.speed_factors or any(f <= 0 or f == 1 for f in self.speed_factors):
            raise InputError(
                f"--speed-factors {self.speed_factors}: each factor must be positive and not 1 "
                "(the paper uses 0.75,1.25)"
            )
        _check_range("--snr-db", self.snr_db, low=-20.0, high=80.0)
        _check_range("--pitch-semitones", self.pitch_semitones, low=0.0, high=12.0)
        if self.pitch_semitones[0] <= 0:
            raise InputError(
                f"--pitch-semitones {self.pitch_semitones}: the smallest shift must be above 0 "
                "so that every copy differs from the original (e.g. 1,2)"
            )
        # Below 0.2 s the Sabine formula asks for walls absorbing more than all
        # incident sound in the larger rooms drawn here.
        _check_range("--rt60", self.rt60_s, low=0.2, high=2.0)
        for option, folder in (("--rir-dir", self.rir_dir), ("--noise-dir", self.noise_dir)):
            if folder is not None:
                audio_files_in(folder, option)


def _check_range(option: str, value: tuple[float, float], low: float, high: float) -> None:
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise InputError(f"{option} {value}: expected MIN,MAX with {low} <= MIN <= MAX <= {high}")


def audio_files_in(folder: str | Path, option: str = "folder") -> list[str]:
    """Audio files under `folder` (recursively), sorted so that draws are reproducible."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{option} {folder}: not a folder")
    files = sorted(
        str(p) for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
    )
    if not files:
        raise InputError(
            f"{option} {folder}: no audio files found (expected {', '.join(AUDIO_SUFFIXES)})"
        )
    return files


@dataclass(frozen=True)
class PlannedClip:
    """One augmented copy of one recording."""

    id: str
    method: str
    path: str | None  # the WAV file this tool writes; None for tools that store copies elsewhere
    speed_factor: float | None = None


def plan_clips(
    row_id: str, methods, settings: AugmentSettings, out_dir: str | Path | None
) -> list[PlannedClip]:
    """The copies `methods` make of recording `row_id`, in a fixed order
    (with `out_dir` None, no file paths: `bimer_tf.beam.shard` keeps copies in shards)."""

    def path(method: str, clip_id: str) -> str | None:
        return None if out_dir is None else _clip_path(out_dir, method, clip_id)

    clips = []
    for method in methods:
        if method == "speed":
            for factor in settings.speed_factors:
                clip_id = f"{row_id}-speed{factor:g}"
                clips.append(PlannedClip(clip_id, method, path(method, clip_id), factor))
        else:
            clip_id = f"{row_id}-{method}"
            clips.append(PlannedClip(clip_id, method, path(method, clip_id)))
    return clips


def _clip_path(out_dir, method: str, clip_id: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", clip_id)
    if name != clip_id:  # keep names unique when ids differ only in unsafe characters
        name += "-" + hashlib.sha1(clip_id.encode()).hexdigest()[:8]
    return str(Path(out_dir).resolve() / method / f"{name}.wav")


def clip_seed(seed: int, clip_id: str) -> int:
    """A 32-bit seed that depends only on the run seed and the clip id."""
    digest = hashlib.sha256(f"{seed}/{clip_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


# === The four methods ===


def augment_waveform(
    samples: np.ndarray, clip: PlannedClip, settings: AugmentSettings
) -> np.ndarray:
    """Returns the augmented copy `clip` describes of mono float32 `samples`."""
    import audiomentations

    seed = clip_seed(settings.seed, clip.id)
    # audiomentations draws from the global `random` and `np.random` states.
    random.seed(seed)
    np.random.seed(seed)
    rng = np.random.default_rng(seed)
    rate = settings.sample_rate

    if clip.method == "speed":
        stretch = audiomentations.TimeStretch(
            min_rate=clip.speed_factor,
            max_rate=clip.speed_factor,
            leave_length_unchanged=False,
            p=1.0,
        )
        return stretch(samples, rate)
    if clip.method == "rir":
        if settings.rir_dir is None:
            wet = simulate_room(samples, rate, rng, settings.rt60_s)
        else:
            wet = _impulse_response(settings.rir_dir)(samples, rate)
        # Keep the original's level: convolution changes it by the room's gain.
        return wet * (_peak(samples) / max(_peak(wet), 1e-9))
    if clip.method == "noise":
        low, high = settings.snr_db
        if settings.noise_dir is None:
            noise = audiomentations.AddColorNoise(min_snr_db=low, max_snr_db=high, p=1.0)
        else:
            noise = _background_noise(settings.noise_dir, low, high)
        return noise(samples, rate)
    if clip.method == "pitch":
        semitones = pitch_shift_semitones(clip.id, settings)
        shift = audiomentations.PitchShift(min_semitones=semitones, max_semitones=semitones, p=1.0)
        return shift(samples, rate)
    raise InputError(
        f"unknown augmentation method '{clip.method}'; choose from {', '.join(METHODS)}"
    )


def load_recording(
    source: str | Path | bytes, sample_rate: int, name: str | None = None
) -> tuple[np.ndarray | None, tuple[str, str] | None]:
    """A recording as every augmentation tool reads it: (mono float32 samples at
    `sample_rate`, None), or (None, (reason, detail)) when it cannot be augmented
    (unreadable or silent). `source` is a path or the file's bytes; `name` names it."""
    name = name or (str(source) if isinstance(source, (str, Path)) else "the audio data")
    try:
        with warnings.catch_warnings():  # decoder fallbacks warn before the error we report
            warnings.simplefilter("ignore")
            samples = load_audio(source, sample_rate, name=name)
    except InputError as error:
        return None, ("unreadable audio", str(error))
    floor = AudioConfig.silence_floor_dbfs
    if 20 * np.log10(max(_peak(samples), 1e-12)) < floor:
        return None, ("silent audio", f"{name}: peak below {floor} dBFS")
    return samples, None


def augmented_wav(samples: np.ndarray, clip: PlannedClip, settings: AugmentSettings) -> bytes:
    """One augmented copy as 16-bit PCM WAV bytes, from the recording's samples
    (`load_recording`), the copy (its id and method) and the settings (its seed).

    The one function that makes a copy: this command writes the bytes to
    `clip.path`, `python -m bimer_tf.beam.shard` stores their samples in shards,
    so a clip's copy is the same byte for byte whichever tool made it.
    Raises ValueError for an empty or non-finite result.
    """
    augmented = augment_waveform(samples, clip, settings)
    if augmented.size == 0 or not np.all(np.isfinite(augmented)):
        raise ValueError("empty or non-finite output")
    return encode_pcm16(augmented, settings.sample_rate)


def pitch_shift_semitones(clip_id: str, settings: AugmentSettings) -> float:
    """The signed pitch shift that clip `clip_id` gets: a size in range, up or down."""
    rng = np.random.default_rng(clip_seed(settings.seed, clip_id))
    return float(rng.uniform(*settings.pitch_semitones) * rng.choice([-1.0, 1.0]))


def simulate_room(
    samples: np.ndarray,
    sample_rate: int,
    rng: np.random.Generator,
    rt60_s: tuple[float, float] = (0.2, 0.8),
) -> np.ndarray:
    """Plays `samples` in a random shoebox room and records it; same length, time aligned."""
    import pyroomacoustics as pra

    room_dim = rng.uniform([3.0, 3.0, 2.5], [10.0, 8.0, 4.0])
    rt60 = rng.uniform(*rt60_s)
    absorption, max_order = pra.inverse_sabine(rt60, room_dim)
    room = pra.ShoeBox(
        room_dim, fs=sample_rate, materials=pra.Material(absorption), max_order=max_order
    )
    # Source and microphone 0.5 m or more from the walls and 1 m or more apart.
    margin = 0.5
    source = rng.uniform(margin, room_dim - margin)
    for _ in range(100):
        microphone = rng.uniform(margin, room_dim - margin)
        if np.linalg.norm(microphone - source) >= 1.0:
            break
    room.add_source(source, signal=samples)
    room.add_microphone(microphone)
    room.simulate()
    # Start at the direct sound so the copy lines up with the original.
    onset = int(np.argmax(np.abs(room.rir[0][0])))
    recorded = room.mic_array.signals[0, onset : onset + len(samples)]
    return recorded.astype(np.float32)


def _peak(samples: np.ndarray) -> float:
    return float(np.max(np.abs(samples))) if samples.size else 0.0


# Built once per worker process: both scan their folder and cache files.
@functools.cache
def _impulse_response(rir_dir: str):
    from audiomentations import ApplyImpulseResponse

    return ApplyImpulseResponse(
        audio_files_in(rir_dir, "--rir-dir"), p=1.0, leave_length_unchanged=True
    )


@functools.cache
def _background_noise(noise_dir: str, min_snr_db: float, max_snr_db: float):
    from audiomentations import AddBackgroundNoise

    return AddBackgroundNoise(
        audio_files_in(noise_dir, "--noise-dir"),
        min_snr_db=min_snr_db,
        max_snr_db=max_snr_db,
        p=1.0,
    )


# === Running over a manifest ===


@dataclass(frozen=True)
class RowTask:
    """The clips to make of one recording: the unit of work of a worker process."""

    row_id: str
    audio: str
    clips: tuple[PlannedClip, ...]
    settings: AugmentSettings


@dataclass
class RowResult:
    row_id: str
    error: tuple[str, str] | None  # (reason, detail) when the recording cannot be used
    statuses: dict[str, str]  # clip id -> "written" | "reused" | "failed: <why>"
    input_seconds: float = 0.0


def augment_row(task: RowTask) -> RowResult:
    """Writes the missing clips of one recording."""
    statuses = {c.id: "reused" for c in task.clips if os.path.exists(c.path)}
    missing = [c for c in task.clips if c.id not in statuses]
    if not missing:
        return RowResult(task.row_id, None, statuses)
    rate = task.settings.sample_rate
    samples, problem = load_recording(task.audio, rate)
    if problem is not None:
        return RowResult(task.row_id, problem, statuses)
    for clip in missing:
        try:
            _write_complete(clip.path, augmented_wav(samples, clip, task.settings))
            statuses[clip.id] = "written"
        except Exception as error:  # one bad clip must not stop the corpus
            statuses[clip.id] = f"failed: {type(error).__name__}: {error}"
    return RowResult(task.row_id, None, statuses, input_seconds=len(samples) / rate)


def _write_complete(path: str, data: bytes) -> None:
    """Writes under a temporary name, then renames: a file appears only complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)


def _skip_reason(row: dict, classes) -> tuple[str, str] | None:
    if classes is not None and row["label"] not in classes:
        return "label not in --classes", row["label"]
    if row["augmentation"] is not None:
        return "already an augmented copy", f"augmentation={row['augmentation']}"
    if row["audio"] is None:
        return "text-only row (no audio)", ""
    if not os.path.isfile(row["audio"]):
        return "audio file not found", row["audio"]
    return None


def _settings_document(settings: AugmentSettings) -> dict:
    document = dataclasses.asdict(settings)
    for key in ("rir_dir", "noise_dir"):
        if document[key] is not None:
            document[key] = str(Path(document[key]).resolve())
    return json.loads(json.dumps(document))  # tuples -> lists, as read back from disk


def _claim_out_dir(out_dir: Path, settings: AugmentSettings) -> None:
    """Records the settings; refuses to mix clips made with other settings."""
    path = out_dir / "augment_settings.json"
    document = _settings_document(settings)
    if path.is_file():
        previous = json.loads(path.read_text(encoding="utf-8"))
        if previous != document:
            changed = sorted(k for k in document if previous.get(k) != document[k])
            raise InputError(
                f"{out_dir} holds clips made with other settings ({', '.join(changed)} differ; "
                f"see {path}); use a new --out folder or delete the old one"
            )
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1), encoding="utf-8")


def _run(tasks: list[RowTask], workers: int, progress: bool) -> tuple[dict[str, RowResult], int]:
    """Runs the tasks on `workers` processes; returns results by row id and the workers used."""
    # Recordings whose clips all exist are settled here without loading audio.
    results = {
        t.row_id: RowResult(t.row_id, None, {c.id: "reused" for c in t.clips})
        for t in tasks
        if all(os.path.exists(c.path) for c in t.clips)
    }
    todo = [t for t in tasks if t.row_id not in results]
    workers = max(1, min(workers, len(todo)))
    clip_count = {t.row_id: len(t.clips) for t in tasks}
    total = sum(clip_count.values())
    with tqdm(total=total, unit="clip", desc="augment", disable=not progress) as bar:
        bar.update(sum(clip_count[row_id] for row_id in results))
        for result in map_in_processes(augment_row, todo, workers, ordered=False):
            results[result.row_id] = result
            bar.update(clip_count[result.row_id])
    return results, workers


def augment_manifest(
    manifest: str | Path,
    out_dir: str | Path,
    methods=METHODS,
    *,
    classes=None,
    settings: AugmentSettings = AugmentSettings(),
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Augments every usable recording of `manifest` into `out_dir`; returns the report.

    Writes `out_dir/manifest.jsonl` (the augmented rows), `augment_report.json`
    and `augment_settings.json`. Only pass training data (see module docstring).
    """
    started = time.perf_counter()
    methods = tuple(methods)
    if not methods or any(m not in METHODS for m in methods):
        raise InputError(
            f"--methods {','.join(methods)}: choose one or more of {','.join(METHODS)}"
        )
    settings.check()
    workers = available_cpus() if workers is None else workers
    if workers < 1:
        raise InputError(f"--workers {workers}: must be 1 or more")
    rows = read_manifest(manifest)
    labels = sorted({row["label"] for row in rows})
    if classes is not None:
        classes = set(classes)
        absent = sorted(classes - set(labels))
        if absent:
            raise InputError(
                f"--classes {','.join(absent)}: not in {manifest} (labels: {', '.join(labels)})"
            )

    out_dir = Path(out_dir)
    skipped_rows, tasks = [], []
    for row in rows:
        reason = _skip_reason(row, classes)
        if reason:
            skipped_rows.append({"id": row["id"], "reason": reason[0], "detail": reason[1]})
        else:
            clips = tuple(plan_clips(row["id"], methods, settings, out_dir))
            tasks.append(RowTask(row["id"], row["audio"], clips, settings))
    if not tasks:
        reasons = dict(Counter(r["reason"] for r in skipped_rows))
        raise InputError(
            f"{manifest}: no recording to augment ({reasons}); pass a manifest with audio rows"
        )
    _claim_out_dir(out_dir, settings)
    results, workers = _run(tasks, workers, progress)

    by_id = {row["id"]: row for row in rows}
    augmented_rows = [
        {
            **by_id[t.row_id],
            "id": c.id,
            "audio": c.path,
            "origin": t.row_id,
            "augmentation": c.method,
        }
        for t in tasks
        for c in t.clips
        if results[t.row_id].statuses.get(c.id) in ("written", "reused")
    ]
    write_manifest(augmented_rows, out_dir / "manifest.jsonl")
    report = {
        "manifest": str(manifest),
        "out": str(out_dir),
        "methods": list(methods),
        "classes": sorted(classes) if classes is not None else None,
        "settings": _settings_document(settings),
        "workers": workers,
        **_count(len(rows), skipped_rows, tasks, results, methods),
        "seconds": round(time.perf_counter() - started, 3),
    }
    (out_dir / "augment_report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    return report


def _count(seen: int, skipped_rows, tasks, results, methods) -> dict:
    """Counts that add up: rows seen = augmented + skipped, clips = written + reused + failed."""
    skipped_rows = list(skipped_rows)
    per_method = {m: Counter(written=0, reused=0, failed=0) for m in methods}
    failed_clips = []
    for task in tasks:
        result = results[task.row_id]
        if result.error is not None:
            reason, detail = result.error
            skipped_rows.append({"id": task.row_id, "reason": reason, "detail": detail})
            continue
        for clip in task.clips:
            status = result.statuses[clip.id]
            if status.startswith("failed"):
                per_method[clip.method]["failed"] += 1
                failed_clips.append({"id": clip.id, "reason": status.removeprefix("failed: ")})
            else:
                per_method[clip.method][status] += 1
    clips = sum(per_method.values(), Counter())
    return {
        "rows": {
            "seen": seen,
            "augmented": seen - len(skipped_rows),
            "skipped": len(skipped_rows),
            "skipped_reasons": dict(Counter(r["reason"] for r in skipped_rows)),
        },
        "clips": {
            "planned": sum(clips.values()),
            **{k: clips[k] for k in ("written", "reused", "failed")},
        },
        "per_method": {m: dict(c) for m, c in per_method.items()},
        # Audio decoded in this run (rows whose clips all existed are not loaded).
        "input_seconds_processed": round(sum(r.input_seconds for r in results.values()), 3),
        "skipped_rows": skipped_rows,
        "failed_clips": failed_clips,
    }


# === Command line ===


def _floats(option: str, text: str | None, count: int | None = None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"{option} {text}: expected comma-separated numbers") from None
    if count is not None and len(values) != count:
        raise InputError(f"{option} {text}: expected {count} comma-separated numbers")
    return values


def add_settings_arguments(parser) -> None:
    """The `AugmentSettings` options, shared by every command that makes copies."""
    parser.add_argument("--seed", type=int, default=AugmentSettings().seed)
    parser.add_argument(
        "--speed-factors",
        default="0.75,1.25",
        help="tempo factors of `speed` (default %(default)s)",
    )
    parser.add_argument(
        "--rir-dir", help="folder of measured impulse responses (default: simulated rooms)"
    )
    parser.add_argument(
        "--rt60", default="0.2,0.8", help="RT60 range (s) of simulated rooms (default %(default)s)"
    )
    parser.add_argument(
        "--noise-dir", help="folder of noise recordings, e.g. MUSAN (default: coloured noise)"
    )
    parser.add_argument(
        "--snr-db", default="5,20", help="SNR range MIN,MAX of `noise` in dB (default %(default)s)"
    )
    parser.add_argument(
        "--pitch-semitones",
        default="1,2",
        help="size range MIN,MAX of the pitch shift; up or down is drawn (default %(default)s)",
    )


def settings_from_args(args) -> AugmentSettings:
    """The `AugmentSettings` of parsed `add_settings_arguments` options."""
    return AugmentSettings(
        seed=args.seed,
        speed_factors=_floats("--speed-factors", args.speed_factors),
        rir_dir=args.rir_dir,
        rt60_s=_floats("--rt60", args.rt60, 2),
        noise_dir=args.noise_dir,
        snr_db=_floats("--snr-db", args.snr_db, 2),
        pitch_semitones=_floats("--pitch-semitones", args.pitch_semitones, 2),
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bimer_tf.data.augment",
        description=(
            "Write augmented copies (speed, room reverberation, background noise, pitch) of "
            "the recordings in a manifest. Give it a TRAINING manifest, after the split "
            "(<fold>/train.jsonl from `python -m bimer_tf.data.split`): augmenting validation "
            "or test recordings leaks them into training. Reruns skip finished clips."
        ),
    )
    parser.add_argument(
        "--manifest", required=True, help="training manifest (JSON Lines) to augment"
    )
    parser.add_argument(
        "--out", required=True, help="output folder (WAVs, manifest.jsonl, augment_report.json)"
    )
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="comma-separated subset of %(default)s"
    )
    parser.add_argument("--classes", help="comma-separated labels to augment (default: all)")
    parser.add_argument("--workers", type=int, help="processes (default: all cores)")
    add_settings_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)

    settings = settings_from_args(args)
    report = augment_manifest(
        args.manifest,
        args.out,
        [m.strip() for m in args.methods.split(",") if m.strip()],
        classes=[c.strip() for c in args.classes.split(",")] if args.classes else None,
        settings=settings,
        workers=args.workers,
        progress=not args.no_progress,
    )
    rows, clips = report["rows"], report["clips"]
    print(
        f"rows: {rows['seen']} seen, {rows['augmented']} augmented, {rows['skipped']} skipped "
        f"{rows['skipped_reasons'] or ''}".rstrip()
    )
    print(
        f"clips: {clips['written']} written, {clips['reused']} reused, {clips['failed']} failed "
        f"in {report['seconds']:.1f} s with {report['workers']} workers"
    )
    for clip in report["failed_clips"][:5]:
        print(f"  failed {clip['id']}: {clip['reason']}")
    print(Path(args.out) / "manifest.jsonl")
    return 0


if __name__ == "__main__":
    from bimer_tf.cli import run_main

    raise SystemExit(run_main(main))
