"""`trainer.teachers`: finished runs' probabilities mixed into the training
targets (knowledge distillation), and the teachers that would leak the
validation or test rows into training refused."""

import json
import shutil

import numpy as np
import pytest

from conftest import TINY_LABELS, tiny_overrides

from bimer_tf.config import load_config, save_config
from bimer_tf.data.manifest import Fold, read_manifest, read_splits, write_manifest, write_splits
from bimer_tf.errors import InputError
from bimer_tf.pipeline.dataset import build_dataset, validate_rows
from bimer_tf.pipeline.frontend import build_speech_frontend
from bimer_tf.training.distill import mixed_targets, soften, teacher_targets
from bimer_tf.training.run_data import resolve_data

# What the two hand-made teachers answer, whatever they hear.
TEACHER_P = np.array([0.1, 0.6, 0.2, 0.1])
TEACHER_Q = np.array([0.4, 0.2, 0.2, 0.2])


def student_config(tiny_corpus, preset, *overrides):
    return load_config(model="ser_resnet_crnn_at", overrides=[*tiny_overrides(tiny_corpus, preset), *overrides])


@pytest.fixture(scope="module")
def constant_checkpoints(tiny_corpus, tiny_bert_preset, tmp_path_factory):
    """Best checkpoints of the tiny speech model whose output layer ignores its
    input: a zero kernel and log-probabilities as the bias."""
    import keras

    from bimer_tf.models import build_model

    folder = tmp_path_factory.mktemp("teachers")
    paths = {}
    for name, probabilities in (("p", TEACHER_P), ("q", TEACHER_Q)):
        keras.utils.set_random_seed(0)
        model = build_model(student_config(tiny_corpus, tiny_bert_preset))
        kernel, bias = model.output_dense.get_weights()
        model.output_dense.set_weights([np.zeros_like(kernel), np.log(probabilities).astype(bias.dtype)])
        paths[name] = folder / f"{name}.keras"
        model.save(paths[name])
    return paths


def make_teacher(run_dir, checkpoint, config):
    """A finished run directory: the checkpoint as its best, `config` as its config."""
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(checkpoint, run_dir / "checkpoints" / "best.keras")
    save_config(config, run_dir / "config.yaml")
    return run_dir


def kept_training_rows(config):
    data = resolve_data(config)
    frontend = build_speech_frontend(config)
    return validate_rows(data.splits["train"], config.data.labels, frontend, False).kept, data


def teacher_with_fold(tiny_corpus, preset, tmp_path, checkpoint, train=None, val=None, rows=None, name="teacher"):
    """A teacher trained on other splits of the tiny corpus (or of `rows`)."""
    manifest = tiny_corpus
    if rows is not None:
        manifest = write_manifest(rows, tmp_path / f"{name}_corpus" / "manifest.jsonl")
    _, (fold,) = read_splits(tiny_corpus.parent / "splits.json")
    fold = Fold(fold.name, train or fold.train, val or fold.val, [])
    splits = write_splits(rows or read_manifest(tiny_corpus), "speaker-holdout", [fold], tmp_path / f"{name}_splits")
    config = student_config(tiny_corpus, preset, f"data.manifest={manifest}", f"data.splits={splits}")
    return make_teacher(tmp_path / name, checkpoint, config)


def test_soften_and_mixed_targets():
    p = np.array([[0.1, 0.6, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25]])
    np.testing.assert_array_equal(soften(p, 1.0), p)
    softer, sharper = soften(p, 4.0), soften(p, 0.25)
    np.testing.assert_allclose(softer.sum(axis=1), 1.0, rtol=1e-6)
    assert softer[0].max() < 0.6 < sharper[0].max()  # T > 1 spreads the mass, T < 1 gathers it
    np.testing.assert_allclose(softer[1], 0.25)  # a uniform answer stays uniform
    np.testing.assert_allclose(soften(p, 2.0)[0], np.sqrt(p[0]) / np.sqrt(p[0]).sum(), rtol=1e-6)

    targets = mixed_targets(np.array([2, 0]), p, 0.25, 1.0)
    np.testing.assert_allclose(targets, [[0.025, 0.15, 0.80, 0.025], [0.8125, 0.0625, 0.0625, 0.0625]], rtol=1e-6)
    np.testing.assert_allclose(mixed_targets(np.array([2, 0]), p, 1.0, 1.0), p, rtol=1e-6)


def test_the_teachers_mean_probabilities_become_the_training_targets(tiny_corpus, tiny_bert_preset, tmp_path, constant_checkpoints):
    base = student_config(tiny_corpus, tiny_bert_preset)
    teachers = [
        str(make_teacher(tmp_path / name, constant_checkpoints[name], base)) for name in ("p", "q")
    ]
    config = student_config(
        tiny_corpus, tiny_bert_preset,
        f"trainer.teachers=[{teachers[0]},{teachers[1]}]", "trainer.teacher_weight=0.25", "trainer.teacher_temperature=2",
    )
    rows, data = kept_training_rows(config)
    # 4 classes x 2 training speakers x 2 takes, and the row without a transcript (a speech
    # model does not read it); the corrupt WAV and the unknown label are not kept.
    assert len(rows) == 17

    distilled = teacher_targets(config, rows, data)
    mean = (TEACHER_P + TEACHER_Q) / 2
    np.testing.assert_allclose(distilled.teacher_probabilities, np.tile(mean, (17, 1)), rtol=1e-5)
    label_ids = np.array([TINY_LABELS.index(row["label"]) for row in rows])
    expected = 0.75 * np.eye(4)[label_ids] + 0.25 * soften(mean[None], 2.0)
    np.testing.assert_allclose(distilled.targets, expected, rtol=1e-5)

    # The input pipeline carries each row's target, in row order.
    dataset = build_dataset(
        rows, TINY_LABELS, build_speech_frontend(config), batch_size=4, training=False, cache=False,
        targets=distilled.targets,
    )
    carried = np.concatenate([targets.numpy() for _, targets in dataset])
    np.testing.assert_allclose(carried, distilled.targets, rtol=1e-6)


def test_a_distilled_run_trains_on_the_targets_and_records_its_teachers(
    tiny_corpus, tiny_bert_preset, tmp_path, constant_checkpoints, monkeypatch
):
    from bimer_tf.training import run, train

    built = []

    def recording_build_dataset(rows, *args, **kwargs):
        built.append((len(rows), kwargs["training"], kwargs.get("targets")))
        return build_dataset(rows, *args, **kwargs)

    monkeypatch.setattr(run, "build_dataset", recording_build_dataset)
    teacher = make_teacher(tmp_path / "teacher", constant_checkpoints["p"], student_config(tiny_corpus, tiny_bert_preset))
    config = student_config(tiny_corpus, tiny_bert_preset, f"trainer.teachers=[{teacher}]", "trainer.epochs=1")
    run_dir = train(config, tmp_path / "student")

    # Training reads the mixed targets, validation the labels as distributions, the test split its label ids.
    (n_train, training, train_targets), (n_val, _, val_targets), (n_test, _, test_targets) = built
    assert training and n_train == 17 and n_val == n_test == 8
    np.testing.assert_allclose(train_targets.sum(axis=1), 1.0, rtol=1e-6)
    assert np.all(train_targets[:, 1] >= 0.3)  # half of the teacher's 0.6 for "angry", on every row
    np.testing.assert_array_equal(val_targets.max(axis=1), 1.0)
    assert test_targets is None

    report = json.loads((run_dir / "data_report.json").read_text())["teachers"]
    assert report["runs"] == [str(teacher)] and report["rows"] == "all" and report["teachers_per_row"] == [1, 1]
    assert report["train_ua"] == 0.25  # it answers "angry" to everything
    assert report["mean_top_probability"] == pytest.approx(0.6)
    # Half the label, half the teacher's probability of it.
    rows, _ = kept_training_rows(config)
    on_label = np.mean([TEACHER_P[TINY_LABELS.index(row["label"])] for row in rows])
    assert report["mean_target_on_label"] == pytest.approx(0.5 + 0.5 * on_label, abs=1e-4)
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["split"] == "heldout/test" and 0.0 <= result["ua"] <= 1.0
    best = json.loads((run_dir / "checkpoints" / "best.json").read_text())
    assert 0.0 <= best["val_ua"] <= 1.0


def test_a_fold_field_names_each_folds_teacher(tiny_corpus, tiny_bert_preset, tmp_path, constant_checkpoints):
    make_teacher(tmp_path / "heldout", constant_checkpoints["q"], student_config(tiny_corpus, tiny_bert_preset))
    pattern = str(tmp_path / "{fold}")
    config = student_config(tiny_corpus, tiny_bert_preset, f"trainer.teachers=['{pattern}']", "data.fold=heldout")
    rows, data = kept_training_rows(config)
    np.testing.assert_allclose(teacher_targets(config, rows, data).teacher_probabilities[0], TEACHER_Q, rtol=1e-5)

    unset = student_config(tiny_corpus, tiny_bert_preset, f"trainer.teachers=['{pattern}']")
    with pytest.raises(InputError, match=r"\{fold\} field: set data.fold"):
        teacher_targets(unset, rows, data)


def test_unseen_rows_take_the_answers_of_the_teachers_that_left_them_out(
    tiny_corpus, tiny_bert_preset, tmp_path, constant_checkpoints
):
    """Two members, each trained on one of the two training speakers: each
    speaker's rows get the other member's answer (cross-fitted targets)."""
    corpus = read_manifest(tiny_corpus)
    of = {speaker: [row["id"] for row in corpus if row["speaker"] == speaker] for speaker in ("s1", "s2")}
    members = [
        teacher_with_fold(tiny_corpus, tiny_bert_preset, tmp_path, constant_checkpoints[checkpoint], train=of[speaker], name=speaker)
        for checkpoint, speaker in (("p", "s1"), ("q", "s2"))
    ]
    teachers = f"trainer.teachers=[{members[0]},{members[1]}]"
    config = student_config(tiny_corpus, tiny_bert_preset, teachers, "trainer.teacher_rows=unseen")
    rows, data = kept_training_rows(config)
    distilled = teacher_targets(config, rows, data)
    expected = [TEACHER_Q if row["speaker"] == "s1" else TEACHER_P for row in rows]
    np.testing.assert_allclose(distilled.teacher_probabilities, expected, rtol=1e-5)
    np.testing.assert_array_equal(distilled.teachers_per_row, 1)

    # By default every teacher answers every row.
    every = teacher_targets(student_config(tiny_corpus, tiny_bert_preset, teachers), rows, data)
    np.testing.assert_allclose(every.teacher_probabilities, np.tile((TEACHER_P + TEACHER_Q) / 2, (len(rows), 1)), rtol=1e-5)

    # A row every teacher trained on has no answer to learn from (speaker s1's 8 clips and
    # its row without a transcript).
    whole = teacher_with_fold(
        tiny_corpus, tiny_bert_preset, tmp_path, constant_checkpoints["q"], train=of["s1"] + of["s2"], name="whole"
    )
    config = student_config(tiny_corpus, tiny_bert_preset, f"trainer.teachers=[{members[0]},{whole}]", "trainer.teacher_rows=unseen")
    with pytest.raises(InputError, match=r"every teacher trained on 9 training row\(s\) \(e.g. s1_"):
        teacher_targets(config, rows, data)


def split_ids(tiny_corpus):
    _, (fold,) = read_splits(tiny_corpus.parent / "splits.json")
    return fold


@pytest.mark.parametrize(
    "learned, message",
    [
        ("train", r"trained on 8 clip\(s\) of this run's test split"),
        ("val", r"chose its checkpoint on 8 clip\(s\) of this run's test split"),
    ],
)
def test_a_teacher_that_learned_from_the_test_clips_is_refused(
    tiny_corpus, tiny_bert_preset, tmp_path, constant_checkpoints, learned, message
):
    fold = split_ids(tiny_corpus)
    splits = {"train": fold.train + fold.test} if learned == "train" else {"val": fold.test}
    teacher = teacher_with_fold(tiny_corpus, tiny_bert_preset, tmp_path, constant_checkpoints["p"], **splits)
    config = student_config(tiny_corpus, tiny_bert_preset, f"trainer.teachers=[{teacher}]")
    rows, data = kept_training_rows(config)
    with pytest.raises(InputError, match=message):
        teacher_targets(config, rows, data)


def test_a_teacher_that_heard_a_held_out_speaker_is_refused(tiny_corpus, tiny_bert_preset, tmp_path, constant_checkpoints):
    """Other recordings of a validation speaker: no clip is shared, the speaker is."""
    corpus = read_manifest(tiny_corpus)
    fold = split_ids(tiny_corpus)
    others = [
        {**row, "id": "other-" + row["id"], "origin": None} for row in corpus if row["speaker"] == "s3"
    ]
    teacher = teacher_with_fold(
        tiny_corpus, tiny_bert_preset, tmp_path, constant_checkpoints["p"],
        train=fold.train + [row["id"] for row in others], rows=corpus + others,
    )
    config = student_config(tiny_corpus, tiny_bert_preset, f"trainer.teachers=[{teacher}]")
    rows, data = kept_training_rows(config)
    with pytest.raises(InputError, match="trained on speaker\\(s\\) s3, whom this run keeps out of training for its val split"):
        teacher_targets(config, rows, data)


def test_teachers_of_other_classes_or_named_twice_are_refused(tiny_corpus, tiny_bert_preset, tmp_path, constant_checkpoints):
    reordered = student_config(tiny_corpus, tiny_bert_preset, "data.labels=[angry,neutral,sad,happy]")
    teacher = make_teacher(tmp_path / "teacher", constant_checkpoints["p"], reordered)
    config = student_config(tiny_corpus, tiny_bert_preset, f"trainer.teachers=[{teacher}]")
    rows, data = kept_training_rows(config)
    with pytest.raises(InputError, match="same classes, same order"):
        teacher_targets(config, rows, data)

    twice = student_config(tiny_corpus, tiny_bert_preset, f"trainer.teachers=[{teacher},{teacher}]")
    with pytest.raises(InputError, match="names a run twice"):
        teacher_targets(twice, rows, data)
    missing = student_config(tiny_corpus, tiny_bert_preset, f"trainer.teachers=[{tmp_path / 'nothing'}]")
    with pytest.raises(InputError, match="is not a finished run"):
        teacher_targets(missing, rows, data)


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.teacher_weight=0", r"teacher_weight must lie in \(0, 1\]"),
        ("trainer.teacher_weight=1.5", r"teacher_weight must lie in \(0, 1\]"),
        ("trainer.teacher_temperature=0", r"teacher_temperature must lie in \(0, 100\]"),
        ("trainer.teacher_rows=some", "trainer.teacher_rows must be 'all' or 'unseen'"),
    ],
)
def test_teacher_settings_are_checked(override, message):
    with pytest.raises(InputError, match=message):
        load_config(overrides=[override])
