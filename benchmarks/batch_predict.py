"""Throughput of `python -m bimer_tf.predict`'s batch mode on a whole corpus.

    python benchmarks/batch_predict.py [--saved-model export/bimer/1] [--corpus ../shared/corpora/ravdess4]
        [--batch-size 32] [--processes 10] [--repeats 2]

On RAVDESS (672 clips, 16 kHz WAV, with their sentences) and an export (the
demo BiMER, `make demo`), utterances per second of:

  (a) the batch mode: `predict_entries`, what `--manifest ... --output X.jsonl`
      runs after the model is loaded (files read and checked in worker
      threads while the model runs; rows written); also the whole command
      once, start-up and model loading included
  (b) a loop of single-clip `Recognizer.predict` calls in one process
  (c) one `python -m bimer_tf.predict` process per clip: `--processes` of
      them are timed and the rate extrapolated to the corpus
  (d) the limit: the SavedModel's own `serving_default` at the same batch
      size on WAV bytes and sentences already in memory

(a) and (d) are timed `--repeats` times, alternately, after a warm-up, and
the best pass counts. The aims: a/d >= 0.9 (the Python side hides behind the
model) and a/b >= 2.5. Besides wall-clock rates, the CPU time each costs per
utterance (all threads of the process; of the child processes for (c)) is
printed, with the ratios it gives: on a machine shared with other jobs the
wall-clock rates follow their load, the CPU cost far less. Skips with a
message when the corpus or export is absent.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bimer_tf.cli import quiet_startup  # noqa: E402

quiet_startup()

DEFAULT_CORPUS = REPO_ROOT.parent / "shared/corpora/ravdess4"
DEFAULT_EXPORT = REPO_ROOT / "export/bimer/1"


def corpus_manifest(corpus: Path, folder: Path) -> tuple[Path, list[tuple[str, str]]]:
    """A manifest of the corpus's clips with their sentences; also [(path, text)]."""
    from bimer_tf.data.manifest import make_row, write_manifest

    with (corpus / "metadata.csv").open(newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    clips = [(str(corpus / row["path"]), row["statement_text"]) for row in table]
    rows = [
        make_row(Path(path).stem, row["emotion"], audio=path, text=text, corpus="ravdess")
        for (path, text), row in zip(clips, table)
    ]
    return write_manifest(rows, folder / "manifest.jsonl"), clips


class Clock:
    """Wall-clock and CPU seconds of timed calls (CPU: this process's threads, or its children's)."""

    def __init__(self, children: bool = False):
        self.children = children
        self.passes = []  # (wall, cpu)

    def _cpu(self) -> float:
        times = os.times()
        return times.children_user + times.children_system if self.children else time.process_time()

    def __call__(self, function):
        wall, cpu = time.perf_counter(), self._cpu()
        function()
        self.passes.append((time.perf_counter() - wall, self._cpu() - cpu))

    def best(self) -> tuple[float, float]:
        return min(self.passes)

    def total(self) -> tuple[float, float]:
        return sum(w for w, _ in self.passes), sum(c for _, c in self.passes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--saved-model", default=str(DEFAULT_EXPORT), metavar="DIR")
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS), metavar="DIR")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--processes", type=int, default=10, help="clips timed for (c)")
    parser.add_argument("--repeats", type=int, default=3, help="passes of (a) and (d); the best counts")
    args = parser.parse_args(argv)
    corpus, export = Path(args.corpus), Path(args.saved_model)
    if not (corpus / "metadata.csv").is_file():
        print(f"skipped: no corpus at {corpus} (metadata.csv); the RAVDESS copy lives in ../shared/corpora/ravdess4")
        return 0
    if not (export / "saved_model.pb").is_file():
        print(f"skipped: no export at {export}; run `make demo` (writes export/bimer/1)")
        return 0

    from bimer_tf.inference.predict import OutputFile, manifest_entries, predict_entries
    from bimer_tf.inference.recognizer import Recognizer
    from bimer_tf.serving.export_dir import load_saved_model
    from bimer_tf.serving.feed import serve_batch

    batch = args.batch_size
    with tempfile.TemporaryDirectory(prefix="bimer_batch_bench_") as tmp:
        tmp = Path(tmp)
        manifest, clips = corpus_manifest(corpus, tmp)
        n = len(clips)
        entries = manifest_entries(manifest)
        print(f"{n} clips from {corpus}, export {export}, batch size {batch}, {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.2f}")

        recognizer = Recognizer.from_saved_model(export)
        serve, _ = load_saved_model(export)
        takes_audio, takes_text = recognizer.takes_audio, recognizer.takes_text
        wavs = [Path(path).read_bytes() for path, _ in clips] if takes_audio else None
        texts = [text for _, text in clips] if takes_text else None

        def limit():
            for start in range(0, n, batch):
                serve_batch(
                    serve,
                    wavs[start : start + batch] if wavs else None,
                    texts[start : start + batch] if texts else None,
                )

        passes = iter(range(10**6))

        def batch_mode():
            output = OutputFile(str(tmp / f"out{next(passes)}.jsonl"), recognizer.labels)
            counts = predict_entries(recognizer, entries, output, batch, progress=False)
            assert counts.predicted == n, counts.line()

        # Warm-up: the graph's first calls at this batch size (and at the last, smaller batch).
        serve_batch(serve, wavs[:batch] if wavs else None, texts[:batch] if texts else None)
        recognizer.predict_batch([{"audio": p, "text": t} for p, t in clips[: batch + n % batch]], batch)
        a_clock, d_clock = Clock(), Clock()
        for _ in range(args.repeats):
            d_clock(limit)
            a_clock(batch_mode)
        (a_wall, a_cpu), (d_wall, d_cpu) = a_clock.best(), d_clock.best()

        single = clips[: min(n, 200)]
        recognizer.predict(audio=single[0][0], text=single[0][1])
        b_clock = Clock()
        b_clock(lambda: [recognizer.predict(audio=p, text=t) for p, t in single])
        b_wall, b_cpu = b_clock.best()

        env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
        c_clock = Clock(children=True)
        for path, text in clips[: args.processes]:
            command = [sys.executable, "-m", "bimer_tf.predict", "--saved-model", str(export), "--audio", path]
            command += ["--text", text] if takes_text else []
            c_clock(lambda: subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, check=True))
        c_wall, c_cpu = c_clock.total()

        command = [sys.executable, "-m", "bimer_tf.predict", "--saved-model", str(export), "--manifest",
                   str(manifest), "--output", str(tmp / "cli.jsonl"), "--batch-size", str(batch)]
        whole_clock = Clock(children=True)
        whole_clock(lambda: subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, check=True))
        whole_wall, whole_cpu = whole_clock.best()

    processes = len(c_clock.passes)
    rows = [  # name, utterances, wall s, cpu s, note
        ("(a) batch mode (model loaded once)", n, a_wall, a_cpu, f"best of {args.repeats} passes of {n}"),
        ("(b) loop of Recognizer.predict", len(single), b_wall, b_cpu, f"{len(single)} clips, one process"),
        ("(c) one process per clip", processes, c_wall, c_cpu, f"{processes} processes timed, extrapolated"),
        ("(d) SavedModel alone, bytes in memory", n, d_wall, d_cpu, f"batch {batch}, best of {args.repeats}"),
        ("    the command end to end", n, whole_wall, whole_cpu, "start-up and model loading included"),
    ]
    rate = {row[0][:3]: row[1] / row[2] for row in rows}
    cost = {row[0][:3]: row[3] / row[1] for row in rows}
    print()
    print(f"{'':40s} {'utt/s':>8s} {'ms/utt':>9s} {'cpu ms/utt':>11s}  note")
    for name, count, wall, cpu, note in rows:
        print(f"{name:40s} {count / wall:8.1f} {1000 * wall / count:9.2f} {1000 * cpu / count:11.2f}  {note}")
    print()
    a, b, c, d = (rate[key] for key in ("(a)", "(b)", "(c)", "(d)"))
    print(f"wall clock:  a/d = {a / d:.2f} (aim >= 0.9)   a/b = {a / b:.2f} (aim >= 2.5)   a/c = {a / c:.0f}")
    print(f"cpu cost:    a/d = {cost['(d)'] / cost['(a)']:.2f}   a/b = {cost['(b)'] / cost['(a)']:.2f}   "
          f"a/c = {cost['(c)'] / cost['(a)']:.0f}   (rates the CPU time each costs would allow)")
    print(f"for {n} clips: batch mode {n / a:.1f} s, single-call loop {n / b:.1f} s, "
          f"a process per clip {n / c / 60:.1f} min (extrapolated); load average now {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
