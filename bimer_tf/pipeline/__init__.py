"""The runtime input pipeline (TensorFlow).

    frontend.py  AudioFrontend: WAV bytes -> mono -> trimmed -> cropped/padded ->
                 log-mel image or Whisper states; the same code runs in tf.data and
                 in the serving graph, so training and serving cannot drift
    dataset.py   manifest rows -> checked rows -> a batched tf.data.Dataset of
                 (features, label), SpecAugment on training batches only
"""
