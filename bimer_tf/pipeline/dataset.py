"""tf.data input pipeline: manifest rows -> batches of (features, label_id).

    read file -> decode/trim/crop (per example, parallel) -> log-mel
    -> tokenize -> cache -> shuffle -> batch -> SpecAugment (training only)
    -> prefetch

The audio functions are those of `bimer_tf.pipeline.frontend`, the same code the
serving graph runs. Rows are checked in Python first (`validate_rows`): a bad
file or label is reported and left out instead of failing the run mid-epoch.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import tensorflow as tf

from bimer_tf.audio.wav import check_wav
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
) -> tf.data.Dataset:
    """A batched, prefetched dataset of ({speech key, "token_ids", ...}, label_id).

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
    label_ids = [labels.index(row["label"]) for row in rows]
    columns = {"label": tf.constant(label_ids, tf.int32)}
    if frontend is not None:
        columns["audio"] = tf.constant([row["audio"] for row in rows])
    if text_preprocessor is not None:
        columns["text"] = tf.constant([row["text"] for row in rows])

    wants_augment = training and spec_augment is not None and frontend is not None
    augment_batches = wants_augment and frontend.augments_batches
    augment_examples = wants_augment and not frontend.augments_batches and not cache
    if wants_augment and not (augment_batches or augment_examples):
        print(
            "note: SpecAugment is off: this front end's features come out of a frozen encoder "
            "and are cached (data.cache=true); set data.cache=false to mask its log-mel "
            "before the encoder on every epoch"
        )

    def load(example):
        features = {}
        if frontend is not None:
            waveform = frontend.waveform(tf.io.read_file(example["audio"]))
            features[frontend.input_key] = frontend.example_features(
                waveform, spec_augment if augment_examples else None
            )
        if text_preprocessor is not None:
            tokens = text_preprocessor(example["text"][tf.newaxis])
            features.update({key: value[0] for key, value in tokens.items()})
        return features, example["label"]

    dataset = tf.data.Dataset.from_tensor_slices(columns)
    dataset = dataset.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    if cache:
        dataset = dataset.cache()
    if training:
        dataset = dataset.shuffle(
            min(shuffle_buffer, len(rows)), seed=seed, reshuffle_each_iteration=True
        )
    dataset = dataset.batch(batch_size)
    if augment_batches:

        def augment(features, label):
            features = dict(features)
            key = frontend.input_key
            features[key] = spec_augment(features[key], training=True)
            return features, label

        dataset = dataset.map(augment, num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)


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
