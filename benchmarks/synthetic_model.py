"""A GGUF with a real model's header (metadata, tokenizer, tensor table) and made-up weights, gzipped small.

For speed runs on a machine the model cannot travel to (the device tool carries 64 MiB; the default model
is 98 MB): each tensor's bytes are one random stretch of blocks of its own type, repeated, so the file
compresses to a few MB. The GPU does the same work as on the real weights; the text it generates is noise
(benchmarks then ignore end-of-text, see bench_gpu.py).

The real models people run are too big to carry at all, so `--shape 1b|8b` writes the Llama-3.2-1B and
Llama-3.1-8B shapes (dim, layers, FFN, heads; SmolLM2's vocabulary and tokenizer from --model) in a weight mix:
Q8_0, Q4_K_M as llama.cpp mixes it (Q4_K, with Q6_K for attn_v, ffn_down and the tied head), or any one block
type (Q4_0, Q2_K, IQ4_XS, ...) in every matrix, the embedding in Q8_0. Those are written uncompressed (GBs;
meant to be made on the GPU machine itself).

Usage: .venv/bin/python benchmarks/synthetic_model.py [--model PATH] OUT.gguf.gz
       python benchmarks/synthetic_model.py --like SMALL.gguf --shape 8b --mix Q4_K_M OUT.gguf
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
    "Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,), "IQ4_NL": (0,), "IQ4_XS": (0,),
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


# (dim, layers, FFN, heads, KV heads) of the shapes speed is judged at.
SHAPES = {"1b": (2048, 16, 8192, 32, 8), "8b": (4096, 32, 14336, 32, 8)}
# Weight type per tensor role: (matrices, attn_v and ffn_down, token_embd), by mix.
# Any block type alone is a mix too: every matrix in it, the embedding Q8_0 (per-type decode, whole models).
MIXES = {name: (name, name, "Q8_0") for name in F16_FIELDS} | {"Q8_0": ("Q8_0", "Q8_0", "Q8_0"),
                                                              "Q4_K_M": ("Q4_K", "Q6_K", "Q6_K")}


def write_shape(like: Path, out: Path, shape: str, mix: str, seed: int = 0) -> None:
    """A llama-architecture GGUF of `shape` in weight `mix`, with `like`'s metadata and tokenizer (tied head)."""
    import gguf as gguf_py

    dim, layers, ffn, heads, kv = SHAPES[shape]
    small = open_gguf(like)
    arch = small.metadata["general.architecture"]
    overrides = {f"{arch}.embedding_length": dim, f"{arch}.block_count": layers, f"{arch}.feed_forward_length": ffn,
                 f"{arch}.attention.head_count": heads, f"{arch}.attention.head_count_kv": kv,
                 f"{arch}.rope.dimension_count": dim // heads}  # fmt: skip
    reader = gguf_py.GGUFReader(str(like))
    writer = gguf_py.GGUFWriter(str(out), arch)
    for f in reader.fields.values():
        if f.name.startswith("GGUF.") or f.name == "general.architecture":
            continue
        kind = f.types[0]
        value = overrides.get(f.name, f.contents())
        if kind == gguf_py.GGUFValueType.ARRAY:
            writer.add_key_value(f.name, value, kind, f.types[1])
        else:
            writer.add_key_value(f.name, value, kind)
    rng = np.random.default_rng(seed)
    ids = {name: t for t, (name, _, _) in GGML_TYPES.items()}
    matrix, sensitive, embedding = MIXES[mix]

    def add(name: str, rows: int, cols: int, type_name: str) -> None:
        _, block, block_bytes = GGML_TYPES[ids[type_name]]
        pattern = np.frombuffer(random_blocks(ids[type_name], 4096, rng), np.uint8).reshape(4096, block_bytes)
        n_blocks = rows * cols // block
        data = np.tile(pattern, (-(-n_blocks // 4096), 1))[:n_blocks].reshape(rows, cols // block * block_bytes)
        writer.add_tensor(name, data, raw_dtype=gguf_py.GGMLQuantizationType(ids[type_name]))

    vocab = len(small.metadata["tokenizer.ggml.tokens"])
    add("token_embd.weight", vocab, dim, embedding)
    writer.add_tensor("output_norm.weight", np.ones(dim, np.float32))
    head_dim = dim // heads
    for i in range(layers):
        b = f"blk.{i}."
        writer.add_tensor(b + "attn_norm.weight", np.ones(dim, np.float32))
        writer.add_tensor(b + "ffn_norm.weight", np.ones(dim, np.float32))
        for name, rows, cols, kind in (("attn_q", dim, dim, matrix), ("attn_k", kv * head_dim, dim, matrix),
                                       ("attn_v", kv * head_dim, dim, sensitive), ("attn_output", dim, dim, matrix),
                                       ("ffn_gate", ffn, dim, matrix), ("ffn_up", ffn, dim, matrix),
                                       ("ffn_down", dim, ffn, sensitive)):  # fmt: skip
            add(b + name + ".weight", rows, cols, kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", "--like", type=Path, default=None, help="the real GGUF (default: SmolLM2-135M Q4_1)")
    parser.add_argument("--shape", choices=sorted(SHAPES), help="write this shape (uncompressed) instead")
    parser.add_argument("--mix", choices=sorted(MIXES), default="Q4_0", help="the --shape's weight types")
    args = parser.parse_args()
    if args.shape:
        write_shape(args.model or default_model_path(), args.out, args.shape, args.mix)
    else:
        write_synthetic(args.model or default_model_path(), args.out)
    print(f"{args.out}: {args.out.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
