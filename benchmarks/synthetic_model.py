"""A GGUF with a real model's header (metadata, tokenizer, tensor table) and made-up weights, gzipped small.

For speed runs on a machine the model cannot travel to (the device tool carries 64 MiB; the default model
is 98 MB): each tensor's bytes are one random stretch of blocks of its own type, repeated, so the file
compresses to a few MB. The GPU does the same work as on the real weights; the text it generates is noise
(benchmarks then ignore end-of-text, see bench_gpu.py).

Usage: .venv/bin/python benchmarks/synthetic_model.py [--model PATH] OUT.gguf.gz
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np

from engine.default_model import default_model_path
from engine.gguf import GGML_TYPES, TensorInfo, open_gguf

UNIT_BLOCKS = 256  # blocks of random content per tensor, repeated to its length


def _scales(rng: np.random.Generator, n: int) -> np.ndarray:
    """Block scales of a plausible size, as ggml stores them (f16)."""
    return rng.uniform(0.002, 0.01, n).astype(np.float16)


def unit(tensor: TensorInfo, rng: np.random.Generator) -> bytes:
    """One stretch of valid blocks of the tensor's type (no NaN or infinite scales)."""
    name, _, block_bytes = GGML_TYPES[tensor.type]
    if name == "F32":  # norm weights in these models
        return rng.normal(1.0, 0.05, UNIT_BLOCKS * 8).astype(np.float32).tobytes()
    if name == "F16":
        return rng.normal(0.0, 0.02, UNIT_BLOCKS * 16).astype(np.float16).tobytes()
    if name not in ("Q4_0", "Q4_1", "Q8_0"):
        raise SystemExit(f"{tensor.name}: no synthetic blocks for type {name}")
    d = _scales(rng, UNIT_BLOCKS)
    head = np.stack([d, (-8 * d).astype(np.float16)], 1) if name == "Q4_1" else d[:, None]  # d (and m = -8d)
    quants = rng.integers(0, 256, (UNIT_BLOCKS, block_bytes - head.nbytes // UNIT_BLOCKS), dtype=np.uint8)
    return b"".join(h.tobytes() + q.tobytes() for h, q in zip(head, quants, strict=True))


def write_synthetic(model: Path, out: Path, seed: int = 0) -> None:
    gguf = open_gguf(model)
    rng = np.random.default_rng(seed)
    tensors = sorted(gguf.tensors.values(), key=lambda t: t.offset)
    with gzip.open(out, "wb", compresslevel=6) as f:
        f.write(gguf.source.read(0, gguf.data_offset))  # header, metadata and tensor table, verbatim
        at = gguf.data_offset
        for tensor in tensors:
            f.write(b"\0" * (tensor.offset - at))  # alignment padding
            pattern = unit(tensor, rng)
            whole, rest = divmod(tensor.nbytes, len(pattern))
            f.write(pattern * whole + pattern[:rest])
            at = tensor.offset + tensor.nbytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", type=Path, default=None, help="the real GGUF (default: SmolLM2-135M Q4_1)")
    args = parser.parse_args()
    write_synthetic(args.model or default_model_path(), args.out)
    print(f"{args.out}: {args.out.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
