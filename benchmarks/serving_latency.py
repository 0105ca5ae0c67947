"""Latency of exported SavedModels alone (no HTTP, no ASR): p50/p95/p99 per request.

    python benchmarks/serving_latency.py --saved-model export/bimer/1 [--saved-model export/ter/1 ...]
        [--batches 1,8,32] [--requests 200] [--clip X.wav] [--profile-run runs/bimer-demo]

For each model and batch size: `--requests` timed calls of the
`serving_default` signature on a batch of copies of one 4 s clip (a real
RAVDESS recording padded or cut to 4 s when ../shared/corpora is there, else a
synthetic voiced clip) and its sentence, after warm-up calls. Prints one JSON
line per (model, batch): latency percentiles per request and the median per
utterance.

`--profile-run RUN` also times the parts of that run's serving graph on their
own (each as a tf.function, same batch): WAV decode + silence trim + crop/pad
under `tf.map_fn` (`frontend_map_fn`), the same for one clip without map_fn
(`frontend_single`, batch 1 only), the spectrogram (`log_mel`), the
tokenizer + packer (`tokenizer`), the Keras model on ready features
(`model`), its two backbones alone (`speech_backbone`, `text_backbone`) and
the speech backbone cut after its CNN (`speech_backbone[:to_sequence]`) and
after its BiGRU (`speech_backbone[:bigru]`), one JSON line per part. The
`model_xla` is the model compiled with XLA (`jit_compile=True`); the
`*_trimmed` parts cut the packed token inputs to the batch's longest
sentence (the packer pads every sentence to `text.sequence_length`), with the
largest change in probabilities this makes (`max_abs_difference`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bimer_tf.cli import quiet_startup  # noqa: E402

quiet_startup()

import numpy as np  # noqa: E402

RAVDESS_CLIP = REPO_ROOT.parent / "shared/corpora/ravdess4/wav/Actor_01/03-01-05-01-01-01-01.wav"
RAVDESS_TEXT = "Kids are talking by the door"
CLIP_SECONDS = 4.0


def four_second_clip(path: str | None, sample_rate: int = 16000) -> tuple[bytes, str, str]:
    """(PCM16 WAV bytes of exactly 4 s, its sentence, where it came from)."""
    from bimer_tf.audio.wav import encode_pcm16, load_audio

    n = int(CLIP_SECONDS * sample_rate)
    source = Path(path) if path else RAVDESS_CLIP
    if source.is_file():
        samples = load_audio(source, sample_rate)[:n]
        text, origin = (RAVDESS_TEXT if source == RAVDESS_CLIP else "hello there"), str(source)
    else:  # a voiced synthetic clip: harmonics of a gliding pitch, syllable-like envelope
        t = np.arange(n) / sample_rate
        f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate
        envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 3 * t)
        samples = sum(0.2 / k * np.sin(k * phase) for k in range(1, 8)) * envelope
        text, origin = RAVDESS_TEXT, "synthetic"
    samples = np.pad(samples, (0, n - len(samples))).astype(np.float32)
    return encode_pcm16(samples, sample_rate), text, origin


def percentiles(seconds: list[float]) -> dict:
    ms = 1000.0 * np.asarray(seconds)
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "mean_ms": round(float(ms.mean()), 2),
    }


def time_calls(function, requests: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def benchmark_saved_model(model_dir: str, batches, requests: int, wav: bytes, text: str, origin: str):
    import tensorflow as tf

    from bimer_tf.serving.export_dir import load_saved_model

    serve, _ = load_saved_model(model_dir)
    inputs = sorted(serve.structured_input_signature[1])
    kind = {("audio_wav", "text"): "bimodal", ("audio_wav",): "speech", ("text",): "text"}.get(tuple(inputs))
    for batch in batches:
        feeds = {}
        if "audio_wav" in inputs:
            feeds["audio_wav"] = tf.constant([wav] * batch)
        if "text" in inputs:
            feeds["text"] = tf.constant([text] * batch)

        def call():
            result = serve(**feeds)
            result["probabilities"].numpy()

        stats = percentiles(time_calls(call, requests))
        print(
            json.dumps(
                {
                    "model": model_dir,
                    "kind": kind,
                    "batch": batch,
                    "requests": requests,
                    **stats,
                    "per_utterance_p50_ms": round(stats["p50_ms"] / batch, 2),
                    "clip": origin,
                    "clip_s": CLIP_SECONDS,
                    "cpu_cores": os.cpu_count(),
                }
            ),
            flush=True,
        )


def profile_run(run_dir: str, batches, requests: int, wav: bytes, text: str):
    """Times the serving graph's parts of `run_dir`'s model, each on its own."""
    import keras
    import tensorflow as tf
    import yaml

    import bimer_tf.models  # noqa: F401  registers the model classes
    from bimer_tf.config import from_dict
    from bimer_tf.pipeline.frontend import build_speech_frontend
    from bimer_tf.models import build_text_preprocessor, task_modalities
    from bimer_tf.training import BEST_CHECKPOINT

    run_dir = Path(run_dir)
    config = from_dict(yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")))
    model = keras.saving.load_model(run_dir / BEST_CHECKPOINT, compile=False)
    needs_audio, needs_text = task_modalities(config)
    frontend = build_speech_frontend(config) if needs_audio else None
    preprocessor = build_text_preprocessor(config) if needs_text else None
    strings = tf.TensorSpec([None], tf.string)

    parts = {}
    if frontend is not None:
        parts["frontend_map_fn"] = tf.function(frontend.batch_waveforms, input_signature=[strings])
        parts["frontend_single"] = tf.function(
            lambda wavs: frontend.waveform(wavs[0])[tf.newaxis], input_signature=[strings]
        )
        waveform_spec = tf.TensorSpec([None, frontend.num_samples], tf.float32)
        parts["log_mel"] = tf.function(frontend.batch_features, input_signature=[waveform_spec])
    if preprocessor is not None:
        parts["tokenizer"] = tf.function(preprocessor, input_signature=[strings])

    @tf.function(reduce_retracing=True)
    def run_model(features):
        return model(features, training=False)

    @tf.function(reduce_retracing=True, jit_compile=True)
    def run_model_xla(features):
        return model(features, training=False)

    def compiled(layer):
        return tf.function(lambda x: layer(x, training=False), reduce_retracing=True)

    backbones = {}
    speech = getattr(model, "speech_backbone", None)
    if speech is not None:
        names = [layer.name for layer in speech.layers]
        for cut in ("to_sequence", "bigru"):
            if cut in names:
                head = keras.Model(speech.input, speech.get_layer(cut).output)
                backbones[f"speech_backbone[:{cut}]"] = (compiled(head), "speech")
        backbones["speech_backbone"] = (compiled(speech), "speech")
    if getattr(model, "text_backbone", None) is not None:
        backbones["text_backbone"] = (compiled(model.text_backbone), "text")

    for batch in batches:
        wavs, texts = tf.constant([wav] * batch), tf.constant([text] * batch)
        features = {}
        if frontend is not None:
            waveforms = parts["frontend_map_fn"](wavs)
            features[frontend.input_key] = parts["log_mel"](waveforms)
        if preprocessor is not None:
            features.update(parts["tokenizer"](texts))
        arguments = {
            "frontend_map_fn": (wavs,),
            "frontend_single": (wavs,),
            "log_mel": (waveforms,) if frontend is not None else None,
            "tokenizer": (texts,),
        }
        timed = {name: (fn, arguments[name]) for name, fn in parts.items()}
        timed["model"] = (run_model, (features,))
        timed["model_xla"] = (run_model_xla, (features,))
        for name, (fn, branch) in backbones.items():
            if branch == "speech":
                timed[name] = (fn, (features[frontend.input_key],))
            else:
                timed[name] = (fn, ({k: features[k] for k in model.text_backbone.input},))
        if preprocessor is not None:
            trimmed = trim_to_longest(features)
            timed["model_trimmed"] = (run_model, (trimmed,))
            if "text_backbone" in backbones:
                timed["text_backbone_trimmed"] = (
                    backbones["text_backbone"][0], ({k: trimmed[k] for k in model.text_backbone.input},)
                )
            difference = float(tf.reduce_max(tf.abs(run_model(features) - run_model(trimmed))))
            lengths = {
                "sequence_length": int(features["padding_mask"].shape[1]),
                "trimmed_length": int(trimmed["padding_mask"].shape[1]),
            }
            line = {"profile": str(run_dir), "batch": batch, **lengths, "max_abs_difference": difference}
            print(json.dumps(line), flush=True)
        for name, (fn, args) in timed.items():
            if name == "frontend_single" and batch != 1:
                continue
            stats = percentiles(time_calls(lambda: tf.nest.map_structure(lambda t: t.numpy(), fn(*args)), requests))
            line = {"profile": str(run_dir), "part": name, "batch": batch, "requests": requests, **stats}
            print(json.dumps(line), flush=True)


def trim_to_longest(features: dict) -> dict:
    """Token inputs cut to the longest sentence of the batch (padding_mask says where it ends)."""
    import tensorflow as tf

    length = tf.reduce_max(tf.reduce_sum(tf.cast(features["padding_mask"], tf.int32), axis=1))
    token_keys = {"token_ids", "segment_ids", "padding_mask"}
    return {k: (v[:, :length] if k in token_keys else v) for k, v in features.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--saved-model", "--model", dest="saved_model", action="append", required=True,
        metavar="DIR", help="SavedModel version folder (repeatable; --model: old name)",
    )
    parser.add_argument("--batches", default="1,8,32", help="comma-separated batch sizes (default: 1,8,32)")
    parser.add_argument("--requests", type=int, default=200, help="timed calls per batch size (default: 200)")
    parser.add_argument("--clip", help="audio clip to use (default: a RAVDESS clip if present, else synthetic)")
    parser.add_argument("--profile-run", metavar="RUN", help="also time the parts of this run's serving graph")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    wav, text, origin = four_second_clip(args.clip)
    for model_dir in args.saved_model:
        benchmark_saved_model(model_dir, batches, args.requests, wav, text, origin)
    if args.profile_run:
        profile_run(args.profile_run, batches, args.requests, wav, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
