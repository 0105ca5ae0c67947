"""Shared fixtures: tiny models, generated audio, the optional real corpora."""

from __future__ import annotations

import os

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
