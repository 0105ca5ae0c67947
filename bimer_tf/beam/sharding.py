"""The shard pipeline: a manifest (and a fold of its splits) -> augmented, sharded TFRecords.

What it writes is the format of `bimer_tf.data.shards` (the module's
encoder, shard names, split summaries and index writer), so a training run
cannot tell it from `python -m bimer_tf.data.shard`'s output. On top of
that, `--methods` adds BiMER's augmented copies to the training split only,
made by `bimer_tf.data.augment_audio.augmented_wav` with the clip ids and
per-clip seeds of `python -m bimer_tf.data.augment`: a copy's PCM16 samples
are those of the WAV file the single-machine tool writes for the same clip.

The pipeline:

    plan (here)      rows of each split in fold order, then the training copies;
                     every record gets a position; the plan is written as
                     OUT/beam_plan.jsonl and read back by the pipeline
    decode+augment   one element per recording (ParDo, spread by Reshuffle):
                     the original and its copies as serialized Examples, or
                     dead letters with their reason; an exception nobody
                     expected dead-letters the recording and its copies
                     (`with_exception_handling`), it never fails the pipeline
    shard            the split's record count and bytes give its shard count
                     (`plan_shards`); position ranges (`shard_ranges`) give
                     each record its shard; one worker writes each shard
    index            per split, the shards' summaries merged into its index
                     (`SplitSummary`, `write_index`); empty shards written

Dead letters go to OUT/dead_letter-NNNNN-of-MMMMM.jsonl, one JSON object per
record that was not written: `id`, `split`, `augmentation` (null for an
original) and `reason`. Per split, written + dead-lettered = the rows read
plus the copies planned; OUT/shard_report.json keeps the counts.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import io
import json
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bimer_tf.beam import files
from bimer_tf.beam.runner import describe, import_beam
from bimer_tf.config import AudioConfig
from bimer_tf.data import shards
from bimer_tf.data.augment_audio import (
    METHODS,
    AugmentSettings,
    PlannedClip,
    augmented_wav,
    load_recording,
    plan_clips,
)
from bimer_tf.errors import InputError

beam = import_beam()
from apache_beam.runners.runner import PipelineState  # noqa: E402

TRAIN_SPLIT = "train"  # the only split that gets augmented copies
PLAN_NAME = "beam_plan.jsonl"
DEAD_LETTER_PREFIX = "dead_letter"
DEAD_LETTER_SUFFIX = ".jsonl"
RECORDS, DEAD, CRASHED = "records", "dead_letter", "crashed"

# audiomentations draws from the global `random` and `np.random` states, so a
# process makes one copy at a time (runners that run DoFns in threads too).
_RANDOM_STATE = threading.Lock()


# === The plan ===


@dataclass(frozen=True)
class RowTask:
    """One recording: the unit of work of the decode+augment step."""

    split: str
    position: int  # the original's position in its split
    row: dict
    copies: tuple[tuple[int, PlannedClip], ...] = ()  # (position, clip), training split only

    def to_json(self) -> str:
        copies = [[p, c.id, c.method, c.speed_factor] for p, c in self.copies]
        # ASCII: a row may hold text that is not valid UTF-8 (a lone surrogate); its record fails, not the plan.
        return json.dumps({"split": self.split, "position": self.position, "row": self.row, "copies": copies})

    @classmethod
    def from_json(cls, line: str) -> RowTask:
        data = json.loads(line)
        copies = tuple((p, PlannedClip(i, m, None, f)) for p, i, m, f in data["copies"])
        return cls(data["split"], data["position"], data["row"], copies)

    def ids(self) -> list[tuple[str, str | None]]:
        """(id, augmentation) of every record of this task."""
        return [(self.row["id"], None)] + [(clip.id, clip.method) for _, clip in self.copies]


@dataclass
class Plan:
    tasks: list[RowTask]
    positions: dict[str, int]  # split -> records planned (rows + copies)
    rows: dict[str, int]  # split -> rows read
    copies: dict[str, int]  # split -> copies planned


def plan_tasks(split_rows: dict[str, list[dict]], methods, settings: AugmentSettings) -> Plan:
    """Positions of every record: a split's rows in order, then the training copies."""
    tasks, positions, rows, copies = [], {}, {}, {}
    for split, split_list in split_rows.items():
        shards.check_split_name(split)
        planned = {
            row["id"]: tuple(plan_clips(row["id"], methods, settings, None))
            if split == TRAIN_SPLIT and methods and row["audio"] is not None and row["augmentation"] is None
            else ()
            for row in split_list
        }
        ids = {row["id"] for row in split_list}
        clashes = [clip.id for clips in planned.values() for clip in clips if clip.id in ids]
        if clashes:
            raise InputError(
                f"split '{split}' already holds augmented copies ({', '.join(clashes[:3])}); shard it without "
                "--methods, or give the manifest without its copies"
            )
        position = len(split_list)
        for index, row in enumerate(split_list):
            clips = planned[row["id"]]
            tasks.append(RowTask(split, index, row, tuple(zip(range(position, position + len(clips)), clips))))
            position += len(clips)
        positions[split] = position
        rows[split] = len(split_list)
        copies[split] = position - len(split_list)
    return Plan(tasks, positions, rows, copies)


# === Decode and augment ===


@dataclass(frozen=True)
class Record:
    """One written row: where it goes and what the shard holds."""

    split: str
    position: int
    example: bytes  # a serialized tf.train.Example (`shards.encode_example`)
    row: dict  # its decoded form (`shards.canonical_row`), for the index


def dead_letter(split: str, record_id: str, augmentation: str | None, reason: str) -> dict:
    return {"id": record_id, "split": split, "augmentation": augmentation, "reason": reason}


def wav_pcm16(data: bytes) -> np.ndarray:
    """The int16 samples of a 16-bit PCM WAV, exactly as stored."""
    import soundfile

    samples, _ = soundfile.read(io.BytesIO(data), dtype="int16")
    return samples


def _record(split: str, position: int, row: dict, samples) -> Record:
    return Record(split, position, shards.encode_example(row, samples), shards.canonical_row(row, samples))


def _audio_source(path: str):
    """A local path as it is (the single-machine tools read the same), a remote file's bytes."""
    if files.is_remote(path):
        return files.read_bytes(path)
    return path


def make_records(task: RowTask, settings: AugmentSettings):
    """Yields (RECORDS, Record) or (DEAD, dead letter) for the original and every copy of a task."""
    row, split = task.row, task.split
    if row["audio"] is None:  # a text-only row: kept with empty audio, as the shard command keeps it
        try:
            yield RECORDS, _record(split, task.position, row, None)
        except InputError as error:
            yield DEAD, dead_letter(split, row["id"], None, f"unusable row: {error}")
        return
    path = row["audio"]
    found = files.exists(path) if files.is_remote(path) else os.path.isfile(path)
    if not found:
        for record_id, method in task.ids():
            yield DEAD, dead_letter(split, record_id, method, f"audio file not found: {path}")
        return
    samples, problem = load_recording(_audio_source(path), settings.sample_rate, name=path)
    if problem is not None:
        reason, detail = problem
        for record_id, method in task.ids():
            yield DEAD, dead_letter(split, record_id, method, f"{reason}: {detail}")
        return
    try:
        original = _record(split, task.position, row, shards.to_pcm16(samples))
    except InputError as error:  # the copies would carry the same fault
        for record_id, method in task.ids():
            yield DEAD, dead_letter(split, record_id, method, f"unusable row: {error}")
        return
    yield RECORDS, original
    for position, clip in task.copies:
        copy_row = {**row, "id": clip.id, "origin": row["id"], "augmentation": clip.method}
        try:
            with _RANDOM_STATE:
                wav = augmented_wav(samples, clip, settings)
            yield RECORDS, _record(split, position, copy_row, wav_pcm16(wav))
        except Exception as error:  # one bad copy must not stop the corpus (as in the augment tool)
            yield DEAD, dead_letter(split, clip.id, clip.method, f"augmentation failed: {type(error).__name__}: {error}")


@beam.typehints.with_output_types(Record, **{DEAD: dict})
class MakeRecords(beam.DoFn):
    """A plan line -> the task's records (main output) and dead letters (`DEAD`)."""

    def __init__(self, settings: AugmentSettings):
        self.settings = settings

    def process(self, line: str):
        for tag, value in make_records(RowTask.from_json(line), self.settings):
            yield value if tag == RECORDS else beam.pvalue.TaggedOutput(DEAD, value)


def crashed_letters(failure) -> list[dict]:
    """`with_exception_handling`'s (element, (type, repr, traceback)) -> a dead letter per record of the task."""
    line, (_, text, _) = failure  # text: repr() of the exception
    task = RowTask.from_json(line)
    reason = f"unexpected error: {text}"
    return [dead_letter(task.split, record_id, method, reason) for record_id, method in task.ids()]


# === Shards and indexes ===


def shard_count(split: str, totals: dict, shard_mb: float, min_shards: int) -> int:
    """A split's shard count from its written records (count, bytes), as `plan_shards` sizes them."""
    count, size = totals.get(split, (0, 0))
    return shards.plan_shards(size, count, shard_mb, min_shards)


@functools.lru_cache(maxsize=64)
def _starts(positions: int, count: int) -> list[int]:
    return [r.start for r in shards.shard_ranges(positions, count)]


def key_by_shard(record: Record, totals: dict, positions: dict, shard_mb: float, min_shards: int):
    count = shard_count(record.split, totals, shard_mb, min_shards)
    shard = bisect.bisect_right(_starts(positions[record.split], count), record.position) - 1
    return (record.split, shard, count), record


def write_records(path: str, examples) -> None:
    """A TFRecord file of `examples`; a local one appears only complete (written as .part, renamed)."""
    import tensorflow as tf

    target = path if shards.is_remote(path) else path + ".part"
    with tf.io.TFRecordWriter(target) as writer:
        for example in examples:
            writer.write(example)
    if target != path:
        os.replace(target, path)


@dataclass
class ShardResult:
    shard: int
    rows: int
    summary: shards.SplitSummary


class WriteShard(beam.DoFn):
    """((split, shard, count), records) -> the shard file; yields (split, ShardResult)."""

    def __init__(self, out: str):
        self.out = out

    def process(self, element):
        (split, shard, count), records = element
        records = sorted(records, key=lambda record: record.position)
        summary = shards.SplitSummary()
        for record in records:
            summary.add(record.row)
        write_records(shards.join(self.out, shards.shard_name(split, shard, count)), (r.example for r in records))
        yield split, ShardResult(shard, len(records), summary)


class FinishSplit(beam.DoFn):
    """A split name -> its index (every shard file exists, the empty ones too)."""

    def __init__(self, out: str, shard_mb: float, min_shards: int, source_manifest: str):
        self.out, self.shard_mb, self.min_shards = out, shard_mb, min_shards
        self.source_manifest = source_manifest

    def process(self, split: str, results, totals):
        count = shard_count(split, totals, self.shard_mb, self.min_shards)
        names = shards.shard_names(split, count)
        rows = [None] * count
        summary = shards.SplitSummary()
        for result in results[split]:  # a multimap side input: no results -> empty
            rows[result.shard] = result.rows
            summary = summary.merge(result.summary)
        for shard, name in enumerate(names):
            if rows[shard] is None:
                write_records(shards.join(self.out, name), [])
                rows[shard] = 0
        if not shards.is_remote(self.out):  # shards of an earlier run with another count
            keep = set(names)
            for stale in Path(self.out).glob(shards.shard_glob(split)):
                if stale.name not in keep:
                    stale.unlink()
        listing = [{"file": name, "rows": n} for name, n in zip(names, rows)]
        index = summary.index(split, listing, self.source_manifest)
        shards.write_index(self.out, index)
        yield split, index["rows"]


def _add_pairs(pairs):
    count = size = 0
    for c, s in pairs:
        count += c
        size += s
    return count, size


def build_pipeline(pipeline, plan_path: str, plan: Plan, out: str, settings, shard_mb, min_shards, source):
    """The transforms, from the plan file to the shards, indexes and dead letters."""
    made = (
        pipeline
        | "Read plan" >> beam.io.ReadFromText(plan_path)
        | "Spread" >> beam.Reshuffle()
        | "Decode and augment"
        >> beam.ParDo(MakeRecords(settings)).with_outputs(DEAD, main=RECORDS).with_exception_handling(
            dead_letter_tag=CRASHED
        )
    )
    records = made[RECORDS]
    crashed = made[CRASHED] | "Crashed" >> beam.FlatMap(crashed_letters)
    (
        (made[DEAD], crashed)
        | "Dead letters" >> beam.Flatten()
        | "As JSON" >> beam.Map(lambda letter: json.dumps(letter, ensure_ascii=False))
        | "Write dead letters"
        >> beam.io.WriteToText(shards.join(out, DEAD_LETTER_PREFIX), file_name_suffix=DEAD_LETTER_SUFFIX)
    )
    totals = beam.pvalue.AsDict(
        records
        | "Sizes" >> beam.Map(lambda record: (record.split, (1, len(record.example))))
        | "Per split" >> beam.CombinePerKey(_add_pairs)
    )
    written = (
        records
        | "Key by shard" >> beam.Map(key_by_shard, totals, plan.positions, shard_mb, min_shards)
        | "Group shards" >> beam.GroupByKey()
        | "Write shards" >> beam.ParDo(WriteShard(out))
    )
    return (
        pipeline
        | "Splits" >> beam.Create(sorted(plan.positions))
        | "Write indexes"
        >> beam.ParDo(FinishSplit(out, shard_mb, min_shards, source), beam.pvalue.AsMultiMap(written), totals)
    )


# === The run ===


def _settings_document(settings: AugmentSettings) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(settings)))


def dead_letter_files(out: str) -> list[str]:
    return files.match(shards.join(out, f"{DEAD_LETTER_PREFIX}-*-of-*{DEAD_LETTER_SUFFIX}"))


def read_dead_letters(out: str) -> list[dict]:
    letters = []
    for path in dead_letter_files(out):
        for line in files.read_bytes(path).decode("utf-8").splitlines():
            if line.strip():
                letters.append(json.loads(line))
    return letters


def _unaccounted(out: str, split: str, plan: Plan, letters: list[dict]) -> str:
    """Which planned records are neither in the shards nor dead-lettered (for the error message)."""
    planned = {i for task in plan.tasks if task.split == split for i, _ in task.ids()}
    seen = {row["id"] for row, _ in shards.read_split(out, split)} | {letter["id"] for letter in letters}
    missing, extra = sorted(planned - seen), sorted(seen - planned)
    files_found = dead_letter_files(out)
    return f"missing {len(missing)} (e.g. {missing[:8]}), unplanned {extra[:8]}; dead-letter files {files_found}"


def _reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0]


def shard_with_beam(
    manifest: str,
    out: str,
    options,
    *,
    splits: str | None = None,
    fold: str | None = None,
    split: str = shards.ALL_SPLIT,
    methods=(),
    settings: AugmentSettings = AugmentSettings(),
    shard_mb: float = shards.DEFAULT_SHARD_MB,
    min_shards: int = 1,
) -> dict:
    """Runs the pipeline; returns (and writes as OUT/shard_report.json) the report."""
    started = time.perf_counter()
    methods = tuple(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InputError(f"--methods {','.join(methods)}: choose from {','.join(METHODS)}")
    if methods:
        settings.check()
        if settings.sample_rate != shards.SAMPLE_RATE:
            raise InputError(f"shards hold {shards.SAMPLE_RATE} Hz audio, not {settings.sample_rate} Hz")
    shards.plan_shards(0, 1, shard_mb, min_shards)  # checks the two options
    if splits is None:
        shards.check_split_name(split)
        if methods and split != TRAIN_SPLIT:
            raise InputError(
                f"--methods adds copies to the training split only: give --splits (a fold's train split is "
                f"augmented), or name a training manifest's split with --split {TRAIN_SPLIT}"
            )
        protocol = fold_name = None
        split_rows = {split: files.read_manifest_rows(manifest)}
    else:
        protocol, fold_name, split_rows = files.read_fold(manifest, splits, fold)
    plan = plan_tasks(split_rows, methods, settings)
    out = out if files.is_remote(out) else str(Path(out).resolve())
    source = manifest if files.is_remote(manifest) else str(Path(manifest).resolve())
    plan_path = shards.join(out, PLAN_NAME)
    if not files.is_remote(out):
        Path(out).mkdir(parents=True, exist_ok=True)
    files.write_bytes(plan_path, "".join(task.to_json() + "\n" for task in plan.tasks).encode("utf-8"))
    files.delete(dead_letter_files(out))  # an earlier run's, whatever its file count

    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, plan_path, plan, out, settings, shard_mb, min_shards, source)
    state = pipeline.run().wait_until_finish()
    if state not in (PipelineState.DONE, None):
        raise RuntimeError(f"the Beam pipeline ended in state {state}")

    letters = read_dead_letters(out)
    report = {
        "manifest": source,
        "splits_file": None if splits is None else splits if files.is_remote(splits) else str(Path(splits).resolve()),
        "protocol": protocol,
        "fold": fold_name,
        "shard_mb": shard_mb,
        "min_shards": min_shards,
        "sample_rate": shards.SAMPLE_RATE,
        "silence_floor_dbfs": AudioConfig.silence_floor_dbfs,
        "methods": list(methods),
        "augment_settings": _settings_document(settings) if methods else None,
        "beam": describe(options),
        "plan": plan_path,
        "dead_letter_files": dead_letter_files(out),
        "splits": {},
    }
    for name in plan.positions:
        index = shards.read_index(out, name)
        skipped = [letter for letter in letters if letter["split"] == name]
        counts = {
            "read": plan.rows[name],
            "copies_planned": plan.copies[name],
            "written": index["rows"],
            "written_copies": plan.copies[name] - sum(1 for s in skipped if s["augmentation"] is not None),
            "skipped": len(skipped),
            "skipped_reasons": dict(Counter(_reason_kind(s["reason"]) for s in skipped)),
            "shards": len(index["shards"]),
            "per_class": index["per_class"],
            "skipped_items": sorted(skipped, key=lambda s: s["id"]),
        }
        if counts["written"] + counts["skipped"] != counts["read"] + counts["copies_planned"]:
            raise AssertionError(  # a broken invariant, not bad input
                f"{name}: {counts['written']} written + {counts['skipped']} dead-lettered != "
                f"{counts['read']} read + {counts['copies_planned']} copies planned; "
                f"{_unaccounted(out, name, plan, skipped)}"
            )
        report["splits"][name] = counts
    report["seconds"] = round(time.perf_counter() - started, 3)
    shards.write_report(out, report)
    return report
