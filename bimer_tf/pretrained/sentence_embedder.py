"""Sentence embeddings for similarity checks (the text augmentation filter).

all-MiniLM-L6-v2 was trained as a sentence encoder: its sentence vector is
the mean of the token vectors over real (non-padding) tokens, L2-normalised,
so the dot product of two embeddings is their cosine similarity. On the
offline copy, paraphrases score about 0.83-0.93 and unrelated sentences
about 0.0-0.1.

```python
embedder = SentenceEmbedder()
a, b = embedder.embed(["I am so happy today!", "I feel really glad today."])
cosine = float(a @ b)
```
"""

from __future__ import annotations

import keras
import keras_hub
import numpy as np

from bimer_tf.pretrained.text_presets import OFFLINE_MINILM, resolve_text_preset


class SentenceEmbedder:
    """Mean-pooled, L2-normalised sentence vectors from a keras-hub BERT.

    Args:
        preset: "minilm-offline" (the pip-installed all-MiniLM-L6-v2), a
            keras-hub BERT preset name, or a local preset folder.
        sequence_length: longer sentences are truncated to this many tokens.
        batch_size: sentences encoded per forward pass.
    """

    def __init__(self, preset: str = OFFLINE_MINILM, sequence_length: int = 128, batch_size: int = 64):
        self.preset = preset
        self.sequence_length = sequence_length
        self.batch_size = batch_size
        resolved = resolve_text_preset(preset)
        self.tokenizer = keras_hub.models.BertTokenizer.from_preset(resolved)
        self.preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
            self.tokenizer, sequence_length=sequence_length
        )
        self.backbone = keras_hub.models.BertBackbone.from_preset(resolved)

    @property
    def dim(self) -> int:
        return self.backbone.hidden_dim

    def embed(self, sentences: list[str]) -> np.ndarray:
        """Returns a float32 array [len(sentences), dim] of unit-length rows."""
        sentences = list(sentences)
        if not sentences:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Encoding similar lengths together keeps padding, and so work, small.
        order = np.argsort([len(s) for s in sentences], kind="stable")
        vectors = np.zeros((len(sentences), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            vectors[batch] = self._embed_batch([sentences[i] for i in batch])
        return vectors

    def _embed_batch(self, sentences: list[str]) -> np.ndarray:
        features = self.preprocessor(sentences)
        # The preprocessor pads to `sequence_length`; cut the columns that are
        # padding in every row. Attention masks padding anyway, so the result
        # is the same, only cheaper.
        longest = int(keras.ops.max(keras.ops.sum(keras.ops.cast(features["padding_mask"], "int32"), axis=1)))
        features = {name: value[:, :longest] for name, value in features.items()}
        tokens = self.backbone(features, training=False)["sequence_output"]
        mask = keras.ops.expand_dims(keras.ops.cast(features["padding_mask"], tokens.dtype), -1)
        mean = keras.ops.sum(tokens * mask, axis=1) / keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)
        unit = mean / keras.ops.maximum(keras.ops.norm(mean, axis=-1, keepdims=True), 1e-12)
        return keras.ops.convert_to_numpy(unit)
