"""GGUF reader: header, metadata and tensor table, in pure Python.

Only the header is parsed into Python objects. Tensor bytes stay where they are (a memory map
natively, chunks of JS memory in the browser) and reach the GPU through `ByteSource.view`, so the
weights never pass through Python lists or the wasm heap.
Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .errors import ModelFileError

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32

# ggml tensor types: id -> (name, elements per block, bytes per block). Sizes of the types the engine
# cannot run are kept too, so an unsupported file still parses and the error can name the type.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292), 16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
}

# Metadata value types: id -> struct format of a scalar (strings and arrays are handled apart).
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def ggml_type_name(type_id: int) -> str:
    """The ggml name of a tensor type id, e.g. 3 -> "Q4_1"."""
    return GGML_TYPES.get(type_id, (f"type {type_id}",))[0]


class ByteSource(Protocol):
    """Random access to a model's bytes without loading them all into Python."""

    size: int

    def read(self, offset: int, n: int) -> bytes:
        """Copy `n` bytes into Python (for the header only)."""

    def view(self, offset: int, n: int) -> Any:
        """A zero-copy view of `n` bytes, in the form the GPU backend uploads from."""


class FileSource:
    """A memory-mapped local file."""

    def __init__(self, path: str | Path):
        path = Path(path)
        try:
            with open(path, "rb") as f:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except FileNotFoundError:
            raise ModelFileError(f"model file not found: {path}") from None
        except (IsADirectoryError, PermissionError, ValueError, OSError) as e:
            # mmap of an empty file raises ValueError; directories and permissions raise OSError kinds
            raise ModelFileError(f"cannot read model file {path}: {e}") from None
        self.size = len(self._map)
        self.path = path

    def read(self, offset: int, n: int) -> bytes:
        return self._map[offset : offset + n]

    def view(self, offset: int, n: int) -> memoryview:
        return memoryview(self._map)[offset : offset + n]


class BytesSource:
    """Bytes already in memory (tests, small files)."""

    def __init__(self, data: bytes):
        self._data = memoryview(data)
        self.size = len(data)

    def read(self, offset: int, n: int) -> bytes:
        return bytes(self._data[offset : offset + n])

    def view(self, offset: int, n: int) -> memoryview:
        return self._data[offset : offset + n]


@dataclass(frozen=True)
class TensorInfo:
    """One entry of the tensor table. `shape` is ggml's: shape[0] is the contiguous (row) length."""

    name: str
    shape: tuple[int, ...]
    type: int
    offset: int  # absolute, in the file
    nbytes: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def type_name(self) -> str:
        return ggml_type_name(self.type)


@dataclass
class GGUFFile:
    """A parsed GGUF: its metadata, its tensor table and the source that holds the tensor bytes."""

    version: int
    metadata: dict[str, Any]
    tensors: dict[str, TensorInfo]
    source: ByteSource
    data_offset: int

    def view(self, name: str) -> Any:
        """A zero-copy view of one tensor's bytes."""
        t = self.tensors[name]
        return self.source.view(t.offset, t.nbytes)


class _Cursor:
    """Sequential reads over a source, fetching the header in chunks as it goes."""

    CHUNK = 1 << 20

    def __init__(self, source: ByteSource):
        self.source = source
        self.buf = b""
        self.base = 0  # file offset of buf[0]
        self.pos = 0  # file offset of the next read

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > self.source.size:
            raise ModelFileError(f"GGUF header is truncated (needs byte {end}, file has {self.source.size})")
        if end > self.base + len(self.buf):
            self.buf = self.buf[self.pos - self.base :] + self.source.read(
                self.base + len(self.buf), max(self.CHUNK, end - self.base - len(self.buf))
            )
            self.base = self.pos
        start = self.pos - self.base
        self.pos = end
        return self.buf[start : start + n]

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        raw = self.take(self.unpack("<Q"))
        # Vocabularies hold byte-level pieces that are not always valid UTF-8; keep them lossless.
        return raw.decode("utf-8", errors="surrogateescape")

    def value(self, vtype: int) -> Any:
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            item_type, count = self.unpack("<I"), self.unpack("<Q")
            if item_type in _SCALAR:  # bulk-unpack numeric arrays: vocabularies have ~10^5 entries
                fmt = _SCALAR[item_type]
                return list(struct.unpack(f"<{count}{fmt[1]}", self.take(count * struct.calcsize(fmt))))
            return [self.value(item_type) for _ in range(count)]
        if vtype not in _SCALAR:
            raise ModelFileError(f"GGUF metadata has an unknown value type {vtype}")
        return self.unpack(_SCALAR[vtype])


def parse_gguf(source: ByteSource) -> GGUFFile:
    """Parse the header of a GGUF held by `source`; tensor bytes are located, not read."""
    cur = _Cursor(source)
    if source.read(0, 4) != GGUF_MAGIC:
        raise ModelFileError("not a GGUF file (bad magic); Hearth reads GGUF models, as llama.cpp writes them")
    cur.take(4)
    version = cur.unpack("<I")
    if version not in (2, 3):
        raise ModelFileError(f"unsupported GGUF version {version} (Hearth reads versions 2 and 3)")
    n_tensors, n_kv = cur.unpack("<Q"), cur.unpack("<Q")
    metadata = {}
    for _ in range(n_kv):
        key = cur.string()
        metadata[key] = cur.value(cur.unpack("<I"))
    infos = []
    for _ in range(n_tensors):
        name = cur.string()
        shape = tuple(cur.unpack("<Q") for _ in range(cur.unpack("<I")))
        infos.append((name, shape, cur.unpack("<I"), cur.unpack("<Q")))
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    data_offset = -(-cur.pos // alignment) * alignment
    tensors = {}
    for name, shape, type_id, rel in infos:
        info = TensorInfo(name, shape, type_id, data_offset + rel, _nbytes(name, shape, type_id))
        if info.offset + info.nbytes > source.size:
            raise ModelFileError(
                f"model file is truncated: tensor {name} ends at byte {info.offset + info.nbytes}, "
                f"file has {source.size}"
            )
        tensors[name] = info
    return GGUFFile(version, metadata, tensors, source, data_offset)


def _nbytes(name: str, shape: tuple[int, ...], type_id: int) -> int:
    if type_id not in GGML_TYPES:
        raise ModelFileError(f"tensor {name} has unknown ggml type {type_id}")
    _, block, size = GGML_TYPES[type_id]
    n = 1
    for d in shape:
        n *= d
    return n // block * size


def open_gguf(path: str | Path) -> GGUFFile:
    """Memory-map and parse a local GGUF file."""
    return parse_gguf(FileSource(path))
