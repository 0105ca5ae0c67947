"""The sharded TFRecord format: a split's rows and their decoded audio, for
training and evaluation on many machines or from object storage.

One `tf.train.Example` per clip, with these features (each one value):

    id, text, label, speaker, corpus, origin, augmentation   bytes: UTF-8 text
    session                                                  bytes: the JSON of the value
    audio        bytes: 16 kHz mono PCM16 samples, little-endian, no header
    duration_s   float: len(samples) / 16000

A null becomes empty bytes and empty bytes decode back to null, for every
bytes feature (so an empty `text` also reads back as null; the pipeline
treats both as "no transcript"). A text-only row has empty `audio` and
`duration_s` 0. `session` holds the JSON of its value (`3` for IEMOCAP's
session 3, `"s1"` for a string) so an int stays an int.

A folder of shards holds, per split:

    <split>-00000-of-00004.tfrecord ... <split>-00003-of-00004.tfrecord
    <split>.index.json

The index (`write_index`, `read_index`):

    {"split", "rows", "per_class", "per_class_inputs",
     "shards": [{"file", "rows"}], "source_manifest", "rows_sha256"}

`per_class_inputs` counts, per class, the rows holding audio and text
(`audio_text`), audio only (`audio`), text only (`text`) or neither
(`none`): what a run needs to count a split's usable rows without reading
the shards. `rows_sha256` identifies the rows whatever the shard
boundaries: decode every row (`decode_example`: the manifest fields with
`audio` the sha256 of its PCM16 bytes, or null, plus `duration_s`), take
`row_sha256` of each (sha256 of its canonical JSON: sorted keys, no
spaces, UTF-8), sort those by row id (code point order) and hash them,
each as 64 hex digits and a newline (`rows_sha256`).

`SplitSummary` accumulates an index from decoded rows (`add`, `merge`), so
writers that see rows in any order, in any number of processes, give the
same index. No TensorFlow at import: the functions that need it import it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bimer_tf.data.manifest import MANIFEST_FIELDS
from bimer_tf.errors import InputError

SAMPLE_RATE = 16000
SHARD_SUFFIX = ".tfrecord"
INDEX_SUFFIX = ".index.json"
DEFAULT_SHARD_MB = 128.0
MB = 1 << 20  # --shard-mb counts MiB
# The split name the shard command gives a manifest it shards without splits.
ALL_SPLIT = "all"
# The shard command's report beside the shards (optional for other writers).
REPORT_NAME = "shard_report.json"

TEXT_FIELDS = ("id", "text", "label", "speaker", "corpus", "origin", "augmentation")
REQUIRED_FIELDS = ("id", "label", "corpus")
FEATURES = MANIFEST_FIELDS + ("duration_s",)
INPUT_KINDS = ("audio_text", "audio", "text", "none")
INDEX_FIELDS = (
    "split",
    "rows",
    "per_class",
    "per_class_inputs",
    "shards",
    "source_manifest",
    "rows_sha256",
)
SHARD_NAME = re.compile(r"^(?P<split>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.tfrecord$")
SPLIT_NAME = re.compile(r"^[A-Za-z0-9_.]+$")
SHARD_HINT = "write the shards with `python -m bimer_tf.data.shard --manifest M --out DIR`"


# --- names ---------------------------------------------------------------


def check_split_name(split: str) -> str:
    if not SPLIT_NAME.match(split or ""):
        raise InputError(
            f"split name {split!r} cannot name shard files; use letters, digits, '_' or '.'"
        )
    return split


def shard_name(split: str, index: int, count: int) -> str:
    """`<split>-NNNNN-of-MMMMM.tfrecord`, the `index`-th (from 0) of `count` shards."""
    check_split_name(split)
    if not 0 <= index < count <= 99999:
        raise InputError(f"shard {index} of {count}: expected 0 <= index < count <= 99999")
    return f"{split}-{index:05d}-of-{count:05d}{SHARD_SUFFIX}"


def shard_names(split: str, count: int) -> list[str]:
    return [shard_name(split, index, count) for index in range(count)]


def shard_glob(split: str) -> str:
    """The glob of a split's shard files (for `tf.data.Dataset.list_files`)."""
    return f"{check_split_name(split)}-?????-of-?????{SHARD_SUFFIX}"


def parse_shard_name(name: str) -> tuple[str, int, int] | None:
    """(split, index, count) of a shard file name, or None for any other name."""
    match = SHARD_NAME.match(name.rsplit("/", 1)[-1])
    if match is None:
        return None
    return match["split"], int(match["index"]), int(match["count"])


def index_name(split: str) -> str:
    return f"{check_split_name(split)}{INDEX_SUFFIX}"


def join(directory: str | Path, name: str) -> str:
    """`directory/name` for a local folder or an object-store URL (gs://...)."""
    directory = str(directory)
    if is_remote(directory):
        return directory.rstrip("/") + "/" + name
    return str(Path(directory) / name)


def is_remote(path: str | Path) -> bool:
    return "://" in str(path)


# --- samples -------------------------------------------------------------


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] -> int16, as the shards store them.

    Scaled by 32768 and rounded, so samples that came from a PCM16 WAV
    (int / 32768, what both `load_audio` and `tf.audio.decode_wav` give)
    are stored exactly. Audio that would clip is scaled down to a peak of
    0.999 first (the rule of `bimer_tf.audio.wav.write_pcm16`).
    """
    if np.asarray(samples).dtype == np.int16:
        return np.asarray(samples)
    samples = np.asarray(samples, dtype=np.float32)
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if peak > 1.0:
        samples = samples * np.float32(0.999 / peak)
    return np.clip(np.rint(samples * 32768.0), -32768, 32767).astype(np.int16)


def to_float(pcm16: np.ndarray) -> np.ndarray:
    """int16 samples -> float32 in [-1, 1): what `tf.audio.decode_wav` gives."""
    return pcm16.astype(np.float32) / np.float32(32768.0)


def pcm16_bytes(samples: np.ndarray | None) -> bytes:
    if samples is None:
        return b""
    if np.asarray(samples).dtype != np.int16:
        samples = to_pcm16(samples)
    return np.asarray(samples, dtype="<i2").tobytes()


# --- examples ------------------------------------------------------------


def _text_bytes(value) -> bytes:
    return b"" if value is None else str(value).encode("utf-8")


def _text_value(data: bytes) -> str | None:
    return data.decode("utf-8") if data else None


def _session_bytes(value) -> bytes:
    return b"" if value is None else json.dumps(value, ensure_ascii=False).encode("utf-8")


def _session_value(data: bytes):
    return json.loads(data.decode("utf-8")) if data else None


def encode_example(row: dict, samples: np.ndarray | None) -> bytes:
    """A manifest row and its 16 kHz mono samples -> a serialized `tf.train.Example`.

    `samples` (float in [-1, 1], or int16) replaces the row's `audio` path;
    None makes a text-only row. `id`, `label` and `corpus` must not be empty.
    """
    from tensorflow.core.example import example_pb2, feature_pb2

    for name in REQUIRED_FIELDS:
        if not row.get(name):
            raise InputError(f"row {row.get('id')!r}: '{name}' is empty; every shard row needs one")
    audio = pcm16_bytes(samples)
    values = {name: _text_bytes(row.get(name)) for name in TEXT_FIELDS}
    values["session"] = _session_bytes(row.get("session"))
    values["audio"] = audio
    feature = {
        name: feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=[value]))
        for name, value in values.items()
    }
    feature["duration_s"] = feature_pb2.Feature(
        float_list=feature_pb2.FloatList(value=[len(audio) / 2 / SAMPLE_RATE])
    )
    example = example_pb2.Example(features=feature_pb2.Features(feature=feature))
    return example.SerializeToString(deterministic=True)


def decode_example(data: bytes) -> tuple[dict, np.ndarray | None]:
    """Serialized Example -> (row, int16 samples or None).

    The row has the manifest fields in their order, then `duration_s`; its
    `audio` is the sha256 (hex) of the PCM16 bytes, or null for a text-only
    row: the form `row_sha256` hashes.
    """
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example.FromString(data)
    feature = example.features.feature
    missing = [name for name in FEATURES if name not in feature]
    if missing:
        raise InputError(f"not a bimer_tf shard example: features {missing} are missing")

    def one(name) -> bytes:
        values = feature[name].bytes_list.value
        if len(values) != 1:
            raise InputError(f"shard example feature '{name}' holds {len(values)} values, expected 1")
        return values[0]

    audio = one("audio")
    if len(audio) % 2:
        raise InputError("shard example 'audio' has an odd byte count; PCM16 samples take 2 bytes each")
    samples = np.frombuffer(audio, dtype="<i2").astype(np.int16) if audio else None
    row = {}
    for name in MANIFEST_FIELDS:
        if name == "audio":
            row[name] = hashlib.sha256(audio).hexdigest() if audio else None
        elif name == "session":
            row[name] = _session_value(one("session"))
        else:
            row[name] = _text_value(one(name))
    duration = feature["duration_s"].float_list.value
    row["duration_s"] = float(duration[0]) if duration else 0.0
    return row, samples


def canonical_row(row: dict, samples: np.ndarray | None) -> dict:
    """The decoded form of a manifest row and its samples (what a shard reads back),
    without serializing an Example: nulls and empty strings both null, `audio`
    the sha256 of the PCM16 bytes, `duration_s` as float32 stores it."""
    audio = pcm16_bytes(samples)
    decoded = {}
    for name in MANIFEST_FIELDS:
        if name == "audio":
            decoded[name] = hashlib.sha256(audio).hexdigest() if audio else None
        elif name == "session":
            decoded[name] = _session_value(_session_bytes(row.get("session")))
        else:
            decoded[name] = _text_value(_text_bytes(row.get(name)))
    decoded["duration_s"] = float(np.float32(len(audio) / 2 / SAMPLE_RATE))
    return decoded


def row_sha256(decoded_row: dict) -> str:
    """sha256 (hex) of a decoded row's canonical JSON (sorted keys, no spaces, UTF-8)."""
    text = json.dumps(decoded_row, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def rows_sha256(row_digests: dict[str, str]) -> str:
    """The index's `rows_sha256` from {row id: row_sha256}: the digests in id order,
    each followed by a newline, hashed."""
    digest = hashlib.sha256()
    for row_id in sorted(row_digests):
        digest.update(row_digests[row_id].encode("ascii") + b"\n")
    return digest.hexdigest()


def input_kind(decoded_row: dict) -> str:
    """Which of `INPUT_KINDS` a decoded row holds (text counts when not blank)."""
    has_audio = decoded_row["audio"] is not None
    has_text = bool((decoded_row["text"] or "").strip())
    if has_audio:
        return "audio_text" if has_text else "audio"
    return "text" if has_text else "none"


def parse_features():
    """The `tf.io.parse_single_example` spec of a shard example."""
    import tensorflow as tf

    spec = {name: tf.io.FixedLenFeature([], tf.string) for name in TEXT_FIELDS + ("session", "audio")}
    spec["duration_s"] = tf.io.FixedLenFeature([], tf.float32)
    return spec


def pcm16_wav(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """int16 samples as a mono 16-bit PCM WAV file (a 44-byte header and the same
    samples): what a model's `audio_wav` input takes."""
    import struct

    data = pcm16_bytes(samples)
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16, 1, 1,
        sample_rate, sample_rate * 2, 2, 16, b"data", len(data),
    )
    return header + data


def pcm16_waveform(audio_bytes):
    """In-graph: a scalar string of PCM16 little-endian bytes -> float32 samples,
    the same values `tf.audio.decode_wav` gives for those samples in a WAV."""
    import tensorflow as tf

    samples = tf.io.decode_raw(audio_bytes, tf.int16, little_endian=True)
    return tf.cast(samples, tf.float32) / 32768.0


# --- the index -----------------------------------------------------------


@dataclass
class SplitSummary:
    """Counts and digests of a split's decoded rows; `index()` gives its index.

    Add rows in any order, in any number of summaries, and `merge` them:
    the result does not depend on either.
    """

    per_class: Counter = field(default_factory=Counter)
    per_class_inputs: dict = field(default_factory=dict)
    digests: dict = field(default_factory=dict)  # row id -> row_sha256

    @property
    def rows(self) -> int:
        return len(self.digests)

    def add(self, decoded_row: dict) -> None:
        row_id = decoded_row["id"]
        if row_id in self.digests:
            raise InputError(f"row id {row_id!r} appears twice in one split; ids must be unique")
        self.digests[row_id] = row_sha256(decoded_row)
        label = decoded_row["label"]
        self.per_class[label] += 1
        kinds = self.per_class_inputs.setdefault(label, dict.fromkeys(INPUT_KINDS, 0))
        kinds[input_kind(decoded_row)] += 1

    def merge(self, other: "SplitSummary") -> "SplitSummary":
        twice = set(self.digests) & set(other.digests)
        if twice:
            raise InputError(f"row ids {sorted(twice)[:3]} appear twice in one split; ids must be unique")
        merged = SplitSummary(self.per_class + other.per_class, {}, {**self.digests, **other.digests})
        for source in (self.per_class_inputs, other.per_class_inputs):
            for label, kinds in source.items():
                target = merged.per_class_inputs.setdefault(label, dict.fromkeys(INPUT_KINDS, 0))
                for kind, count in kinds.items():
                    target[kind] += count
        return merged

    def index(self, split: str, shards: list[dict], source_manifest: str | None) -> dict:
        """The index document; `shards` are [{"file": name, "rows": n}] in shard order."""
        return {
            "split": split,
            "rows": self.rows,
            "per_class": dict(sorted(self.per_class.items())),
            "per_class_inputs": {k: self.per_class_inputs[k] for k in sorted(self.per_class_inputs)},
            "shards": [{"file": s["file"], "rows": int(s["rows"])} for s in shards],
            "source_manifest": source_manifest,
            "rows_sha256": rows_sha256(self.digests),
        }


def check_index(index: dict, where: str) -> dict:
    """Raises InputError (naming `where` and the remedy) unless `index` is consistent."""

    def bad(problem: str):
        return InputError(f"{where}: {problem}; the index does not match the format, {SHARD_HINT} again")

    if not isinstance(index, dict):
        raise bad("not a JSON object")
    missing = [name for name in INDEX_FIELDS if name not in index]
    if missing:
        raise bad(f"missing fields {missing}")
    split = index["split"]
    if not isinstance(split, str) or not SPLIT_NAME.match(split):
        raise bad(f"'split' {split!r} is not a split name")
    rows = index["rows"]
    if not isinstance(rows, int) or rows < 0:
        raise bad(f"'rows' {rows!r} is not a count")
    per_class = index["per_class"]
    if not isinstance(per_class, dict) or sum(per_class.values()) != rows:
        raise bad(f"'per_class' adds up to {sum(per_class.values()) if isinstance(per_class, dict) else '?'}, not rows={rows}")
    inputs = index["per_class_inputs"]
    if not isinstance(inputs, dict) or set(inputs) != set(per_class) or any(
        set(kinds) != set(INPUT_KINDS) or sum(kinds.values()) != per_class[label]
        for label, kinds in inputs.items()
    ):
        raise bad(f"'per_class_inputs' must hold {list(INPUT_KINDS)} per class, adding up to 'per_class'")
    shards = index["shards"]
    if not isinstance(shards, list) or not shards:
        raise bad("'shards' lists no shard files")
    expected = shard_names(split, len(shards))
    for position, shard in enumerate(shards):
        if not isinstance(shard, dict) or shard.get("file") != expected[position]:
            raise bad(f"shard {position} should be named {expected[position]}, got {shard!r}")
        if not isinstance(shard.get("rows"), int) or shard["rows"] < 0:
            raise bad(f"shard {expected[position]} has no row count")
    if sum(shard["rows"] for shard in shards) != rows:
        raise bad(f"the shards' rows add up to {sum(s['rows'] for s in shards)}, not rows={rows}")
    digest = index["rows_sha256"]
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise bad(f"'rows_sha256' {digest!r} is not a sha256 hex digest")
    return index


def _open(path: str, mode: str):
    if is_remote(path):
        import tensorflow as tf

        return tf.io.gfile.GFile(path, mode)
    return open(path, mode, encoding="utf-8")


def _exists(path: str) -> bool:
    if is_remote(path):
        import tensorflow as tf

        return tf.io.gfile.exists(path)
    return Path(path).is_file()


def write_index(directory: str | Path, index: dict) -> str:
    """Checks `index` and writes it as `<directory>/<split>.index.json`; returns the path."""
    path = join(directory, index_name(index.get("split", "")))
    check_index(index, path)
    text = json.dumps(index, indent=1, ensure_ascii=False) + "\n"
    if is_remote(path):
        with _open(path, "w") as handle:
            handle.write(text)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(path + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return path


def read_index(directory: str | Path, split: str, check_files: bool = True) -> dict:
    """Reads and checks `<directory>/<split>.index.json` (and, with `check_files`,
    that each shard file it lists exists)."""
    path = join(directory, index_name(split))
    if not _exists(path):
        raise InputError(
            f"no shard index {path}: the folder holds no '{split}' split of shards; "
            f"{SHARD_HINT} (or check data.shards and the split name)"
        )
    try:
        with _open(path, "r") as handle:
            index = json.loads(handle.read())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path} is not valid JSON ({error}); {SHARD_HINT} again") from None
    check_index(index, path)
    if index["split"] != split:
        raise InputError(f"{path} indexes split '{index['split']}', not '{split}'; {SHARD_HINT} again")
    if check_files:
        absent = [s["file"] for s in index["shards"] if not _exists(join(directory, s["file"]))]
        if absent:
            raise InputError(
                f"{path} lists shard files that are missing: {absent[:3]}"
                f"{f' and {len(absent) - 3} more' if len(absent) > 3 else ''}; "
                "copy the whole folder, or " + SHARD_HINT + " again"
            )
    return index


def write_report(directory: str | Path, report: dict) -> str:
    """Writes the shard command's report (`shard_report.json`): what was read,
    written and skipped per split, and the protocol and fold the splits came from."""
    path = join(directory, REPORT_NAME)
    text = json.dumps(report, indent=1, ensure_ascii=False) + "\n"
    if is_remote(path):
        with _open(path, "w") as handle:
            handle.write(text)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text, encoding="utf-8")
    return path


def read_report(directory: str | Path) -> dict | None:
    """The shard command's report in a shard folder, or None when there is none
    (a folder another writer made need not have one)."""
    path = join(directory, REPORT_NAME)
    if not _exists(path):
        return None
    try:
        with _open(path, "r") as handle:
            return json.loads(handle.read())
    except (OSError, json.JSONDecodeError):
        return None


def shard_paths(directory: str | Path, index: dict) -> list[str]:
    """The full paths of an index's shard files, in shard order."""
    return [join(directory, shard["file"]) for shard in index["shards"]]


def list_splits(directory: str | Path) -> list[str]:
    """The splits that have an index in a local shard folder."""
    return sorted(p.name[: -len(INDEX_SUFFIX)] for p in Path(directory).glob(f"*{INDEX_SUFFIX}"))


# --- planning and reading ------------------------------------------------


def example_bytes_estimate(num_samples: int, row: dict | None = None) -> int:
    """About how many bytes a row's record takes (audio, text and framing)."""
    text = sum(len(_text_bytes((row or {}).get(name))) for name in TEXT_FIELDS)
    return 2 * int(num_samples) + text + 160


def plan_shards(
    total_bytes: int, rows: int, shard_mb: float = DEFAULT_SHARD_MB, min_shards: int = 1
) -> int:
    """How many shards: enough that none holds much over `shard_mb` MiB, at
    least `min_shards` (e.g. the number of workers), at most one per row."""
    if shard_mb <= 0:
        raise InputError(f"--shard-mb must be positive, got {shard_mb}")
    if min_shards < 1:
        raise InputError(f"--min-shards must be at least 1, got {min_shards}")
    count = max(min_shards, math.ceil(total_bytes / (shard_mb * MB)))
    return max(1, min(count, rows, 99999))


def shard_ranges(rows: int, count: int) -> list[range]:
    """Positions of the rows each of `count` shards gets: contiguous, sizes differing by at most one."""
    return [range(index * rows // count, (index + 1) * rows // count) for index in range(count)]


def read_shard(path: str):
    """Yields (row, samples) of every example in one shard file, in order."""
    import tensorflow as tf

    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        yield decode_example(record)


def read_split(directory: str | Path, split: str):
    """Yields (row, samples) of a split's rows, shard after shard (checks the index first)."""
    index = read_index(directory, split)
    for path in shard_paths(directory, index):
        yield from read_shard(path)


def verify_split(directory: str | Path, split: str) -> dict:
    """Reads every row of a split and checks it against its index (counts and
    `rows_sha256`); returns the index. Raises InputError on a mismatch."""
    index = read_index(directory, split)
    summary = SplitSummary()
    for shard, path in zip(index["shards"], shard_paths(directory, index)):
        count = 0
        for row, _ in read_shard(path):
            summary.add(row)
            count += 1
        if count != shard["rows"]:
            raise InputError(f"{path} holds {count} rows, its index says {shard['rows']}; {SHARD_HINT} again")
    actual = summary.index(split, index["shards"], index["source_manifest"])
    for name in ("per_class", "per_class_inputs", "rows_sha256"):
        if actual[name] != index[name]:
            raise InputError(
                f"{join(directory, index_name(split))}: '{name}' does not match the shards' rows; "
                f"{SHARD_HINT} again"
            )
    return index


# --- writing -------------------------------------------------------------


class SplitWriter:
    """Writes one split's `count` shard files in shard order, then its index.

        writer = SplitWriter(out, "train", count=4, source_manifest="manifest.jsonl")
        writer.write(shard, encode_example(row, samples), canonical_row(row, samples))
        index = writer.close()

    Rows go to shard `shard` (0 <= shard < count, never decreasing); shards
    that get no rows are written empty. Local shard files are written under a
    `.part` name and renamed when complete, and shard files of the split left
    by an earlier write with another shard count are removed.
    """

    def __init__(self, directory: str | Path, split: str, count: int, source_manifest: str | None = None):
        self.directory = str(directory)
        self.split = check_split_name(split)
        self.names = shard_names(split, count)
        self.source_manifest = source_manifest
        self.rows = [0] * count
        self.summary = SplitSummary()
        self._shard = -1
        self._writer = None
        if not is_remote(self.directory):
            Path(self.directory).mkdir(parents=True, exist_ok=True)

    def _path(self, shard: int) -> str:
        return join(self.directory, self.names[shard])

    def _open(self, shard: int) -> None:
        import tensorflow as tf

        if shard < self._shard or shard >= len(self.names):
            raise ValueError(f"shard {shard} after shard {self._shard} of {len(self.names)}")
        while self._shard < shard:
            self._close_current()
            self._shard += 1
            path = self._path(self._shard)
            self._writer = tf.io.TFRecordWriter(path if is_remote(path) else path + ".part")

    def _close_current(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        path = self._path(self._shard)
        if not is_remote(path):
            Path(path + ".part").replace(path)

    def write(self, shard: int, record: bytes, decoded_row: dict) -> None:
        self._open(shard)
        self.summary.add(decoded_row)
        self._writer.write(record)
        self.rows[shard] += 1

    def close(self) -> dict:
        """Finishes the shard files, writes the index and returns it."""
        self._open(len(self.names) - 1)
        self._close_current()
        if not is_remote(self.directory):
            keep = set(self.names)
            for stale in Path(self.directory).glob(shard_glob(self.split)):
                if stale.name not in keep:
                    stale.unlink()
        shards = [{"file": name, "rows": rows} for name, rows in zip(self.names, self.rows)]
        index = self.summary.index(self.split, shards, self.source_manifest)
        write_index(self.directory, index)
        return index


def write_split(
    directory: str | Path,
    split: str,
    items,
    *,
    shard_mb: float = DEFAULT_SHARD_MB,
    min_shards: int = 1,
    count: int | None = None,
    source_manifest: str | None = None,
) -> dict:
    """Writes a list of (row, samples or None) as one split's shards and index;
    returns the index. `count` fixes the number of shards, otherwise `plan_shards`."""
    items = list(items)
    if count is None:
        total = sum(example_bytes_estimate(0 if s is None else len(s), r) for r, s in items)
        count = plan_shards(total, len(items), shard_mb, min_shards)
    writer = SplitWriter(directory, split, count, source_manifest)
    for shard, positions in enumerate(shard_ranges(len(items), count)):
        for position in positions:
            row, samples = items[position]
            writer.write(shard, encode_example(row, samples), canonical_row(row, samples))
    return writer.close()
