"""Every `train.py --model NAME`: trains, evaluates and exports (tiny sizes, tiny corpus).

One fast test per model name; the demo-corpus runs of the real configs are
`slow` (opt-in with `-m slow`).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from bimer_tf.config import MODEL_NAMES, load_config
from bimer_tf.serving.export import export_run
from bimer_tf.serving.export_dir import METADATA_FILE, load_saved_model

from conftest import REPO_ROOT, TINY_LABELS, tiny_overrides

WHISPER_TINY = [
    "model.speech.whisper.source=whisper-tiny-offline",
    "model.speech.whisper.attention_units=4",
    "model.speech.whisper.feature_dim=8",
]
IMAGE_TINY = ["audio.channels=3"]
MOBILENET_TINY = IMAGE_TINY + [
    "audio.chroma=true", "model.speech.mobilenet.alpha=0.25", "model.speech.mobilenet.feature_dim=8",
]
RESNET50_TINY = IMAGE_TINY + [
    "model.speech.resnet50_crnn_at.conv_filters=8",
    "model.speech.resnet50_crnn_at.gru_units=4",
    "model.speech.resnet50_crnn_at.transformer_heads=2",
    "model.speech.resnet50_crnn_at.transformer_intermediate_dim=8",
    "model.speech.resnet50_crnn_at.feature_dim=8",
]
# Sizes on top of conftest.tiny_overrides for each model name.
TINY_MODEL_OVERRIDES = {
    "bimer": [],
    "bimer_whisper": WHISPER_TINY,
    "mm_emor": MOBILENET_TINY + ["model.head_units=8"],
    "ser_resnet_cnn": ["model.speech.resnet_cnn.stage_widths=[4,8]"],
    "ser_resnet_crnn_at": [],
    "ser_resnet50_crnn_at": RESNET50_TINY,
    "ser_mobilenet": MOBILENET_TINY,
    "ser_whisper": WHISPER_TINY,
    "ter_bert": [],
    "ter_roberta": [],  # with the tiny RoBERTa preset of conftest
}
# Inputs of each task's serving signature.
SIGNATURE_INPUTS = {"bimer": {"audio_wav", "text"}, "mm_emor": {"audio_wav", "text"},
                    "ser": {"audio_wav"}, "ter": {"text"}}


def test_every_model_name_has_a_tiny_test():
    assert set(TINY_MODEL_OVERRIDES) == set(MODEL_NAMES)


@pytest.mark.parametrize("name", sorted(TINY_MODEL_OVERRIDES))
def test_model_trains_evaluates_and_exports(name, tiny_corpus, tiny_bert_preset, tiny_roberta_preset, tmp_path):
    from bimer_tf.training import train

    preset = tiny_roberta_preset if MODEL_NAMES[name][2] == "roberta" else tiny_bert_preset
    overrides = tiny_overrides(tiny_corpus, preset) + TINY_MODEL_OVERRIDES[name]
    config = load_config(model=name, overrides=overrides + ["trainer.epochs=1"])
    run = train(config, tmp_path / "run")
    result = json.loads((run / "eval.json").read_text())
    assert result["n"] == 8 and result["labels"] == TINY_LABELS
    assert 0.0 <= result["ua"] <= 1.0

    target = export_run(run, tmp_path / "export")  # includes the fresh-process check
    metadata = json.loads((target / METADATA_FILE).read_text())
    expected_inputs = SIGNATURE_INPUTS[config.model.type]
    assert set(metadata["inputs"]) == expected_inputs
    serve, labels = load_saved_model(target)
    assert set(serve.structured_input_signature[1]) == expected_inputs
    assert labels == TINY_LABELS


def test_whisper_layer_sum_and_padding_mask_train_and_export(tiny_corpus, tiny_bert_preset, tmp_path):
    """The stacked hidden states, their padding frames zeroed, go through the
    cache, the checkpoint and the serving graph."""
    from bimer_tf.training import train

    overrides = tiny_overrides(tiny_corpus, tiny_bert_preset) + WHISPER_TINY + [
        "model.speech.whisper.layers=2", "model.speech.whisper.layer_sum=true",
        "model.speech.whisper.pooling=attentive_mean_std", "model.speech.whisper.mask_padding=true",
        "trainer.epochs=1",
    ]
    run = train(load_config(model="ser_whisper", overrides=overrides), tmp_path / "run")
    assert json.loads((run / "eval.json").read_text())["n"] == 8
    target = export_run(run, tmp_path / "export")  # the fresh-process check compares its answers
    serve, labels = load_saved_model(target)
    assert labels == TINY_LABELS


def test_a_fresh_process_can_load_every_model_class():
    """export.py and evaluate load checkpoints in a new process: `import
    bimer_tf.models` alone must register every class a checkpoint may hold."""
    import bimer_tf.models as models

    names = [name for name in models.__all__ if name[0].isupper() and not name.isupper()]
    code = (
        "import keras, bimer_tf.models\n"
        f"missing = [n for n in {names!r} if keras.saving.get_registered_object('bimer_tf>' + n) is None]\n"
        "assert not missing, missing\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_ter_roberta_offline_names_the_offline_model():
    done = subprocess.run(
        [sys.executable, "train.py", "--model", "ter_roberta", "--set", "trainer.epochs=1"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    if done.returncode == 0:
        pytest.skip("the network reached keras-hub's RoBERTa preset; the offline path was not exercised")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert "needs the network" in done.stderr and "--model ter_bert" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(TINY_MODEL_OVERRIDES) - {"ter_roberta"}))
def test_demo_config_trains_one_epoch(name, tmp_path):
    """`python train.py --model NAME --set trainer.epochs=1` on the demo corpus."""
    done = subprocess.run(
        [sys.executable, "train.py", "--model", name, "--set", "trainer.epochs=1",
         "--output", str(tmp_path / name)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / name / "eval.json").read_text())
    assert result["n"] > 0 and np.isfinite(result["ua"])
