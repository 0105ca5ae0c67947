"""The `train.py --model NAME` defaults, one `NAME.yaml` per model name.

Package data (`setup.cfg`), read by `bimer_tf.config.model_config_file`, so an
installed bimer_tf trains on the demo corpus without the repository. The
corpus recipes live in the repository's `configs/`.
"""
