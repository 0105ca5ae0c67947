"""Whisper encoder latency: 16 kHz waveform -> WhisperLogMel -> encoder.

    python benchmarks/whisper_encoder.py [--sources whisper-tiny-offline whisper-base-offline]
                                         [--clip-seconds 4] [--repeats 20] [--warmup 3]

Prints one JSON line per source: milliseconds per clip (median and 90th
percentile over the repeats, batch 1, after warm-up calls), parameters and
hidden size. The model runs as one `tf.function` graph, as it does inside an
exported SavedModel. Sources are those `load_whisper_encoder` accepts.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bimer_tf.cli import quiet_startup  # noqa: E402

quiet_startup()  # before anything imports TensorFlow

import numpy as np  # noqa: E402


def time_source(source, clip_seconds, repeats, warmup) -> dict:
    import keras
    import tensorflow as tf

    from bimer_tf.layers.whisper_log_mel import WhisperLogMel
    from bimer_tf.pretrained.whisper_encoder import load_whisper_encoder, whisper_encoder_dims

    start = time.perf_counter()
    encoder = load_whisper_encoder(source)
    load_s = time.perf_counter() - start
    waveforms = keras.Input((None,), dtype="float32", name="waveforms")
    model = keras.Model(waveforms, encoder(WhisperLogMel(name="whisper_log_mel")(waveforms)))
    run = tf.function(model, input_signature=[tf.TensorSpec([None, None], tf.float32)])

    rng = np.random.default_rng(0)
    clip = (0.1 * rng.standard_normal((1, int(clip_seconds * 16000)))).astype(np.float32)
    for _ in range(warmup):
        run(clip).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(clip).numpy()
        times.append((time.perf_counter() - start) * 1000.0)
    dims = whisper_encoder_dims(encoder)
    return {
        "source": source,
        "ms_per_clip_median": round(float(np.median(times)), 1),
        "ms_per_clip_p90": round(float(np.percentile(times, 90)), 1),
        "clip_seconds": clip_seconds,
        "batch": 1,
        "repeats": repeats,
        "params": int(encoder.count_params()),
        "hidden_dim": dims["hidden_dim"],
        "num_layers": dims["num_layers"],
        "load_seconds": round(load_s, 1),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sources", nargs="+", default=["whisper-tiny-offline", "whisper-base-offline"],
        help="encoders to time (offline names, CTranslate2 folders or keras-hub presets)",
    )
    parser.add_argument("--clip-seconds", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)
    for source in args.sources:
        print(json.dumps(time_source(source, args.clip_seconds, args.repeats, args.warmup)), flush=True)


if __name__ == "__main__":
    from bimer_tf.cli import run_main

    sys.exit(run_main(main))
