"""TF Serving warm-up records written beside an export."""

import numpy as np
import pytest
import tensorflow as tf

from bimer_tf.serving.export_dir import SIGNATURE, WARMUP_FILE, load_saved_model, signature_input_names
from bimer_tf.serving.warmup import BATCH_SIZES, read_warmup_requests, warmup_requests

from conftest import TINY_LABELS


def test_export_writes_one_prediction_log_per_batch_size(tiny_export):
    path = tiny_export / WARMUP_FILE
    assert path.is_file()
    logs = read_warmup_requests(path)
    assert len(logs) == len(BATCH_SIZES)
    for log, batch_size in zip(logs, BATCH_SIZES):
        assert log.WhichOneof("log_type") == "predict_log"
        request = log.predict_log.request
        assert request.model_spec.signature_name == SIGNATURE
        assert request.model_spec.name == tiny_export.parent.name
        assert set(request.inputs) == {"audio_wav", "text"}
        for tensor in request.inputs.values():
            assert tensor.dtype == tf.string.as_datatype_enum
            assert [d.size for d in tensor.tensor_shape.dim] == [batch_size]


def test_warmup_inputs_run_through_the_saved_model(tiny_export):
    serve, _ = load_saved_model(tiny_export)
    for log in read_warmup_requests(tiny_export / WARMUP_FILE):
        inputs = {name: tf.constant(tf.make_ndarray(tensor)) for name, tensor in log.predict_log.request.inputs.items()}
        batch_size = len(next(iter(inputs.values())))
        probabilities = serve(**inputs)["probabilities"].numpy()
        assert probabilities.shape == (batch_size, len(TINY_LABELS))
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_signature_input_names_read_from_saved_model_pb(tiny_export):
    assert signature_input_names(tiny_export) == ["audio_wav", "text"]


@pytest.mark.parametrize("names", [["audio_wav"], ["text"]])
def test_requests_carry_only_the_inputs_a_model_takes(names):
    logs = warmup_requests(names, 16000, batch_sizes=(2,))
    assert set(logs[0].predict_log.request.inputs) == set(names)


def test_unknown_input_has_no_example():
    with pytest.raises(ValueError, match="no warm-up example"):
        warmup_requests(["image"], 16000)
