"""The timeline's files: segments.jsonl, segments.csv, summary.json, timeline.png.

Formats: docs/data-formats.md, "Emotion timeline". Each file is written to
a `.part` name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

SEGMENTS_JSONL = "segments.jsonl"
SEGMENTS_CSV = "segments.csv"
SUMMARY_JSON = "summary.json"
TIMELINE_PNG = "timeline.png"
DIGITS = 6
CSV_COLUMNS = ["index", "start_s", "end_s", "label", "transcript", "windows"]  # then p_<label> per class


def segment_rows(timeline) -> list[dict]:
    """One dict per scored segment, in time order (the JSONL objects)."""
    rows = []
    for index, scored in enumerate(timeline.segments):
        segment = scored.segment
        rows.append(
            {
                "index": index,
                "start_s": round(segment.start_s, 3),
                "end_s": round(segment.end_s, 3),
                "transcript": segment.transcript,
                "label": scored.label,
                "probabilities": {
                    label: round(float(p), DIGITS) for label, p in zip(timeline.labels, scored.probabilities)
                },
                "windows": scored.windows,
            }
        )
    return rows


def _replace(path: Path, write) -> Path:
    part = path.with_name(path.name + ".part")
    write(part)
    part.replace(path)
    return path


def write_outputs(timeline, output: Path, chart: bool = True) -> dict:
    """Writes the files into `output` (created); records them and the write time in `timeline`."""
    from bimer_tf.errors import InputError

    started = time.perf_counter()
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create the output folder {output}: {error.strerror or error}") from None
    rows = segment_rows(timeline)
    files = {}

    def jsonl(path):
        with open(path, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")

    def table(path):
        with open(path, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_COLUMNS + [f"p_{label}" for label in timeline.labels])
            for row in rows:
                writer.writerow(
                    [row["index"], row["start_s"], row["end_s"], row["label"], row["transcript"] or "", row["windows"]]
                    + [row["probabilities"][label] for label in timeline.labels]
                )

    files["segments_jsonl"] = str(_replace(output / SEGMENTS_JSONL, jsonl))
    files["segments_csv"] = str(_replace(output / SEGMENTS_CSV, table))
    if chart:
        from bimer_tf.inference.timeline.chart import draw_timeline

        files["timeline_png"] = str(_replace(output / TIMELINE_PNG, lambda path: draw_timeline(timeline, path)))
    files["summary_json"] = str(output / SUMMARY_JSON)
    timeline.files = files
    now = time.perf_counter()
    timeline.timings["write"] = now - started  # the summary's own write (a few ms) is not counted
    if timeline.started_at is not None:
        timeline.timings["total"] = now - timeline.started_at

    def summary(path):
        path.write_text(json.dumps(timeline.summary(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    _replace(output / SUMMARY_JSON, summary)
    return files
