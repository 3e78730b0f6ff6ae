"""GGUF files for tests: small ones written with the `gguf` package (the format's reference writer), and a fast
reader of any (read_gguf) for the float64 reference."""

from __future__ import annotations

import math
import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np


def write_gguf(path: Path, arch: str, metadata: dict, tensors: dict[str, tuple[np.ndarray, int]]) -> Path:
    """A GGUF with `metadata` (key -> python value) and `tensors` (name -> (array or raw bytes, ggml type))."""
    writer = gguf.GGUFWriter(str(path), arch)
    for key, value in metadata.items():
        _add(writer, key, value)
    for name, (data, qtype) in tensors.items():
        writer.add_tensor(name, data, raw_dtype=gguf.GGMLQuantizationType(qtype))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _add(writer: gguf.GGUFWriter, key: str, value) -> None:
    if isinstance(value, bool):
        writer.add_bool(key, value)
    elif isinstance(value, int):
        writer.add_uint32(key, value)
    elif isinstance(value, float):
        writer.add_float32(key, value)
    elif isinstance(value, str):
        writer.add_string(key, value)
    elif isinstance(value, list):
        writer.add_array(key, value)
    else:
        raise TypeError(f"cannot write {key}={value!r}")


# ---------------------------------------------------------------- GGUF file

# gguf.GGUFReader builds numpy views per array element, which takes tens of seconds for a 262k-token
# vocabulary with its merges; this reads the same container (docs/gguf.md of ggml) in one pass.
_FORMATS = {  # a metadata number's struct format, which numpy reads as well
    gguf.GGUFValueType.UINT8: "<B", gguf.GGUFValueType.INT8: "<b", gguf.GGUFValueType.UINT16: "<H",
    gguf.GGUFValueType.INT16: "<h", gguf.GGUFValueType.UINT32: "<I", gguf.GGUFValueType.INT32: "<i",
    gguf.GGUFValueType.FLOAT32: "<f", gguf.GGUFValueType.BOOL: "?", gguf.GGUFValueType.UINT64: "<Q",
    gguf.GGUFValueType.INT64: "<q", gguf.GGUFValueType.FLOAT64: "<d",
}  # fmt: skip


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor's bytes are and how to read them."""

    type: gguf.GGMLQuantizationType
    shape: tuple[int, ...]  # (ne0, ne1, ...) as GGUF lists it: ne0 is the row length
    offset: int  # of its first byte in the file


@dataclass(frozen=True)
class GGUFFile:
    """A GGUF's metadata (arrays as lists) and tensor table; tensor bytes stay in the memory map."""

    metadata: dict[str, object]
    tensors: dict[str, TensorInfo]
    data: mmap.mmap
    read: set[str] = field(default_factory=set)  # names of the tensors `tensor` has returned

    def tensor(self, name: str) -> np.ndarray:
        """The tensor dequantised to float64, shaped (..., ne1, ne0)."""
        info = self.tensors[name]
        self.read.add(name)
        block_size, type_size = gguf.GGML_QUANT_SIZES[info.type]
        row_bytes = info.shape[0] // block_size * type_size
        raw = np.frombuffer(self.data, np.uint8, math.prod(info.shape[1:]) * row_bytes, info.offset)
        raw = raw.reshape(*reversed(info.shape[1:]), row_bytes)
        return np.asarray(gguf.quants.dequantize(raw, info.type), dtype=np.float64)


class _Cursor:
    """Reads little-endian GGUF values front to back."""

    def __init__(self, data: mmap.mmap):
        self.data, self.pos = data, 0

    def take(self, fmt: str):
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def strings(self, n: int) -> list[str]:
        """n strings in a row (a vocabulary's hundreds of thousands: a tight loop)."""
        data, pos, length_at, out = self.data, self.pos, struct.Struct("<Q").unpack_from, []
        for _ in range(n):
            end = pos + 8 + length_at(data, pos)[0]
            out.append(data[pos + 8 : end].decode("utf-8"))
            pos = end
        self.pos = pos
        return out

    def value(self, vtype: int):
        if vtype == gguf.GGUFValueType.STRING:
            return self.strings(1)[0]
        if vtype != gguf.GGUFValueType.ARRAY:
            return self.take(_FORMATS[vtype])
        item_type, n = self.take("<I"), self.take("<Q")
        if item_type == gguf.GGUFValueType.STRING:
            return self.strings(n)
        if item_type == gguf.GGUFValueType.ARRAY:
            return [self.value(item_type) for _ in range(n)]
        items = np.frombuffer(self.data, _FORMATS[item_type], n, self.pos)  # numbers in one read
        self.pos += items.nbytes
        return items.tolist()


def read_gguf(path: str | Path) -> GGUFFile:
    """Parses the header, metadata and tensor table of the GGUF at `path` (memory-mapped)."""
    with open(path, "rb") as f:
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    cursor = _Cursor(data)
    if data[:4] != b"GGUF" or cursor.take("<4xI") < 2:
        raise ValueError(f"{path} is not a little-endian GGUF of version 2 or later")
    n_tensors, n_kv = cursor.take("<Q"), cursor.take("<Q")
    metadata = {}
    for _ in range(n_kv):
        key = cursor.strings(1)[0]
        metadata[key] = cursor.value(cursor.take("<I"))
    table = []
    for _ in range(n_tensors):
        name = cursor.strings(1)[0]
        shape = tuple(cursor.take("<Q") for _ in range(cursor.take("<I")))
        table.append((name, gguf.GGMLQuantizationType(cursor.take("<I")), shape, cursor.take("<Q")))
    alignment = int(metadata.get("general.alignment", 32))
    start = -(-cursor.pos // alignment) * alignment  # tensor data begins at the next multiple
    tensors = {name: TensorInfo(qtype, shape, start + offset) for name, qtype, shape, offset in table}
    return GGUFFile(metadata, tensors, data)
