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


# Where a block of each type keeps its f16 scales (d, and m or dmin): the rest is random quants.
F16_FIELDS = {
    "Q4_0": (0,), "Q4_1": (0, 2), "Q5_0": (0,), "Q5_1": (0, 2), "Q8_0": (0,),
    "Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,),
}  # fmt: skip


def random_blocks(type_id: int, n_blocks: int, rng: np.random.Generator) -> bytes:
    """n_blocks valid blocks of a ggml type (F32/F16/BF16: blocks of one weight): no NaN or infinite scales."""
    name, _, block_bytes = GGML_TYPES[type_id]
    if name == "F32":  # norm weights in these models
        return rng.normal(1.0, 0.05, n_blocks).astype(np.float32).tobytes()
    if name in ("F16", "BF16"):
        w = rng.normal(0.0, 0.02, n_blocks).astype(np.float32)
        halves = w.astype(np.float16) if name == "F16" else (w.view(np.uint32) >> 16).astype(np.uint16)  # BF16: top
        return halves.tobytes()
    if name not in F16_FIELDS:
        raise SystemExit(f"no synthetic blocks for type {name}")
    raw = rng.integers(0, 256, (n_blocks, block_bytes), dtype=np.uint8)
    for at in F16_FIELDS[name]:
        raw[:, at : at + 2] = _scales(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    return raw.tobytes()


def unit(tensor: TensorInfo, rng: np.random.Generator) -> bytes:
    """One stretch of valid blocks of the tensor's type (no NaN or infinite scales)."""
    _, block, _ = GGML_TYPES[tensor.type]
    return random_blocks(tensor.type, UNIT_BLOCKS * (32 // block if block == 1 else 1), rng)


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
