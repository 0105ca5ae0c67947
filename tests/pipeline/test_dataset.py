"""tf.data input pipeline: row checks, dataset structure, SpecAugment, shuffling."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import tensorflow as tf
from conftest import synth_tone

from bimer_tf.config import AudioConfig, SpecAugmentConfig
from bimer_tf.data.manifest import make_row
from bimer_tf.pipeline.dataset import build_dataset, make_spec_augment, validate_rows
from bimer_tf.errors import InputError
from bimer_tf.pipeline.frontend import AudioFrontend
from bimer_tf.layers.spec_augment import SpecAugment

SR = 16000
LABELS = ["neutral", "angry", "sad", "happy"]
SEQUENCE_LENGTH = 16
# One clip per label, so that an example is known by its label after shuffling.
GOOD = [
    ("calm", "sad", 0.4, "this is not a good day"),
    ("shout", "angry", 0.9, "why you"),
    ("chat", "neutral", 0.6, "it is a day"),
    ("laugh", "happy", 0.3, "i am so happy!"),
]


def _clip(seconds, seed):
    """A tone over faint noise (energy in every mel band), with silent margins to trim."""
    noise = 0.01 * np.random.default_rng(seed).standard_normal(int(seconds * SR))
    voiced = synth_tone(seconds, freq=150.0 + 50 * seed) + noise.astype(np.float32)
    margin = np.zeros(1600, np.float32)
    return np.concatenate([margin, voiced, margin])


@pytest.fixture(scope="module")
def frontend():
    return AudioFrontend(AudioConfig(max_duration_s=0.5))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Good rows, and bad rows keyed by the reason they must be skipped for."""
    folder = tmp_path_factory.mktemp("corpus")

    def wav(name, samples, sample_rate=SR, subtype="PCM_16"):
        path = folder / f"{name}.wav"
        soundfile.write(path, samples, sample_rate, subtype=subtype, format="WAV")
        return str(path)

    good = [
        make_row(name, label, audio=wav(name, _clip(seconds, seed)), text=text, corpus="test")
        for seed, (name, label, seconds, text) in enumerate(GOOD)
    ]
    (folder / "corrupt.wav").write_bytes(b"RIFF but not really a wave file" * 8)
    (folder / "empty.wav").write_bytes(b"")
    tone = synth_tone(0.3)
    bad_audio = {
        "corrupt": (str(folder / "corrupt.wav"), "not a readable audio file"),
        "empty": (str(folder / "empty.wav"), "is empty (0 bytes)"),
        "no_samples": (wav("no_samples", np.zeros(0, np.float32)), "has no samples"),
        "silent": (wav("silent", np.zeros(4000, np.float32)), "is silent"),
        "rate_44k": (wav("rate_44k", synth_tone(0.3, 44100), 44100), "44100 Hz, expected 16000 Hz"),
        "float": (wav("float", tone, subtype="FLOAT"), "FLOAT WAV"),
        "missing": (str(folder / "missing.wav"), "audio file not found"),
    }
    bad = {
        name: (make_row(name, "sad", audio=path, text="i am sad", corpus="test"), reason)
        for name, (path, reason) in bad_audio.items()
    }
    good_audio = good[0]["audio"]
    bad["bored"] = (
        make_row("bored", "bored", audio=good_audio, text="what a day", corpus="test"),
        "label 'bored' is not in data.labels",
    )
    bad["no_text"] = (make_row("no_text", "sad", audio=good_audio, corpus="test"), "no transcript")
    bad["blank_text"] = (
        make_row("blank_text", "sad", audio=good_audio, text="  ", corpus="test"),
        "no transcript",
    )
    return good, bad


@pytest.fixture(scope="module")
def text_preprocessor(tiny_bert_preset):
    import keras_hub

    return keras_hub.models.BertTextClassifierPreprocessor.from_preset(
        tiny_bert_preset, sequence_length=SEQUENCE_LENGTH
    )


def _reference_log_mel(frontend, rows):
    """The front end run directly on the files, in row order."""
    data = [open(row["audio"], "rb").read() for row in rows]
    return frontend.features(tf.constant(data)).numpy()


def _collect(dataset):
    """All batches of a dataset, concatenated: (features dict, labels)."""
    features, labels = {}, []
    for batch_features, batch_labels in dataset:
        for key, value in batch_features.items():
            features.setdefault(key, []).append(value.numpy())
        labels.append(batch_labels.numpy())
    return {k: np.concatenate(v) for k, v in features.items()}, np.concatenate(labels)


# --- validate_rows ------------------------------------------------------------


def test_validate_rows_skips_each_bad_row_with_its_reason(corpus, frontend):
    good, bad = corpus
    rows = [good[0], *(row for row, _ in bad.values()), *good[1:]]
    check = validate_rows(rows, LABELS, frontend, needs_text=True)
    assert [row["id"] for row in check.kept] == [row["id"] for row in good]
    reasons = {item["id"]: item["reason"] for item in check.skipped}
    assert sorted(reasons) == sorted(bad)
    for name, (row, reason) in bad.items():
        assert reason in reasons[name], (name, reasons[name])
        if row["audio"] is not None and name not in ("bored", "no_text", "blank_text"):
            assert row["audio"] in reasons[name]  # audio problems name the file

    summary = check.summary()
    assert summary["seen"] == len(rows)
    assert summary["kept"] + summary["skipped"] == summary["seen"]
    assert (summary["kept"], summary["skipped"]) == (len(good), len(bad))
    assert summary["kept_per_class"] == {label: 1 for label in LABELS}
    assert summary["skipped_items"] == check.skipped


def test_validate_rows_checks_only_what_the_model_uses(corpus, frontend):
    good, bad = corpus
    rows = [row for row, _ in bad.values()]
    # speech only: a missing transcript does not matter
    speech = validate_rows(rows, LABELS, frontend, needs_text=False)
    assert sorted(r["id"] for r in speech.kept) == ["blank_text", "no_text"]
    # text only: broken audio does not matter
    text = validate_rows(rows, LABELS, None, needs_text=True)
    assert sorted(r["id"] for r in text.skipped) == ["blank_text", "bored", "no_text"]
    assert len(text.kept) + len(text.skipped) == len(rows)
    # a row without audio for a speech model
    no_audio = make_row("text_only", "sad", text="so sad", corpus="test")
    check = validate_rows([no_audio], LABELS, frontend, needs_text=False)
    assert check.skipped == [{"id": "text_only", "reason": "no audio"}]


def test_every_kept_row_loads(corpus, frontend, tmp_path):
    good, _ = corpus
    one_sided = np.zeros((8000, 2), np.float32)
    one_sided[:, 0] = 10 ** (-57 / 20) * np.sin(2 * np.pi * 220 * np.arange(8000) / SR)
    path = tmp_path / "one_sided.wav"
    soundfile.write(path, one_sided, SR, subtype="PCM_16")
    rows = [*good, make_row("one_sided", "sad", audio=str(path), corpus="test")]
    kept = validate_rows(rows, LABELS, frontend, needs_text=False).kept
    _, label_ids = _collect(build_dataset(kept, LABELS, frontend, batch_size=4, training=False))
    assert len(label_ids) == len(kept)


# --- build_dataset --------------------------------------------------------------


def test_bimodal_dataset_structure(corpus, frontend, text_preprocessor):
    good, _ = corpus
    labels = ["happy", "sad", "angry", "neutral"]  # ids follow this order, not the rows'
    dataset = build_dataset(good, labels, frontend, text_preprocessor, batch_size=3, training=False)
    spec_features, spec_label = dataset.element_spec
    assert set(spec_features) == {"log_mel", "token_ids", "segment_ids", "padding_mask"}
    assert spec_features["log_mel"].shape.as_list() == [None, frontend.num_frames, 128, 1]
    assert spec_features["token_ids"].shape.as_list() == [None, SEQUENCE_LENGTH]
    assert spec_label.dtype == tf.int32

    batches = list(dataset)
    assert [len(label) for _, label in batches] == [3, 1]
    features, label_ids = _collect(dataset)
    assert features["log_mel"].shape == (4, 1 + 8000 // 512, 128, 1)
    np.testing.assert_array_equal(label_ids, [labels.index(row["label"]) for row in good])
    np.testing.assert_allclose(features["log_mel"], _reference_log_mel(frontend, good), atol=1e-6)
    tokens = text_preprocessor(tf.constant([row["text"] for row in good]))
    for key in ("token_ids", "segment_ids", "padding_mask"):
        np.testing.assert_array_equal(features[key], tokens[key].numpy())


def test_speech_only_dataset(corpus, frontend):
    good, _ = corpus
    dataset = build_dataset(good, LABELS, frontend, None, batch_size=2, training=False)
    features, label_ids = _collect(dataset)
    assert set(features) == {"log_mel"}
    np.testing.assert_array_equal(label_ids, [LABELS.index(row["label"]) for row in good])
    assert label_ids.dtype == np.int32


def test_text_only_dataset(corpus, text_preprocessor):
    good, _ = corpus
    rows = [dict(row, audio=None) for row in good]
    dataset = build_dataset(rows, LABELS, None, text_preprocessor, batch_size=4, training=False)
    features, label_ids = _collect(dataset)
    assert set(features) == {"token_ids", "segment_ids", "padding_mask"}
    assert features["token_ids"].shape == (4, SEQUENCE_LENGTH)
    np.testing.assert_array_equal(label_ids, [LABELS.index(row["label"]) for row in good])
    # token ids of real words, not only [CLS] [SEP] and padding
    assert np.all(features["padding_mask"].sum(axis=1) > 2)


def test_no_rows_is_an_input_error(frontend):
    with pytest.raises(InputError, match="no usable rows"):
        build_dataset([], LABELS, frontend, batch_size=2, training=True)


# --- Training versus evaluation --------------------------------------------------


def test_training_masks_frequency_bands_evaluation_never(corpus, frontend):
    good, _ = corpus
    reference = _reference_log_mel(frontend, good)
    by_label = {LABELS.index(row["label"]): image for row, image in zip(good, reference)}
    spec_augment = make_spec_augment(SpecAugmentConfig(), seed=0)

    for _ in range(2):  # evaluation: exactly the front end's features, every pass
        evaluation = build_dataset(
            good, LABELS, frontend, batch_size=4, training=False, spec_augment=spec_augment
        )
        features, _ = _collect(evaluation)
        np.testing.assert_allclose(features["log_mel"], reference, atol=1e-6)

    training = build_dataset(
        good, LABELS, frontend, batch_size=4, training=True, spec_augment=spec_augment, seed=0
    )
    for _ in range(2):
        features, label_ids = _collect(training)
        for image, label_id in zip(features["log_mel"], label_ids):
            clean = by_label[label_id]
            changed = ~np.isclose(image, clean, atol=1e-6)
            assert changed.any()
            # what changed is one band of 15, 20 or 25 mels across all frames, set to 0
            bands = np.flatnonzero(changed.any(axis=(0, 2)))
            band = np.s_[bands[0] : bands[-1] + 1]
            assert bands[-1] - bands[0] + 1 in (15, 20, 25)
            assert np.all(image[:, band] == 0.0)
            np.testing.assert_array_equal(np.delete(image, band, axis=1), np.delete(clean, band, axis=1))


def test_shuffling_only_in_training(corpus, frontend):
    good, _ = corpus
    in_order = [LABELS.index(row["label"]) for row in good]
    evaluation = build_dataset(good, LABELS, frontend, batch_size=2, training=False)
    assert [list(_collect(evaluation)[1]) for _ in range(2)] == [in_order, in_order]

    training = build_dataset(good, LABELS, frontend, batch_size=2, training=True, seed=3)
    orders = [list(_collect(training)[1]) for _ in range(4)]
    assert all(sorted(order) == sorted(in_order) for order in orders)
    assert any(order != in_order for order in orders)
    assert len({tuple(order) for order in orders}) > 1  # reshuffled every epoch


def test_make_spec_augment():
    assert make_spec_augment(SpecAugmentConfig(enabled=False)) is None
    config = SpecAugmentConfig(
        freq_mask_widths=[5, 9], num_freq_masks=2, time_mask_max_frames=4, num_time_masks=1
    )
    layer = make_spec_augment(config, seed=7)
    assert isinstance(layer, SpecAugment)
    assert (layer.freq_mask_widths, layer.num_freq_masks) == ([5, 9], 2)
    assert (layer.time_mask_max_frames, layer.num_time_masks, layer.seed) == (4, 1, 7)
