"""Reading sharded TFRecords gives what reading the manifest gives.

The front end sees the same samples (a PCM16 WAV and its shard decode to
the same floats), so evaluation datasets match element for element, and a
training run from shards matches one from the manifest: the tiny corpus is
written as one shard per split, so the rows reach the seeded shuffle in the
manifest's order and both runs see the same batches. (With several shards
the training order differs by design: shard files are shuffled and
interleaved.) Under multi-worker training `AutoShardPolicy.FILE` gives
worker i the files i, i + workers, ... as `run.assign_shards` reports.
"""

import json

import numpy as np
import pytest

from conftest import TINY_LABELS, tiny_overrides


@pytest.fixture(scope="module")
def tiny_shards(tiny_corpus, tmp_path_factory):
    """The tiny corpus's fold as shards: one per split, and four per split."""
    from bimer_tf.data.shard import shard_manifest

    root = tmp_path_factory.mktemp("tiny_shards")
    splits = tiny_corpus.parent / "splits.json"
    one = shard_manifest(tiny_corpus, root / "one", splits=splits, workers=1, progress=False)
    four = shard_manifest(tiny_corpus, root / "four", splits=splits, workers=1, min_shards=4, progress=False)
    return root / "one", root / "four", one, four


def small_config(tiny_corpus, preset, *extra):
    from bimer_tf.config import load_config

    return load_config(model="bimer", overrides=tiny_overrides(tiny_corpus, preset) + list(extra))


def test_the_shard_tool_skips_only_the_corrupt_clip(tiny_shards):
    _, _, one, four = tiny_shards
    train = one["splits"]["train"]
    assert (train["read"], train["written"], train["skipped"]) == (19, 18, 1)
    assert train["skipped_items"][0]["id"] == "bad_corrupt"
    assert four["splits"]["train"]["shards"] == 4 and four["splits"]["val"]["shards"] == 4


def test_a_shard_feeds_the_front_end_the_samples_of_its_wav(tiny_corpus, tiny_shards):
    import tensorflow as tf

    from bimer_tf.config import AudioConfig
    from bimer_tf.data import shards
    from bimer_tf.data.manifest import read_manifest
    from bimer_tf.pipeline.frontend import AudioFrontend

    frontend = AudioFrontend(AudioConfig(max_duration_s=1.0, n_mels=32, n_fft=256, hop_length=128))
    by_id = {row["id"]: row for row in read_manifest(tiny_corpus)}
    for row, samples in list(shards.read_split(tiny_shards[0], "val"))[:3]:
        wav = tf.io.read_file(by_id[row["id"]]["audio"])
        decoded = tf.audio.decode_wav(wav)[0][:, 0]
        from_shard = shards.pcm16_waveform(tf.constant(samples.astype("<i2").tobytes()))
        np.testing.assert_array_equal(decoded.numpy(), from_shard.numpy())
        np.testing.assert_array_equal(
            frontend.waveform(wav).numpy(), frontend.samples_waveform(from_shard).numpy()
        )


def test_the_index_counts_what_validate_rows_keeps(tiny_corpus, tiny_shards):
    from bimer_tf.config import AudioConfig
    from bimer_tf.data import shards
    from bimer_tf.pipeline.dataset import check_shard_split, validate_rows
    from bimer_tf.pipeline.frontend import AudioFrontend
    from bimer_tf.config import load_config
    from bimer_tf.training.run_data import resolve_data

    rows = resolve_data(load_config(model="bimer", overrides=[f"data.manifest={tiny_corpus}"])).splits["train"]
    # The shard tool left out the unreadable clip whatever the model; the
    # manifest path keeps its row for a text-only model.
    rows = [row for row in rows if row["id"] != "bad_corrupt"]
    index = shards.read_index(tiny_shards[0], "train")
    frontend = AudioFrontend(AudioConfig())
    for speech, text in ((True, True), (True, False), (False, True)):
        check = validate_rows(rows, TINY_LABELS, frontend if speech else None, text)
        from_index = check_shard_split(tiny_shards[0], index, TINY_LABELS, frontend if speech else None, text)
        expected = check.summary()["kept_per_class"]
        assert from_index.kept_per_class == expected
        assert from_index.kept == len(check.kept)
    summary = check_shard_split(tiny_shards[0], index, TINY_LABELS, frontend, True).summary()
    assert summary["seen"] == 18 and summary["kept"] == 16
    assert summary["skipped_reasons"] == {
        "label 'bored' is not in data.labels": 1,
        "no transcript (text is empty or null)": 1,
    }


def test_evaluation_datasets_match_element_for_element(tiny_corpus, tiny_bert_preset, tiny_shards):
    from bimer_tf.data import shards
    from bimer_tf.models import build_text_preprocessor
    from bimer_tf.pipeline.dataset import (
        build_dataset,
        build_shard_dataset,
        check_shard_split,
        validate_rows,
    )
    from bimer_tf.pipeline.frontend import build_speech_frontend
    from bimer_tf.training.run_data import resolve_data

    config = small_config(tiny_corpus, tiny_bert_preset)
    frontend, preprocessor = build_speech_frontend(config), build_text_preprocessor(config)
    rows = resolve_data(config).splits["train"]
    kept = validate_rows(rows, TINY_LABELS, frontend, True).kept
    for folder in tiny_shards[:2]:
        index = shards.read_index(folder, "train")
        check = check_shard_split(folder, index, TINY_LABELS, frontend, True)
        common = dict(batch_size=4, training=False)
        manifest_batches = list(build_dataset(kept, TINY_LABELS, frontend, preprocessor, cache=False, **common))
        shard_batches = list(
            build_shard_dataset(check.files, TINY_LABELS, frontend, preprocessor, count=check.kept, **common)
        )
        assert len(manifest_batches) == len(shard_batches) == 4
        for (mf, ml), (sf, sl) in zip(manifest_batches, shard_batches):
            np.testing.assert_array_equal(ml.numpy(), sl.numpy())
            assert set(mf) == set(sf)
            for key in mf:
                np.testing.assert_array_equal(mf[key].numpy(), sf[key].numpy())


def test_a_label_map_relabels_shard_rows(tiny_corpus, tiny_shards):
    from bimer_tf.data import shards
    from bimer_tf.pipeline.dataset import build_shard_dataset

    files = shards.shard_paths(tiny_shards[0], shards.read_index(tiny_shards[0], "val"))
    labels = ["calm", "angry"]  # neutral -> calm; sad and happy are left out
    dataset = build_shard_dataset(
        files, labels, None, lambda text: {"text": text}, count=4, batch_size=8, training=False,
        label_map={"neutral": "calm"},
    )
    ids = np.concatenate([label.numpy() for _, label in dataset])
    assert sorted(ids.tolist()) == [0, 0, 1, 1]


def test_file_sharding_gives_each_worker_its_own_files(tiny_shards, tmp_path):
    """The training pipeline under `AutoShardPolicy.FILE` (as tf.distribute applies
    it on worker i of 2): worker i reads files i and i + 2, every epoch."""
    from collections import Counter

    import tensorflow as tf
    from tensorflow.python.data.experimental.ops.distribute import _AutoShardDataset

    from bimer_tf.data import shards
    from bimer_tf.pipeline.dataset import build_shard_dataset

    folder = tiny_shards[1]
    files = shards.shard_paths(folder, shards.read_index(folder, "train"))
    usable = lambda row: row["label"] in TINY_LABELS and row["text"]  # noqa: E731
    labels_in = [
        Counter(TINY_LABELS.index(row["label"]) for row, _ in shards.read_shard(path) if usable(row))
        for path in files
    ]
    assert len(set(map(frozenset, (c.items() for c in labels_in)))) == 4  # each file's labels tell it apart
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.FILE
    for worker in range(2):
        dataset = build_shard_dataset(
            files, TINY_LABELS, None, lambda text: {"text": text}, count=16, batch_size=4,
            training=True, seed=1, cache=str(tmp_path / f"cache{worker}"),
        )
        sharded = _AutoShardDataset(dataset.with_options(options), 2, worker, 2)
        expected = sum((labels_in[i] for i in range(worker, len(files), 2)), Counter())
        for _ in range(2):  # the same files every epoch (the second from the cache)
            got = Counter(np.concatenate([label.numpy() for _, label in sharded]).tolist())
            assert got == expected


@pytest.fixture(scope="module")
def two_runs(tiny_corpus, tiny_bert_preset, tiny_shards, tmp_path_factory):
    """One epoch of the tiny BiMER model from the manifest and from its shards."""
    from bimer_tf.training import train

    root = tmp_path_factory.mktemp("two_runs")
    # SpecAugment is off: its masks are not reproducible from one run to the
    # next even from the manifest (a stateful random generator in a parallel
    # tf.data map), and this compares two runs.
    extra = ["trainer.epochs=1", "spec_augment.enabled=false", "trainer.class_weight=balanced"]
    manifest_run = train(small_config(tiny_corpus, tiny_bert_preset, *extra), root / "manifest")
    shard_run = train(
        small_config(
            tiny_corpus, tiny_bert_preset, *extra, "data.format=tfrecord", f"data.shards={tiny_shards[0]}"
        ),
        root / "shards",
    )
    return manifest_run, shard_run


def test_training_from_shards_matches_training_from_the_manifest(two_runs):
    import keras

    from bimer_tf.training.run_dir import BEST_CHECKPOINT

    manifest_run, shard_run = two_runs
    assert not (shard_run / "cache").exists()  # the on-disk cache goes with the run
    manifest_eval = json.loads((manifest_run / "eval.json").read_text())
    shard_eval = json.loads((shard_run / "eval.json").read_text())
    for key in ("ua", "wa", "macro_f1", "confusion", "best_val_ua", "n", "split", "protocol"):
        assert manifest_eval[key] == shard_eval[key], key
    manifest_report = json.loads((manifest_run / "data_report.json").read_text())
    shard_report = json.loads((shard_run / "data_report.json").read_text())
    assert manifest_report["class_weight"] == shard_report["class_weight"] == {label: 1.0 for label in TINY_LABELS}
    for split in ("train", "val", "test"):
        assert manifest_report[split]["kept_per_class"] == shard_report[split]["kept_per_class"]
    assert shard_report["train"]["source"] == "tfrecord" and shard_report["train"]["shards"] == 1
    first = keras.saving.load_model(manifest_run / BEST_CHECKPOINT)
    second = keras.saving.load_model(shard_run / BEST_CHECKPOINT)
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_one_checkpoint_evaluates_the_same_on_the_manifest_and_its_shards(two_runs, tiny_corpus, tiny_shards, tmp_path):
    """`python -m bimer_tf.evaluate` on the test split: --manifest, --shards, and the
    run's own config (data.format=tfrecord) give one result."""
    from bimer_tf.evaluation.evaluate import main

    manifest_run, shard_run = two_runs
    main(["--run", str(manifest_run), "--manifest", str(tiny_corpus), "--split", "test", "--output", str(tmp_path / "m")])
    main(["--run", str(manifest_run), "--shards", str(tiny_shards[1]), "--split", "test", "--output", str(tmp_path / "s")])
    main(["--run", str(shard_run), "--split", "test", "--output", str(tmp_path / "c")])
    results = [json.loads((tmp_path / name / "eval.json").read_text()) for name in "msc"]
    for key in ("ua", "wa", "macro_f1", "confusion", "n", "split", "protocol"):
        assert results[0][key] == results[1][key], key
    assert results[1]["manifest_rows"] == {"seen": 8, "kept": 8, "unmapped": 0, "skipped": 0}
    assert results[2]["shards"] == str(tiny_shards[0]) and results[2]["n"] == 8


def test_evaluation_counts_and_relabels_shard_rows(two_runs, tiny_shards, tmp_path):
    from bimer_tf.evaluation.evaluate import main

    manifest_run, _ = two_runs
    main(
        ["--run", str(manifest_run), "--shards", str(tiny_shards[0]), "--split", "train",
         "--label-map", "bored=sad", "--output", str(tmp_path / "e")]
    )
    report = json.loads((tmp_path / "e" / "eval.json").read_text())
    # 18 rows in the shards: 'bored' now counts as sad, one row has no transcript.
    assert report["manifest_rows"] == {"seen": 18, "kept": 17, "unmapped": 0, "skipped": 1}
    assert report["n"] == 17
    assert report["skipped_reasons"] == {"no transcript (text is empty or null)": 1}


def test_an_export_is_fed_each_shard_clip_as_a_wav_of_its_samples(tiny_corpus, tiny_shards):
    """ServedModel on shards feeds `audio_wav` the same samples as on the manifest."""
    import tensorflow as tf

    from bimer_tf.config import ExperimentConfig
    from bimer_tf.data import shards
    from bimer_tf.evaluation.evaluate import ServedModel, select_rows
    from bimer_tf.pipeline.dataset import check_shard_split

    @tf.function
    def serve(audio_wav, text):
        def one(wav):
            samples = tf.audio.decode_wav(wav)[0][:, 0]
            return tf.stack([tf.reduce_mean(samples), tf.math.reduce_std(samples), tf.reduce_max(samples), 0.0])

        logits = tf.map_fn(one, audio_wav, fn_output_signature=tf.float32) * 100.0
        logits += tf.cast(tf.strings.length(text), tf.float32)[:, None] * 0.01
        return {"probabilities": tf.nn.softmax(logits)}

    class FakeExport(ServedModel):
        def __init__(self):
            self.labels, self.config, self._serve = list(TINY_LABELS), ExperimentConfig(), serve

        def modalities(self):
            return True, True

    model = FakeExport()
    rows = select_rows(tiny_corpus, split="test").rows
    index = shards.read_index(tiny_shards[1], "test")
    check = check_shard_split(tiny_shards[1], index, TINY_LABELS, None, True)
    expected = model.predict(rows, 3)
    got = model.predict_shards(check, {}, 3)
    np.testing.assert_array_equal(expected[0], got[0])
    np.testing.assert_array_equal(expected[1], got[1])
