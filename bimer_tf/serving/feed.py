"""Feeding a loaded `serving_default` function in this process: one call per batch.

Everything that runs an export in-process feeds it through here: the Python
API (`bimer_tf.inference.recognizer.Recognizer`, and through it
`python -m bimer_tf.predict`) and the evaluation of a SavedModel
(`bimer_tf.evaluation.evaluate.ServedModel`).

Inputs are what the signature takes (`export_dir` names them): `audio_wav`,
16-bit PCM WAV bytes at the model's rate, and `text`, a str. The graph's own
input checks (`tf.debugging` assertions) raise `InvalidArgumentError`; it
becomes `InputError` with the op's reason. Other op errors (out of memory, a
broken graph) are not about the input and pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bimer_tf.errors import InputError, op_error_message
from bimer_tf.serving.export_dir import AUDIO_INPUT, TEXT_INPUT


def serve_batch(serve, audio_wavs: Sequence[bytes] | None = None, texts: Sequence[str] | None = None) -> np.ndarray:
    """One call of the serving function on one batch -> probabilities [N, C] float32.

    Pass the inputs the signature takes (None for one it does not take).
    """
    import tensorflow as tf

    feeds = {}
    if audio_wavs is not None:
        feeds[AUDIO_INPUT] = tf.constant(list(audio_wavs), dtype=tf.string)
    if texts is not None:
        feeds[TEXT_INPUT] = tf.constant([text.encode("utf-8") for text in texts], dtype=tf.string)
    if not feeds:
        raise InputError("no input to feed the model: give audio and/or text")
    try:
        result = serve(**feeds)
    except tf.errors.InvalidArgumentError as error:
        raise InputError(f"the model rejected the input: {op_error_message(error)}") from None
    return result["probabilities"].numpy()


def serve_each(
    serve, audio_wavs: Sequence[bytes] | None = None, texts: Sequence[str] | None = None
) -> list[np.ndarray | InputError]:
    """Probabilities [C] for each item, or the InputError of an item the graph rejects.

    One call for the whole batch; only when the graph rejects it is each item
    run alone, so that one bad item costs the others nothing but time.
    """
    count = len(audio_wavs) if audio_wavs is not None else len(texts)
    try:
        return list(serve_batch(serve, audio_wavs, texts))
    except InputError as error:
        if count == 1:
            return [error]
    results = []
    for i in range(count):
        try:
            results.append(
                serve_batch(
                    serve,
                    None if audio_wavs is None else audio_wavs[i : i + 1],
                    None if texts is None else texts[i : i + 1],
                )[0]
            )
        except InputError as error:
            results.append(error)
    return results
