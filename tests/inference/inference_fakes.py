"""Fake exports for the inference tests: the export contract with one input and no training.

Scores depend on the input's length (in bytes), so different inputs get
different probabilities; the graph refuses the input b"boom" with an
assertion, as the real serving graph refuses bad audio.
"""

import json

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
