"""Batch prediction on Beam: RunInference with a ModelHandler over the Recognizer.

Beam's own `TFModelHandlerTensor` loads with `tf.keras.models.load_model`,
which cannot read a Keras 3 SavedModel export (apache/beam#30616), and it
would skip the decoding and checks the export's inputs need. So
`RecognizerModelHandler` loads the export with `Recognizer.from_saved_model`
and prepares each item as `python -m bimer_tf.predict --inputs/--manifest`
does (`entry_loader`, `prepare_input`: decoded, resampled and checked audio;
the transcript from the manifest or the .txt beside the audio). A batch
from `BatchElements` (`batch_elements_kwargs`: min = max = `batch_size`) is
one SavedModel call of its good items; a bad item becomes a row whose
`error` says why, as in the batch mode. A batch that fails as a whole (not
an input's fault) becomes error rows too (`with_exception_handling`).

Models per machine: one per worker process by default (RunInference keeps
it in the process and shares it between the process's threads); with
`model_copies=N` (`--model-copies`), N copies per machine shared by its
worker processes (`share_model_across_processes`): for models too large
for a copy per process, or one accelerator per machine.

Inputs: the driver lists and checks them as the batch mode does, writes
them to `PREFIX.inputs.jsonl` (one entry per line) and the pipeline reads
that file, so the job graph holds a path, not the list: a `beam.Create` of
millions of paths would pass a cluster runner's job size limit (Dataflow:
10 MB). The file is kept as the run's record of what it was asked.

Rows: `input` (the path, or the manifest id), `label`, `probabilities`
({label: p}, rounded to 6 digits) and `error`, as JSON Lines in
`PREFIX-NNNNN-of-MMMMM.jsonl`; their order is not the input's.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from bimer_tf.beam import files
from bimer_tf.beam.runner import describe, import_beam
from bimer_tf.errors import InputError
from bimer_tf.inference.predict import (
    AUDIO_SUFFIXES,
    PROBABILITY_DIGITS,
    Entry,
    entry_loader,
    input_entries,
)
from bimer_tf.inference.recognizer import DEFAULT_BATCH_SIZE, BatchResult, PreparedInput, default_workers, prepare_input
from bimer_tf.serving.export_dir import ExportInfo, read_export_info

beam = import_beam()
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference  # noqa: E402
from apache_beam.runners.runner import PipelineState  # noqa: E402

OUTPUT_SUFFIX = ".jsonl"
INPUTS_SUFFIX = ".inputs.jsonl"  # PREFIX.inputs.jsonl: not matched by PREFIX-*-of-*.jsonl


# === The export on a worker ===


@functools.cache
def local_export(path: str) -> str:
    """A local version folder: `path` itself, or (gs://...) a copy made once per process."""
    if not files.is_remote(path):
        return path
    base = path.rstrip("/")
    target = Path(tempfile.mkdtemp(prefix="bimer_tf_export_")) / base.rsplit("/", 1)[-1]
    found = files.match(base + "/**")
    if not found:
        raise InputError(f"--saved-model {path}: no files there")
    for remote in found:
        local = target / remote[len(base) + 1 :]
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(files.read_bytes(remote))
    return str(target)


def export_info(path: str) -> ExportInfo:
    return read_export_info(local_export(path))


# === Items ===


def item_loader(info: ExportInfo):
    """Entry -> the Recognizer's item dict: `entry_loader`'s, with remote audio and transcripts read first."""
    load = entry_loader(info)

    def load_item(entry: Entry) -> tuple[dict, str | None]:
        """(item, the name messages use for its audio: None when the audio is a local path)."""
        if entry.audio is None or not files.is_remote(entry.audio):
            return load(entry), None
        text, transcript = entry.text, entry.transcript_file
        if transcript is not None:
            if not files.exists(transcript):
                raise InputError(
                    f"no transcript for {entry.audio}: the model takes {' and '.join(info.inputs)}; put the words "
                    f"spoken in {transcript} (UTF-8), or list audio and text in a --manifest"
                )
            data = files.read_bytes(transcript)
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as error:
                raise InputError(
                    f"{transcript} is not UTF-8 (invalid byte at offset {error.start}); "
                    "re-save it as UTF-8, e.g. `iconv -f latin1 -t utf-8`"
                ) from None
        item = load(replace(entry, text=text, transcript_file=None))
        if item["audio"] is not None:
            item["audio"] = files.read_bytes(entry.audio)
        return item, entry.audio

    return load_item


def prepare_entry(info: ExportInfo, load_item, entry: Entry) -> PreparedInput | str:
    """One entry checked and converted for the graph, or why it cannot be (as `Recognizer.predict_batch` prepares an item)."""
    try:
        item, name = load_item(entry)
        return prepare_input(info, item.get("audio"), item.get("text"), name=name)
    except InputError as error:
        return str(error)
    except OSError as error:
        where = f" {error.filename}" if getattr(error, "filename", None) else ""
        return f"cannot read{where}: {error.strerror or error}"


def prediction_row(name: str, result: BatchResult) -> dict:
    """An output row, as `python -m bimer_tf.predict` writes it in JSON Lines."""
    prediction = result.prediction
    probabilities = (
        None
        if prediction is None
        else {label: round(p, PROBABILITY_DIGITS) for label, p in prediction.probabilities.items()}
    )
    return {
        "input": name,
        "label": prediction.label if prediction else None,
        "probabilities": probabilities,
        "error": result.error,
    }


# === The model handler ===


class RecognizerModelHandler(ModelHandler[Entry, dict, object]):
    """RunInference over an exported version folder (local or gs://...).

    Elements are `bimer_tf.inference.predict.Entry` (input name, audio path,
    text or transcript file); predictions are the output rows (dicts).
    """

    def __init__(
        self,
        saved_model: str,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        decode_threads: int | None = None,
        model_copies: int | None = None,
    ):
        if batch_size < 1:
            raise InputError(f"--batch-size must be at least 1, got {batch_size}")
        if decode_threads is not None and decode_threads < 1:
            raise InputError(f"--decode-threads must be at least 1, got {decode_threads}")
        if model_copies is not None and model_copies < 1:
            raise InputError(f"--model-copies must be at least 1, got {model_copies}")
        super().__init__(min_batch_size=batch_size, max_batch_size=batch_size, model_copies=model_copies)
        self.saved_model = saved_model
        self.batch_size = batch_size
        self.decode_threads = decode_threads

    def load_model(self):
        from bimer_tf.inference.recognizer import Recognizer

        return Recognizer.from_saved_model(local_export(self.saved_model))

    def _info(self, model) -> ExportInfo:
        if self.share_model_across_processes():  # `model` is a proxy: read the metadata here
            return export_info(self.saved_model)
        return model.info  # the graph's own inputs

    def run_inference(self, batch: Sequence[Entry], model, inference_args=None):
        info = self._info(model)
        load_item = item_loader(info)
        threads = min(len(batch), self.decode_threads or default_workers())
        with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="bimer-prepare") as pool:
            prepared = list(pool.map(lambda entry: prepare_entry(info, load_item, entry), batch))
        ready = [item for item in prepared if isinstance(item, PreparedInput)]
        scored = iter(model.predict_prepared(ready) if ready else [])
        for index, (entry, item) in enumerate(zip(batch, prepared)):
            result = next(scored) if isinstance(item, PreparedInput) else BatchResult(index, None, item)
            yield PredictionResult(entry, prediction_row(entry.input, result))

    def get_num_bytes(self, batch: Sequence[Entry]) -> int:
        return sum(len(entry.input) for entry in batch)

    def get_metrics_namespace(self) -> str:
        return "bimer_tf_predict"


# === The pipeline ===


def remote_entries(patterns: list[str], info: ExportInfo) -> list[Entry]:
    """`input_entries` for URLs: each pattern's matches (a folder: its audio files)."""
    found = []
    for pattern in patterns:
        matches = files.match(pattern)
        if not matches and not any(ch in pattern for ch in "*?["):
            matches = [p for p in files.match(pattern.rstrip("/") + "/**") if Path(p).suffix.lower() in AUDIO_SUFFIXES]
        if not matches:
            raise InputError(f"--inputs {pattern}: matches no file")
        found += [m for m in matches if m not in found]
    if not info.takes_audio:
        raise InputError(
            f"the model {info.path} takes only text, and --inputs gives audio files; "
            "list the transcripts in a --manifest (its text field) instead"
        )
    return [
        Entry(path, audio=path, transcript_file=path.rsplit(".", 1)[0] + ".txt" if info.takes_text else None)
        for path in found
    ]


def entries_for(info: ExportInfo, manifest: str | None, inputs: list[str] | None) -> list[Entry]:
    if manifest is not None:
        return [Entry(str(row["id"]), audio=row["audio"], text=row["text"]) for row in files.read_manifest_rows(manifest)]
    local = [spec for spec in inputs if not files.is_remote(spec)]
    remote = [spec for spec in inputs if files.is_remote(spec)]
    return (input_entries(local, info) if local else []) + (remote_entries(remote, info) if remote else [])


def output_prefix(output: str) -> str:
    """PREFIX of PREFIX-NNNNN-of-MMMMM.jsonl (a trailing .jsonl is dropped)."""
    prefix = output[: -len(OUTPUT_SUFFIX)] if output.endswith(OUTPUT_SUFFIX) else output
    if not files.is_remote(prefix):
        prefix = str(Path(prefix).resolve())
    return prefix


def write_entries(entries: list[Entry], prefix: str) -> str:
    """The entries as JSON Lines in PREFIX.inputs.jsonl, for the pipeline to read; returns its path."""
    path = prefix + INPUTS_SUFFIX
    # ASCII: a transcript may hold a lone surrogate; its row fails in prediction, not the file.
    lines = "".join(json.dumps(dataclasses.asdict(entry)) + "\n" for entry in entries)
    files.write_bytes(path, lines.encode("ascii"))
    return path


def read_entry(line: str) -> Entry:
    return Entry(**json.loads(line))


def output_files(prefix: str) -> list[str]:
    return files.match(f"{prefix}-*-of-*{OUTPUT_SUFFIX}")


def failed_batch_rows(failure) -> list[str]:
    """RunInference's (batch, exception) -> an error row per entry."""
    batch, error = failure
    reason = f"prediction failed: {type(error).__name__}: {error}"
    return [json.dumps(prediction_row(entry.input, BatchResult(0, None, reason)), ensure_ascii=False) for entry in batch]


def build_pipeline(pipeline, inputs_file: str, handler: RecognizerModelHandler, prefix: str):
    main, other = (
        pipeline
        | "Inputs" >> beam.io.ReadFromText(inputs_file)
        | "Entries" >> beam.Map(read_entry)
        | "Spread" >> beam.Reshuffle()
        | "Predict" >> RunInference(handler).with_exception_handling()
    )
    rows = main | "Rows" >> beam.Map(lambda result: json.dumps(result.inference, ensure_ascii=False))
    failed = other.failed_inferences | "Failed batches" >> beam.FlatMap(failed_batch_rows)
    return (
        (rows, failed)
        | "All rows" >> beam.Flatten()
        | "Write" >> beam.io.WriteToText(prefix, file_name_suffix=OUTPUT_SUFFIX)
    )


def predict_with_beam(
    saved_model: str,
    output: str,
    options,
    *,
    manifest: str | None = None,
    inputs: list[str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    decode_threads: int | None = None,
    model_copies: int | None = None,
) -> dict:
    """Runs the pipeline; returns the counts (seen = predicted + skipped) and the output files."""
    started = time.perf_counter()
    handler = RecognizerModelHandler(
        saved_model, batch_size=batch_size, decode_threads=decode_threads, model_copies=model_copies
    )
    info = export_info(saved_model)
    entries = entries_for(info, manifest, inputs)
    if not entries:
        raise InputError("no inputs: the manifest has no rows")
    prefix = output_prefix(output)
    existing = output_files(prefix)
    if existing:
        raise InputError(
            f"--output {output}: {existing[0]} exists (and {len(existing) - 1} more); remove them or choose another --output"
        )
    if not files.is_remote(prefix):
        Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    inputs_file = write_entries(entries, prefix)
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, inputs_file, handler, prefix)
    state = pipeline.run().wait_until_finish()
    if state not in (PipelineState.DONE, None):
        raise RuntimeError(f"the Beam pipeline ended in state {state}")

    written = output_files(prefix)
    rows = [json.loads(line) for path in written for line in files.read_bytes(path).decode("utf-8").splitlines() if line.strip()]
    errors = [row for row in rows if row["error"] is not None]
    summary = {
        "inputs": len(entries),
        "seen": len(rows),
        "predicted": len(rows) - len(errors),
        "skipped": len(errors),
        "examples": [(row["input"], row["error"]) for row in sorted(errors, key=lambda r: r["input"])[:5]],
        "outputs": written,
        "inputs_file": inputs_file,
        "beam": describe(options),
        "seconds": round(time.perf_counter() - started, 3),
    }
    if summary["seen"] != summary["inputs"] or sorted(r["input"] for r in rows) != sorted(e.input for e in entries):
        raise AssertionError(  # a broken invariant, not bad input
            f"{summary['inputs']} inputs but {summary['seen']} rows written to {prefix}-*{OUTPUT_SUFFIX}"
        )
    return summary
