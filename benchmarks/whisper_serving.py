"""The served Whisper branch against CTranslate2's Whisper encoder, in one process.

    python benchmarks/whisper_serving.py --saved-model export/ser_whisper/1 \
        [--saved-model export/ser_whisper_xla/1 ...] [--clip FILE.wav] [--repeats 40] [--threads 2]

Each export is timed end to end as a server runs it: WAV bytes in,
probabilities out, through `serving_default` (decode, trim, log-mel, the
Whisper encoder layers, pooling, head). The reference is CTranslate2's
float32 and int8 Whisper encoder alone (`ctranslate2.models.Whisper.encode`)
on the same clip's log-mel (`WhisperLogMel`, as the export computes it), with
the encoder of the export's own `model.speech.whisper.source`. Calls
alternate between the contenders so that load on the machine hits all of
them alike; both runtimes get `--threads` threads. Prints one JSON line per
contender (median and p90 ms at batch 1, and at batch 8 for the exports) and
the ratio of each export's batch-1 median to CTranslate2 float32's.
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


def clip_bytes(path: str | None, seconds: float = 4.0) -> tuple[bytes, str]:
    """A 4 s 16 kHz PCM16 clip: the given file, a RAVDESS clip if present, else synthetic speech-like noise."""
    from bimer_tf.audio.wav import encode_pcm16, load_audio

    root = Path(__file__).resolve().parent.parent.parent / "shared/corpora/ravdess4/wav/Actor_01"
    source = Path(path) if path else next(iter(sorted(root.glob("*.wav"))), None)
    if source is not None and source.is_file():
        samples, origin = load_audio(source, 16000), str(source)
    else:
        rng = np.random.default_rng(0)
        samples, origin = 0.1 * rng.standard_normal(int(seconds * 16000)), "synthetic noise"
    samples = np.resize(samples, int(seconds * 16000)).astype(np.float32)
    return encode_pcm16(samples, 16000), origin


def stats(times_ms: list[float]) -> dict:
    return {
        "ms_median": round(float(np.median(times_ms)), 1),
        "ms_p90": round(float(np.percentile(times_ms, 90)), 1),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--saved-model", action="append", required=True, metavar="DIR", help="a ser_whisper export (repeatable)")
    parser.add_argument("--clip", help="the clip to time (default: a RAVDESS clip if present)")
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import ctranslate2
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    from bimer_tf.layers.whisper_log_mel import WhisperLogMel
    from bimer_tf.pretrained.whisper_sources import ctranslate2_model_dir
    from bimer_tf.serving.export_dir import load_saved_model, read_export_info

    wav, origin = clip_bytes(args.clip)
    exports = {}
    for path in args.saved_model:
        info = read_export_info(path)
        serve, _ = load_saved_model(path)
        exports[path] = (info, serve)
    sources = {info.experiment_config().model.speech.whisper.source for info, _ in exports.values()}
    if len(sources) != 1:
        raise SystemExit(f"the exports use different Whisper sources {sorted(sources)}; time one source at a time")
    source = sources.pop()

    from bimer_tf.audio.wav import load_audio

    samples = load_audio(wav, 16000)[np.newaxis].astype(np.float32)
    log_mel = WhisperLogMel(name="whisper_log_mel")(tf.constant(samples)).numpy()  # [1, frames, 80]
    features = ctranslate2.StorageView.from_array(np.ascontiguousarray(log_mel.transpose(0, 2, 1)))
    folder = str(ctranslate2_model_dir(source))
    references = {
        f"ctranslate2 {compute} encoder": ctranslate2.models.Whisper(
            folder, device="cpu", compute_type=compute, intra_threads=args.threads
        )
        for compute in ("float32", "int8")
    }

    calls = {name: (lambda model=model: model.encode(features, to_cpu=True)) for name, model in references.items()}
    for path, (_, serve) in exports.items():
        for batch in (1, 8):
            request = tf.constant([wav] * batch)
            calls[f"{path} batch {batch}"] = lambda serve=serve, request=request: serve(audio_wav=request)["probabilities"].numpy()

    for call in calls.values():
        for _ in range(args.warmup):
            call()
    times = {name: [] for name in calls}
    for _ in range(args.repeats):  # alternate, so machine load hits every contender alike
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - start) * 1000.0)

    reference = float(np.median(times["ctranslate2 float32 encoder"]))
    common = {
        "clip": origin,
        "clip_seconds": 4.0,
        "threads": args.threads,
        "repeats": args.repeats,
        "load_1min": round(os.getloadavg()[0], 2),
        "machine": platform.processor() or platform.machine(),
    }
    for name, values in times.items():
        row = {"contender": name, **stats(values), **common}
        if name.endswith("batch 1"):
            path = name.rsplit(" batch", 1)[0]
            row["xla"] = exports[path][0].xla
            row["ratio_to_ctranslate2_float32"] = round(float(np.median(values)) / reference, 2)
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
