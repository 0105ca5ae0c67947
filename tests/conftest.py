"""Shared fixtures: tiny models, generated audio, the optional real corpora."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_CORPORA = REPO_ROOT.parent / "shared" / "corpora"

# A vocabulary big enough for the demo sentences' common words; the rest map to [UNK].
TINY_VOCAB = (
    ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    + "i am so happy sad angry the a this is not good bad great day you what why thank it".split()
    + [".", ",", "!", "?", "'"]
)


@pytest.fixture(scope="session")
def tiny_bert_preset(tmp_path_factory) -> str:
    """A keras-hub preset folder holding a 1-layer, hidden-8 BERT and its tokenizer.

    Loaded through the same `from_preset` path as real presets.
    """
    import keras_hub

    folder = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=TINY_VOCAB, lowercase=True)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(TINY_VOCAB),
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=64,
    )
    backbone.save_to_preset(str(folder))
    tokenizer.save_to_preset(str(folder))
    return str(folder)


@pytest.fixture(scope="session")
def tiny_roberta_preset(tmp_path_factory) -> str:
    """A keras-hub preset folder holding a 1-layer, hidden-8 RoBERTa and a
    character-level byte-pair tokenizer (no RoBERTa weights exist offline)."""
    import keras_hub

    folder = tmp_path_factory.mktemp("tiny_roberta")
    vocabulary = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    merges = ["Ġ t", "h e", "Ġ a", "i s"]
    for token in list("Ġabcdefghijklmnopqrstuvwxyz.,!?'") + [m.replace(" ", "") for m in merges]:
        vocabulary.setdefault(token, len(vocabulary))
    vocabulary["<mask>"] = len(vocabulary)
    tokenizer = keras_hub.models.RobertaTokenizer(vocabulary=vocabulary, merges=merges)
    backbone = keras_hub.models.RobertaBackbone(
        vocabulary_size=len(vocabulary),
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=64,
    )
    backbone.save_to_preset(str(folder))
    tokenizer.save_to_preset(str(folder))
    return str(folder)


@pytest.fixture(scope="session")
def corpora_root() -> Path:
    """The real corpora beside the repository; tests using them skip when absent."""
    if not SHARED_CORPORA.is_dir():
        pytest.skip(f"real corpora not found at {SHARED_CORPORA}")
    return SHARED_CORPORA


def synth_tone(seconds=1.0, sample_rate=16000, freq=220.0, amplitude=0.3, lead_silence=0.0, tail_silence=0.0):
    """A harmonic tone with optional silent margins, as float32 in [-1, 1]."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    tone = sum(amplitude / k * np.sin(2 * np.pi * freq * k * t) for k in range(1, 6))
    lead = np.zeros(int(lead_silence * sample_rate))
    tail = np.zeros(int(tail_silence * sample_rate))
    return np.concatenate([lead, tone, tail]).astype(np.float32)


@pytest.fixture
def write_wav(tmp_path):
    """Writes a WAV file: write_wav(name, samples, sample_rate=16000, subtype='PCM_16')."""
    import soundfile

    def _write(name, samples, sample_rate=16000, subtype="PCM_16"):
        path = tmp_path / name
        soundfile.write(path, samples, sample_rate, subtype=subtype, format="WAV")
        return path

    return _write


TINY_LABELS = ["neutral", "angry", "sad", "happy"]
TINY_TEXTS = {
    "neutral": "what is this",
    "angry": "this is so bad !",
    "sad": "i am sad",
    "happy": "what a great day !",
}


def tiny_overrides(manifest, preset) -> list[str]:
    """`--set` overrides for a model and front end small enough for a CPU test
    (the speech sizes are those of the default `resnet_crnn_at` backbone)."""
    return [
        f"data.manifest={manifest}",
        "data.batch_size=4",
        "audio.max_duration_s=1.0",
        "audio.n_mels=32",
        "audio.n_fft=256",
        "audio.hop_length=128",
        "spec_augment.freq_mask_widths=[2,4]",
        "model.speech.resnet_crnn_at.stage_widths=[4,8]",
        "model.speech.resnet_crnn_at.gru_units=4",
        "model.speech.resnet_crnn_at.attention_units=4",
        "model.speech.resnet_crnn_at.transformer_heads=2",
        "model.speech.resnet_crnn_at.transformer_intermediate_dim=8",
        "model.speech.resnet_crnn_at.feature_dim=8",
        "model.text.feature_dim=8",
        f"text.preset={preset}",
        "text.sequence_length=16",
        "trainer.epochs=2",
        "trainer.learning_rate=0.01",
        "name=tiny",
    ]


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """32 one-second clips (4 classes x 4 speakers x 2), split by speaker, plus
    three bad training rows: a corrupt WAV, an unknown label, a missing transcript."""
    import soundfile

    from bimer_tf.data.manifest import Fold, make_row, write_manifest, write_splits

    root = tmp_path_factory.mktemp("tiny_corpus")
    rows, folds = [], {"train": [], "val": [], "test": []}
    speaker_split = {"s1": "train", "s2": "train", "s3": "val", "s4": "test"}
    for c, label in enumerate(TINY_LABELS):
        for s, (speaker, split) in enumerate(speaker_split.items()):
            for take in range(2):
                samples = synth_tone(0.8, freq=150.0 * (c + 1) + 10 * s, lead_silence=0.1, tail_silence=0.1)
                path = root / "wav" / f"{speaker}_{label}_{take}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                soundfile.write(path, samples, 16000, subtype="PCM_16")
                row = make_row(path.stem, label, audio=str(path), text=TINY_TEXTS[label], speaker=speaker, corpus="tiny")
                rows.append(row)
                folds[split].append(row["id"])
    (root / "wav" / "corrupt.wav").write_bytes(b"RIFF\x00\x00not a wav at all")
    bad = [
        make_row("bad_corrupt", "sad", audio=str(root / "wav" / "corrupt.wav"), text="i am sad", speaker="s1", corpus="tiny"),
        make_row("bad_label", "bored", audio=rows[0]["audio"], text="what is this", speaker="s1", corpus="tiny"),
        make_row("bad_text", "sad", audio=rows[0]["audio"], text=None, speaker="s1", corpus="tiny"),
    ]
    rows += bad
    folds["train"] += [row["id"] for row in bad]
    manifest = write_manifest(rows, root / "manifest.jsonl")
    write_splits(rows, "speaker-holdout", [Fold("heldout", folds["train"], folds["val"], folds["test"])], root)
    return manifest


@pytest.fixture(scope="session")
def tiny_run(tiny_corpus, tiny_bert_preset, tmp_path_factory) -> Path:
    """A finished 2-epoch training run of a tiny BiMER model."""
    from bimer_tf.config import load_config
    from bimer_tf.training import train

    config = load_config(model="bimer", overrides=tiny_overrides(tiny_corpus, tiny_bert_preset))
    return train(config, tmp_path_factory.mktemp("runs") / "tiny")


@pytest.fixture(scope="session")
def tiny_export(tiny_run, tmp_path_factory) -> Path:
    from bimer_tf.serving.export import export_run

    return export_run(tiny_run, tmp_path_factory.mktemp("export") / "bimer")


# --- exports of one modality without training --------------------------------
# The export contract with one input: scores depend on the input's length (in
# bytes), so different inputs get different probabilities; the graph refuses
# the input b"boom" with an assertion, as the real serving graph refuses bad
# audio. For the paths that only need the contract (inputs, errors, batching).

FAKE_LABELS = ["neutral", "angry", "sad", "happy"]


def one_modality_export(folder, input_name):
    import tensorflow as tf

    labels = tf.constant(FAKE_LABELS)

    class OneInput(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=input_name)])
        def serve(self, values):
            check = tf.debugging.Assert(
                tf.reduce_all(tf.not_equal(values, "boom")), [f"{input_name}: the input boom is refused"]
            )
            with tf.control_dependencies([check]):
                length = tf.cast(tf.strings.length(values), tf.float32)
            scaled = tf.math.log1p(length)
            logits = tf.stack([scaled * k for k in (0.0, 0.1, 0.2, 0.3)], axis=1)
            probabilities = tf.nn.softmax(logits)
            label_id = tf.argmax(probabilities, axis=-1)
            return {"probabilities": probabilities, "label": tf.gather(labels, label_id), "label_id": label_id}

    module = OneInput()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    (folder / "assets.extra").mkdir()
    metadata = {"labels": FAKE_LABELS, "inputs": [input_name], "config": {}}
    (folder / "assets.extra" / "bimer_tf.json").write_text(json.dumps(metadata))
    return folder


# --- `python -m bimer_tf.predict` ---------------------------------------------

# What TensorFlow's shared libraries print while they load, before any
# setting can reach their logging (see bimer_tf/cli.py); not ours to test.
STARTUP_LINE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IW]\d{4} )")


def predict_cli(*args) -> subprocess.CompletedProcess:
    """The command in a new process, as a user runs it (its stderr without
    TensorFlow's start-up lines). About 8 s each: for what only a real process
    shows; `predict_here` for the rest."""
    # The CLI chooses the log level (this conftest sets one for the test process).
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, "-m", "bimer_tf.predict", *map(str, args)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env,
    )
    done.stderr = "".join(line for line in done.stderr.splitlines(keepends=True) if not STARTUP_LINE.match(line))
    return done


def predict_here(*args) -> subprocess.CompletedProcess:
    """The command in this process, through the entry point's own `run_main`:
    its exit code and what it prints, usage errors included."""
    import contextlib
    import io

    from bimer_tf.cli import run_main
    from bimer_tf.inference.predict import main

    argv = [str(arg) for arg in args]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = run_main(main, argv)
        except SystemExit as exit:  # argparse's usage errors
            code = exit.code
    return subprocess.CompletedProcess(["bimer_tf.predict", *argv], code, stdout.getvalue(), stderr.getvalue())


# --- multi-worker training: real processes on 127.0.0.1 ----------------------


def free_ports(count):
    """Ports the OS reports free now (bound to port 0, then released)."""
    sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def start_train_workers(overrides, outputs, root):
    """One `train.py` process per output directory, worker i writing to outputs[i]."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(len(outputs))]}
    workers = []
    for index, output in enumerate(outputs):
        # A private TMPDIR shows whether the worker removed its scratch run directory.
        (root / f"tmp{index}").mkdir()
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
            "CUDA_VISIBLE_DEVICES": "",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "KERAS_BACKEND": "tensorflow",
            "TMPDIR": str(root / f"tmp{index}"),
        }
        command = [sys.executable, "train.py", "--model", "bimer", "--output", str(output)]
        for override in overrides:
            command += ["--set", override]
        with open(root / f"worker{index}.log", "w") as log:
            workers.append(
                subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            )
    return workers


def wait_for_workers(workers, timeout_s=300):
    """Exit codes once all workers end. When one fails the others would wait
    for it in a collective op, so they are stopped, as are all at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        codes = [worker.poll() for worker in workers]
        if all(code is not None for code in codes) or any(code not in (None, 0) for code in codes):
            break
        time.sleep(1)
    for worker in workers:
        if worker.poll() is None:
            worker.kill()
    return [worker.wait() for worker in workers]
