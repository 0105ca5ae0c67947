"""Where the served Whisper branch spends its time, and what bfloat16 and int8 buy on CPU.

    python benchmarks/whisper_profile.py --run runs/ravdess-ser-whisper-cv/fold1 \
        [--manifest data/ravdess/manifest.jsonl] [--agreement-clips 64] \
        [--batches 1,8] [--repeats 30] [--threads 2]

The serving graph of a `ser_whisper` run, cut into the parts it runs in
order: decode + trim + pad (WAV bytes -> waveform, per clip), Whisper's
log-mel, the frozen encoder layers, and the trained head (pooling and
classifier). Each part is its own `tf.function`, timed on the previous part's
real output, calls alternating between parts so that machine load hits all
alike. The encoder, which takes nearly all of the time, is also timed:

- under XLA (`jit_compile=True`, what `export.py --xla` compiles);
- in bfloat16 (the same weights rounded, bfloat16 compute; the CPU's
  `avx512_bf16`, if it has it, is what oneDNN can use for it);
- with Keras int8 weight quantization (`Model.quantize("int8")`: int8
  kernels for the Dense / EinsumDense layers, activations quantized per call).

For bfloat16 and int8 it also reports how far the probabilities move from
float32's on `--agreement-clips` real clips (max absolute difference, and
the share whose predicted class is unchanged): a faster encoder is worth
having only if it answers the same. Prints one JSON line per part and
variant (with its first call's time: under XLA, the compilation for that
batch size, which an export pays at warm-up); threads are fixed per process (`--threads`), so compare thread
counts by running it once per count.
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


def reduced_precision_encoder(encoder, dtype: str):
    """A copy of a frozen encoder part in `dtype` ("bfloat16") with the same weights, rounded."""
    import keras

    copy = keras.models.clone_model(
        encoder,
        clone_function=lambda layer: layer.__class__.from_config({**layer.get_config(), "dtype": dtype}),
    )
    copy.set_weights(encoder.get_weights())
    return copy


def int8_encoder(encoder):
    """A copy of a frozen encoder part with Keras int8 weight quantization."""
    import keras

    copy = keras.models.clone_model(encoder)
    copy.set_weights(encoder.get_weights())
    copy.quantize("int8")
    return copy


def read_clips(manifest: str, count: int) -> list[bytes]:
    """WAV bytes of the first `count` audio rows of a manifest (paths relative to it)."""
    from bimer_tf.audio.wav import encode_pcm16, load_audio

    if not Path(manifest).is_file():
        raise SystemExit(f"--manifest {manifest} not found: prepare RAVDESS first (configs/ravdess/README.md)")
    clips = []
    with open(manifest, encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            if row.get("audio"):
                path = Path(manifest).parent / row["audio"]
                clips.append(encode_pcm16(load_audio(path, 16000), 16000))
            if len(clips) == count:
                break
    return clips


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a finished ser_whisper run directory")
    parser.add_argument("--manifest", default="data/ravdess/manifest.jsonl", help="clips to time and to compare on")
    parser.add_argument("--agreement-clips", type=int, default=64)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    from bimer_tf.pipeline.frontend import build_speech_frontend
    from bimer_tf.training.run_dir import load_best_model, read_run_config

    config = read_run_config(args.run)
    if config.model.speech.type != "whisper" or config.model.type != "ser":
        raise SystemExit(f"{args.run} is not a ser_whisper run")
    frontend = build_speech_frontend(config)
    head = load_best_model(args.run)
    encoders = {
        "float32": frontend.encoder_bottom,
        "bfloat16": reduced_precision_encoder(frontend.encoder_bottom, "bfloat16"),
        "int8": int8_encoder(frontend.encoder_bottom),
    }
    clips = read_clips(args.manifest, max(args.agreement_clips, 8))

    def as_float32(states):
        return tf.cast(states, tf.float32)

    parts = {
        "decode_trim_pad": tf.function(frontend.batch_waveforms),
        "log_mel": tf.function(frontend.log_mel),
        "head": tf.function(lambda states: head({frontend.input_key: states}, training=False)),
    }
    for name, encoder in encoders.items():
        parts[f"encoder {name}"] = tf.function(lambda x, e=encoder: as_float32(e(x, training=False)))
        parts[f"encoder {name} xla"] = tf.function(
            lambda x, e=encoder: as_float32(e(x, training=False)), jit_compile=True
        )

    common = {
        "run": args.run,
        "encoder_layers": config.model.speech.whisper.layers,
        "source": config.model.speech.whisper.source,
        "clip_seconds": config.audio.max_duration_s,
        "threads": args.threads,
        "repeats": args.repeats,
        "machine": platform.processor() or platform.machine(),
    }
    for batch in [int(b) for b in args.batches.split(",")]:
        wavs = tf.constant(clips[:batch] if batch <= len(clips) else (clips * batch)[:batch])
        waveforms = parts["decode_trim_pad"](wavs)
        log_mel = parts["log_mel"](waveforms)
        states = parts["encoder float32"](log_mel)
        inputs = {"decode_trim_pad": wavs, "log_mel": waveforms, "head": states}
        calls = {}
        for name, function in parts.items():
            argument = inputs.get(name, log_mel)
            calls[name] = lambda function=function, argument=argument: function(argument).numpy()
        # Under XLA the first call compiles for this batch size; the parts called
        # above to make the inputs have been traced already.
        first_call_ms = {}
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            first_call_ms[name] = (time.perf_counter() - start) * 1000.0
            for _ in range(args.warmup - 1):
                call()
        times = {name: [] for name in calls}
        load_start = os.getloadavg()[0]
        for _ in range(args.repeats):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                times[name].append((time.perf_counter() - start) * 1000.0)
        served = sum(np.median(times[name]) for name in ("decode_trim_pad", "log_mel", "encoder float32", "head"))
        for name, values in times.items():
            median = float(np.median(values))
            row = {
                "part": name,
                "batch": batch,
                "ms_median": round(median, 2),
                "ms_p90": round(float(np.percentile(values, 90)), 2),
                "first_call_ms": round(first_call_ms[name], 1),
                "share_of_float32_path": round(median / served, 3),
                "load_1min": [round(load_start, 2), round(os.getloadavg()[0], 2)],
                **common,
            }
            print(json.dumps(row), flush=True)

    # Do the reduced-precision encoders answer the same?
    probabilities = {}
    for name in encoders:
        encode = parts[f"encoder {name}"]
        outputs = []
        for start in range(0, len(clips), 8):
            wavs = tf.constant(clips[start : start + 8])
            states = encode(parts["log_mel"](parts["decode_trim_pad"](wavs)))
            outputs.append(parts["head"](states).numpy())
        probabilities[name] = np.concatenate(outputs)
    for name in ("bfloat16", "int8"):
        print(
            json.dumps(
                {
                    "agreement": name,
                    "clips": len(clips),
                    "max_abs_probability_difference": round(float(np.abs(probabilities[name] - probabilities["float32"]).max()), 4),
                    "same_predicted_class": round(
                        float(np.mean(probabilities[name].argmax(-1) == probabilities["float32"].argmax(-1))), 4
                    ),
                    **common,
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
