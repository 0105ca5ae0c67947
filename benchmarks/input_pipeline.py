"""Input pipeline throughput: decode -> trim -> log-mel -> SpecAugment -> batch.

    python benchmarks/input_pipeline.py [--manifest M] [--batch-size 16] [--utterances 2000]
    python benchmarks/input_pipeline.py --paper-style 40   # also time the paper's image path
    python benchmarks/input_pipeline.py --reference        # also time a bare decode + STFT + mel loop

Prints one JSON line. The dataset is built by `bimer_tf.pipeline.dataset` with
caching off, so every utterance is read and decoded from disk each pass. The
default manifest is the demo corpus. `--paper-style N` times the BiMER
paper's feature path on N clips for comparison: librosa log-mel -> viridis
PNG of 496x369 pixels -> decode back. `--reference` times the least a
pipeline could do on the same clips and config: a bare `tf.data` map of
`read_file -> decode_wav -> crop/pad -> STFT -> mel matmul -> log` with the
same parallelism and batch size, no trimming, SpecAugment or labels, and
prints the pipeline's rate as a share of it (`ratio_to_reference`).
"""

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bimer_tf.cli import quiet_startup  # noqa: E402

quiet_startup()  # before anything imports TensorFlow

import numpy as np  # noqa: E402


def paper_style_rate(rows, config, count) -> float:
    import librosa
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    audio = config.audio
    start = time.perf_counter()
    for row in rows[:count]:
        samples, _ = librosa.load(row["audio"], sr=audio.sample_rate)
        samples, _ = librosa.effects.trim(samples, top_db=audio.trim_top_db)
        mel = librosa.feature.melspectrogram(
            y=samples, sr=audio.sample_rate, n_fft=audio.n_fft, hop_length=audio.hop_length,
            n_mels=audio.n_mels, htk=True,
        )
        figure = plt.figure(figsize=(4.96, 3.69), dpi=100)
        plt.axis("off")
        plt.imshow(librosa.power_to_db(mel, ref=np.max), aspect="auto", origin="lower", cmap="viridis")
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        plt.close(figure)
        np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return min(count, len(rows)) / (time.perf_counter() - start)


def reference_rate(rows, config, num_samples, count, batch_size) -> float:
    """Utterances/s of a bare tf.data map: read, decode_wav, STFT, mel matmul, log, batch."""
    import tensorflow as tf

    audio = config.audio
    mel = tf.signal.linear_to_mel_weight_matrix(
        audio.n_mels, audio.n_fft // 2 + 1, audio.sample_rate, audio.fmin, audio.fmax or audio.sample_rate / 2
    )

    def log_mel(path):
        waveform, _ = tf.audio.decode_wav(tf.io.read_file(path), desired_channels=1)
        waveform = tf.pad(waveform[:num_samples, 0], [[0, tf.maximum(0, num_samples - tf.shape(waveform)[0])]])
        spectrum = tf.abs(tf.signal.stft(waveform, audio.n_fft, audio.hop_length)) ** 2
        return tf.math.log(tf.matmul(spectrum, mel) + 1e-10)

    paths = tf.data.Dataset.from_tensor_slices([row["audio"] for row in rows]).repeat()
    dataset = paths.map(log_mel, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(tf.data.AUTOTUNE)
    iterator = iter(dataset)
    next(iterator)  # tracing and warm-up
    batches = max(1, count // batch_size)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", help="manifest to read (default: the demo corpus)")
    parser.add_argument("--config", help="YAML config overrides (audio / spec_augment)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--utterances", type=int, default=2000, help="utterances to time")
    parser.add_argument("--paper-style", type=int, default=0, metavar="N")
    parser.add_argument("--reference", action="store_true", help="also time a bare decode + STFT + mel loop")
    args = parser.parse_args()

    import tensorflow as tf

    from bimer_tf.config import load_config
    from bimer_tf.data.manifest import read_manifest
    from bimer_tf.pipeline.dataset import build_dataset, make_spec_augment, validate_rows
    from bimer_tf.pipeline.frontend import AudioFrontend

    config = load_config(args.config)
    if args.manifest is None:
        from bimer_tf.data.demo import ensure_demo_corpus

        args.manifest = str(ensure_demo_corpus(config.data.demo_dir))
    frontend = AudioFrontend(config.audio)
    rows = read_manifest(args.manifest)
    labels = sorted({row["label"] for row in rows})
    rows = validate_rows(rows, labels, frontend, needs_text=False).kept
    dataset = build_dataset(
        rows, labels, frontend, None, batch_size=args.batch_size, training=True,
        spec_augment=make_spec_augment(config.spec_augment), cache=False,
    ).repeat()

    batches = max(1, args.utterances // args.batch_size)
    iterator = iter(dataset)
    next(iterator)  # tracing and warm-up
    start = time.perf_counter()
    for _ in range(batches):
        features, _ = next(iterator)
    elapsed = time.perf_counter() - start
    durations = []
    import soundfile

    for row in rows[:200]:
        durations.append(soundfile.info(row["audio"]).duration)
    result = {
        "benchmark": "input_pipeline",
        "manifest": args.manifest,
        "utterances": batches * args.batch_size,
        "batch_size": args.batch_size,
        "feature_shape": list(features["log_mel"].shape[1:]),
        "mean_clip_s": round(float(np.mean(durations)), 2),
        "cpu_cores": os.cpu_count(),
        "seconds": round(elapsed, 2),
        "utterances_per_second": round(batches * args.batch_size / elapsed, 1),
        "tensorflow": tf.__version__,
    }
    if args.paper_style:
        result["paper_style_utterances_per_second"] = round(
            paper_style_rate(rows, config, args.paper_style), 1
        )
    if args.reference:
        rate = reference_rate(rows, config, frontend.num_samples, batches * args.batch_size, args.batch_size)
        result["reference_utterances_per_second"] = round(rate, 1)
        result["ratio_to_reference"] = round(result["utterances_per_second"] / rate, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
