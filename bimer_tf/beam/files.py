"""Files on any filesystem Beam knows: local paths, gs://, s3://, hdfs://, azfs://.

Local paths take the project's own readers unchanged (`read_manifest`,
`fold_rows`, `find_audio_files`), so their checks and messages are the
single-machine tools'. A remote manifest or splits file is copied to a
private temporary folder and read by the same functions; its rows' `audio`
paths are then resolved against the remote folder instead (a manifest's
audio paths are relative to the manifest).
"""

from __future__ import annotations

import json
import posixpath
import tempfile
from pathlib import Path

from bimer_tf.data import shards
from bimer_tf.data.manifest import SPLIT_NAMES, read_manifest, read_splits, select_fold
from bimer_tf.errors import InputError

is_remote = shards.is_remote
join = shards.join


def _filesystems():
    from bimer_tf.beam.runner import import_beam

    import_beam()
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def read_bytes(path: str) -> bytes:
    """The bytes of a file (uncompressed: no guess from the name's suffix)."""
    from apache_beam.io.filesystem import CompressionTypes

    with _filesystems().open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        return handle.read()


def write_bytes(path: str, data: bytes) -> None:
    from apache_beam.io.filesystem import CompressionTypes

    with _filesystems().create(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.write(data)


def exists(path: str) -> bool:
    return _filesystems().exists(path)


def match(pattern: str) -> list[str]:
    """The files a glob pattern matches, sorted (none: an empty list)."""
    from apache_beam.io.filesystem import BeamIOError

    try:
        result = _filesystems().match([pattern])[0]
    except BeamIOError:
        return []
    return sorted(metadata.path for metadata in result.metadata_list)


def delete(paths: list[str]) -> None:
    if paths:
        _filesystems().delete(list(paths))


def resolve(folder: str, relative: str) -> str:
    """`relative` (a manifest's audio path) against a remote `folder`, '..' resolved."""
    if is_remote(relative) or relative.startswith("/"):
        return relative
    scheme, _, rest = folder.partition("://")
    return f"{scheme}://" + posixpath.normpath(posixpath.join(rest, relative))


def parent(path: str) -> str:
    """The folder of a local path or a URL."""
    if is_remote(path):
        return path.rstrip("/").rsplit("/", 1)[0]
    return str(Path(path).resolve().parent)


def _stage(path: str, folder: Path, name: str) -> Path:
    """A local copy of a remote file (InputError when it does not exist)."""
    if not exists(path):
        raise InputError(f"not found: {path}")
    local = folder / name
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(read_bytes(path))
    return local


def _raw_rows(local_manifest: Path) -> list[dict]:
    """A manifest's rows as written (audio paths relative to it)."""
    lines = local_manifest.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _remote_audio(local_manifest: Path, remote_folder: str) -> dict[str, str | None]:
    """{row id: its audio resolved against `remote_folder`} (call after `read_manifest` checked the file)."""
    return {
        row["id"]: None if row["audio"] is None else resolve(remote_folder, row["audio"])
        for row in _raw_rows(local_manifest)
    }


def read_manifest_rows(manifest: str) -> list[dict]:
    """`read_manifest` of a local or remote manifest (audio paths absolute or URLs)."""
    if not is_remote(manifest):
        return read_manifest(manifest)
    with tempfile.TemporaryDirectory(prefix="bimer_tf_beam_") as folder:
        local = _stage(manifest, Path(folder), "manifest.jsonl")
        rows = read_manifest(local)
        audio = _remote_audio(local, parent(manifest))
    for row in rows:
        row["audio"] = audio[row["id"]]
    return rows


def read_fold(manifest: str, splits: str | None, fold: str | None):
    """(protocol, fold name, {split: rows}): `bimer_tf.data.shard.fold_rows` for local or remote files."""
    from bimer_tf.data.shard import fold_rows

    if not is_remote(manifest) and (splits is None or not is_remote(splits)):
        return fold_rows(manifest, splits, fold)
    with tempfile.TemporaryDirectory(prefix="bimer_tf_beam_") as folder:
        folder = Path(folder)
        local_manifest = _stage(manifest, folder / "manifest", "manifest.jsonl") if is_remote(manifest) else Path(manifest)
        read_manifest(local_manifest)  # its checks and messages, before anything else is read
        main_ids = {row["id"] for row in _raw_rows(local_manifest)}  # these rows win, as in fold_rows
        audio = _remote_audio(local_manifest, parent(manifest)) if is_remote(manifest) else {}
        local_splits = None
        if splits is not None:
            local_splits = _stage(splits, folder / "splits", "splits.json") if is_remote(splits) else Path(splits)
            if is_remote(splits):
                # The fold's own manifests may add augmented rows (`split --aug-manifest`).
                name = select_fold(read_splits(local_splits)[1], fold).name
                for split in SPLIT_NAMES:
                    remote = join(parent(splits), f"{name}/{split}.jsonl")
                    if exists(remote):
                        staged = _stage(remote, folder / "splits" / name, f"{split}.jsonl")
                        read_manifest(staged)
                        for row_id, path in _remote_audio(staged, parent(remote)).items():
                            if row_id not in main_ids:
                                audio.setdefault(row_id, path)
        protocol, fold_name, split_rows = fold_rows(local_manifest, local_splits, fold)
    for rows in split_rows.values():
        for row in rows:
            if row["audio"] is not None and row["id"] in audio:
                row["audio"] = audio[row["id"]]
    return protocol, fold_name, split_rows
