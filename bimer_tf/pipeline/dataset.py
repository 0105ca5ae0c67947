"""tf.data input pipeline: manifest rows -> batches of (features, label_id).

    read file -> decode/trim/crop (per example, parallel) -> log-mel
    -> tokenize -> cache -> shuffle -> batch -> SpecAugment (training only)
    -> prefetch

`build_shard_dataset` is the same from sharded TFRecords (the audio already
decoded to PCM16; `bimer_tf.data.shards`), checked from the shards' index
(`check_shard_split`) and cached on disk instead of in memory.

The audio functions are those of `bimer_tf.pipeline.frontend`, the same code the
serving graph runs. Rows are checked in Python first (`validate_rows`): a bad
file or label is reported and left out instead of failing the run mid-epoch.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import tensorflow as tf

from bimer_tf.audio.wav import check_wav
from bimer_tf.data import shards
from bimer_tf.errors import InputError
from bimer_tf.pipeline.frontend import AudioFrontend
from bimer_tf.layers.spec_augment import SpecAugment

AUTOTUNE = tf.data.AUTOTUNE


@dataclass
class RowCheck:
    """Rows kept for a split and the ones left out, with reasons."""

    kept: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "seen": len(self.kept) + len(self.skipped),
            "kept": len(self.kept),
            "skipped": len(self.skipped),
            "kept_per_class": dict(Counter(row["label"] for row in self.kept)),
            "skipped_items": self.skipped,
        }


def validate_rows(
    rows: list[dict],
    labels: list[str],
    frontend: AudioFrontend | None,
    needs_text: bool,
) -> RowCheck:
    """Keeps rows the model can use; each other row is recorded with its reason."""
    check = RowCheck()
    label_set = set(labels)
    for row in rows:
        reason = None
        if row["label"] not in label_set:
            reason = f"label '{row['label']}' is not in data.labels {labels}"
        elif needs_text and not (row.get("text") or "").strip():
            reason = "no transcript (text is empty or null)"
        elif frontend is not None:
            if row.get("audio") is None:
                reason = "no audio"
            else:
                try:
                    check_wav(
                        row["audio"],
                        frontend.config.sample_rate,
                        frontend.config.silence_floor_dbfs,
                    )
                except InputError as error:
                    reason = str(error)
        if reason is None:
            check.kept.append(row)
        else:
            check.skipped.append({"id": row["id"], "reason": reason})
    return check


def build_dataset(
    rows: list[dict],
    labels: list[str],
    frontend: AudioFrontend | None,
    text_preprocessor=None,
    *,
    batch_size: int,
    training: bool,
    spec_augment: SpecAugment | None = None,
    shuffle_buffer: int = 2048,
    cache: bool = True,
    seed: int | None = None,
    targets=None,
) -> tf.data.Dataset:
    """A batched, prefetched dataset of ({speech key, "token_ids", ...}, label_id),
    or of (features, target distribution) when `targets` (rows x classes) is given.

    The speech features sit under the front end's `input_key` (`"log_mel"`,
    or `"whisper_features"`). `frontend=None` gives a text-only dataset and
    `text_preprocessor=None` a speech-only one. Rows must have passed
    `validate_rows`.

    SpecAugment masks training batches after the cache for spectrogram
    front ends. A front end whose features come out of a frozen encoder
    (Whisper) masks its log-mel before the encoder instead, which is only
    possible per example and without the cache.
    """
    if not rows:
        raise InputError("no usable rows for this split; check the manifest and the data report")
    if targets is None:
        columns = {"label": tf.constant([labels.index(row["label"]) for row in rows], tf.int32)}
    else:
        columns = {"label": tf.constant(targets, tf.float32)}
    if frontend is not None:
        columns["audio"] = tf.constant([row["audio"] for row in rows])
    if text_preprocessor is not None:
        columns["text"] = tf.constant([row["text"] for row in rows])
    augment_batches, augment_examples = _spec_augment_plan(frontend, spec_augment, training, bool(cache))
    features = _features_function(frontend, text_preprocessor, spec_augment if augment_examples else None)

    def load(example):
        waveform = None
        if frontend is not None:
            waveform = frontend.waveform(tf.io.read_file(example["audio"]))
        return features(waveform, example.get("text")), example["label"]

    dataset = tf.data.Dataset.from_tensor_slices(columns)
    dataset = dataset.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    if cache:
        dataset = dataset.cache()
    return _shuffle_batch(
        dataset,
        frontend,
        spec_augment if augment_batches else None,
        training=training,
        count=len(rows),
        shuffle_buffer=shuffle_buffer,
        batch_size=batch_size,
        seed=seed,
    )


def _spec_augment_plan(frontend, spec_augment, training: bool, cache: bool) -> tuple[bool, bool]:
    """(mask batches after the cache, mask each example's log-mel before the encoder)."""
    wants_augment = training and spec_augment is not None and frontend is not None
    augment_batches = wants_augment and frontend.augments_batches
    augment_examples = wants_augment and not frontend.augments_batches and not cache
    if wants_augment and not (augment_batches or augment_examples):
        print(
            "note: SpecAugment is off: this front end's features come out of a frozen encoder "
            "and are cached (data.cache=true); set data.cache=false to mask its log-mel "
            "before the encoder on every epoch"
        )
    return augment_batches, augment_examples


def _features_function(frontend, text_preprocessor, example_augment):
    """(waveform or None, text or None) -> the features dict of one example."""

    def features(waveform, text):
        result = {}
        if frontend is not None:
            result[frontend.input_key] = frontend.example_features(waveform, example_augment)
        if text_preprocessor is not None:
            tokens = text_preprocessor(text[tf.newaxis])
            result.update({key: value[0] for key, value in tokens.items()})
        return result

    return features


def _shuffle_batch(
    dataset, frontend, batch_augment, *, training, count, shuffle_buffer, batch_size, seed, repeat=False
) -> tf.data.Dataset:
    """The part after the cache: shuffle (training), repeat, batch, SpecAugment on
    batches, prefetch."""
    if training:
        dataset = dataset.shuffle(min(shuffle_buffer, count), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(batch_size)
    if batch_augment is not None:

        def augment(features, label):
            features = dict(features)
            key = frontend.input_key
            features[key] = batch_augment(features[key], training=True)
            return features, label

        dataset = dataset.map(augment, num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)


# === Sharded TFRecords ===


@dataclass
class ShardCheck:
    """A split in sharded TFRecords, counted from its index (no shard is read):
    the rows a run keeps per class and why the others are left out."""

    split: str
    files: list[str]  # every shard file of the split, in shard order
    seen: int
    kept_per_class: dict
    skipped_reasons: dict
    rows_sha256: str
    worker_files: list[str] | None = None  # under multi-worker: the shards this worker reads

    @property
    def kept(self) -> int:
        return sum(self.kept_per_class.values())

    def summary(self) -> dict:
        summary = {
            "seen": self.seen,
            "kept": self.kept,
            "skipped": self.seen - self.kept,
            "kept_per_class": dict(self.kept_per_class),
            # Shards are counted from their index: reasons with counts, no ids.
            "skipped_items": [],
            "skipped_reasons": dict(self.skipped_reasons),
            "source": "tfrecord",
            "shards": len(self.files),
            "rows_sha256": self.rows_sha256,
        }
        if self.worker_files is not None:
            summary["worker_shards"] = len(self.worker_files)
            summary["worker_shard_files"] = [path.rsplit("/", 1)[-1] for path in self.worker_files]
        return summary


def check_shard_split(
    directory,
    index: dict,
    labels: list[str],
    frontend: AudioFrontend | None,
    needs_text: bool,
) -> ShardCheck:
    """`validate_rows` for a split in shards, from its index: rows whose label is
    not in `labels`, that lack the audio the model hears or the transcript it
    reads are left out. The shard command already decoded every clip and left
    out silent ones (below its --silence-floor-dbfs); the pipeline drops, in
    the graph, any clip quieter than `audio.silence_floor_dbfs` too."""
    if frontend is not None and frontend.config.sample_rate != shards.SAMPLE_RATE:
        raise InputError(
            f"shards hold {shards.SAMPLE_RATE} Hz audio but audio.sample_rate is "
            f"{frontend.config.sample_rate}; train from the manifest (data.format=manifest) "
            f"or set audio.sample_rate={shards.SAMPLE_RATE}"
        )
    label_set = set(labels)
    kept, skipped = Counter(), Counter()
    for label, kinds in index["per_class_inputs"].items():
        if label not in label_set:
            skipped[f"label '{label}' is not in data.labels"] += index["per_class"][label]
            continue
        for kind, count in kinds.items():
            if not count:
                continue
            has_audio, has_text = kind in ("audio_text", "audio"), kind in ("audio_text", "text")
            if frontend is not None and not has_audio:
                skipped["no audio"] += count
            elif needs_text and not has_text:
                skipped["no transcript (text is empty or null)"] += count
            else:
                kept[label] += count
    return ShardCheck(
        split=index["split"],
        files=shards.shard_paths(directory, index),
        seen=index["rows"],
        kept_per_class={label: kept[label] for label in labels if kept[label]},
        skipped_reasons=dict(skipped),
        rows_sha256=index["rows_sha256"],
    )


def build_shard_dataset(
    files: list[str],
    labels: list[str],
    frontend: AudioFrontend | None,
    text_preprocessor=None,
    *,
    count: int,
    batch_size: int,
    training: bool,
    spec_augment: SpecAugment | None = None,
    shuffle_buffer: int = 2048,
    cache: str | None = None,
    seed: int | None = None,
    label_map: dict[str, str] | None = None,
    repeat: bool = False,
) -> tf.data.Dataset:
    """`build_dataset` for sharded TFRecords (`bimer_tf.data.shards`).

        shard files -> (training: shuffled) -> interleave of TFRecordDatasets
        -> parse -> keep usable rows -> PCM16 -> the front end's waveform
        (trim, crop/pad) and features -> tokenize -> cache on disk -> shuffle
        -> batch -> SpecAugment (training only) -> prefetch

    The same front end and tokenizer as the manifest path, fed the decoded
    samples instead of WAV bytes. `count` is the split's usable rows (from
    `check_shard_split`), which sizes the shuffle buffer as the manifest path
    does. Without training the rows come in shard order, each shard in
    order, so a split reads back in the order the shard command wrote it.
    The usable-row filter of `check_shard_split` runs in the graph (label in
    `labels`; audio present and not quieter than `audio.silence_floor_dbfs`
    for speech models; a transcript for text models). `cache` is a file
    prefix for `Dataset.cache(filename)`: the features are cached on disk,
    not in memory, or not at all when None. `label_map` ({other: ours})
    relabels rows before the label check, as evaluation's `--label-map` does.
    `repeat` makes it endless (before batching, so every batch is full): what
    multi-worker training needs when each worker reads its own shards, which
    hold different numbers of rows (the run then sets the steps per epoch).
    """
    if not files or count < 1:
        raise InputError("no usable rows for this split; check the shards' index and the data report")
    spec = shards.parse_features()
    label_table = tf.constant(labels)
    relabel = None
    if label_map:
        relabel = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(list(label_map), list(label_map.values())), ""
        )
    floor = 10.0 ** (frontend.config.silence_floor_dbfs / 20.0) if frontend is not None else 0.0

    def parse(record):
        example = tf.io.parse_single_example(record, spec)
        label = example["label"]
        if relabel is not None:
            mapped = relabel.lookup(label)
            label = tf.where(tf.equal(mapped, ""), label, mapped)
        match = tf.equal(label_table, label)
        usable = tf.reduce_any(match)
        parsed = {"label": tf.cast(tf.argmax(tf.cast(match, tf.int32)), tf.int32)}
        if frontend is not None:
            samples = shards.pcm16_waveform(example["audio"])
            loud = tf.reduce_max(tf.abs(tf.concat([samples, [0.0]], 0))) >= floor
            usable = usable & (tf.size(samples) > 0) & loud
            parsed["samples"] = samples
        if text_preprocessor is not None:
            usable = usable & (tf.strings.length(tf.strings.strip(example["text"])) > 0)
            parsed["text"] = example["text"]
        parsed["usable"] = usable
        return parsed

    augment_batches, augment_examples = _spec_augment_plan(frontend, spec_augment, training, cache is not None)
    features = _features_function(frontend, text_preprocessor, spec_augment if augment_examples else None)

    def load(example):
        waveform = None
        if frontend is not None:
            waveform = frontend.samples_waveform(example["samples"])
        return features(waveform, example.get("text")), example["label"]

    dataset = tf.data.Dataset.list_files(list(files), shuffle=False)
    if training:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if training:
        dataset = dataset.interleave(
            tf.data.TFRecordDataset,
            cycle_length=min(len(files), 8),
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        )
    else:  # one file after the other: the order the shard command wrote
        dataset = dataset.interleave(tf.data.TFRecordDataset, cycle_length=1)
    dataset = dataset.map(parse, num_parallel_calls=AUTOTUNE, deterministic=True)
    dataset = dataset.filter(lambda example: example["usable"])
    dataset = dataset.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    if cache is not None:
        dataset = dataset.cache(cache)
    return _shuffle_batch(
        dataset,
        frontend,
        spec_augment if augment_batches else None,
        training=training,
        count=count,
        shuffle_buffer=shuffle_buffer,
        batch_size=batch_size,
        seed=seed,
        repeat=repeat,
    )


def make_spec_augment(config, seed=None) -> SpecAugment | None:
    """The SpecAugment layer of a `SpecAugmentConfig`, or None when disabled."""
    if not config.enabled:
        return None
    return SpecAugment(
        freq_mask_widths=config.freq_mask_widths,
        num_freq_masks=config.num_freq_masks,
        time_mask_max_frames=config.time_mask_max_frames,
        num_time_masks=config.num_time_masks,
        seed=seed,
        name="spec_augment",
    )
