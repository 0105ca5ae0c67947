"""TensorFlow Serving warm-up requests for an exported version.

When TF Serving loads a version it replays
`<version>/assets.extra/tf_serving_warmup_requests`, a TFRecord file of
`PredictionLog` protos, before it marks the version available. The first
real request then finds the graph already run once per batch size: kernels
chosen, the tokenizer's tables and the mel filterbank built. TF Serving
allows at most 1000 records; we write one per batch size in `BATCH_SIZES`,
with inputs named after the signature's own inputs (`audio_wav` and/or
`text`): a short synthetic WAV and a short sentence.
"""

from __future__ import annotations

from pathlib import Path

from bimer_tf.serving.export_dir import AUDIO_INPUT, SIGNATURE, TEXT_INPUT, WARMUP_FILE, signature_input_names

BATCH_SIZES = (1, 8)
WARMUP_TEXT = "thank you for coming in today"


def warmup_requests(input_names, sample_rate: int, batch_sizes=BATCH_SIZES, model_name: str = "model"):
    """One `PredictionLog` per batch size, for a signature taking `input_names`."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    from bimer_tf.audio.wav import synthetic_wav

    examples = {AUDIO_INPUT: synthetic_wav(sample_rate), TEXT_INPUT: WARMUP_TEXT.encode("utf-8")}
    unknown = sorted(set(input_names) - set(examples))
    if unknown:
        raise ValueError(f"no warm-up example for inputs {unknown}")
    logs = []
    for batch_size in batch_sizes:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = SIGNATURE
        for name in input_names:
            request.inputs[name].CopyFrom(tf.make_tensor_proto([examples[name]] * batch_size, dtype=tf.string))
        logs.append(prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request)))
    return logs


def write_warmup_requests(version_dir: str | Path, sample_rate: int, batch_sizes=BATCH_SIZES) -> Path:
    """Writes `<version_dir>/assets.extra/tf_serving_warmup_requests`; returns its path."""
    import tensorflow as tf

    version_dir = Path(version_dir)
    path = version_dir / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    model_name = version_dir.resolve().parent.name  # the model base path's folder, e.g. "bimer"
    logs = warmup_requests(signature_input_names(version_dir), sample_rate, batch_sizes, model_name)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(path: str | Path):
    """The `PredictionLog` records of a warm-up file, in order."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    return [
        prediction_log_pb2.PredictionLog.FromString(record.numpy())
        for record in tf.data.TFRecordDataset(str(path))
    ]
