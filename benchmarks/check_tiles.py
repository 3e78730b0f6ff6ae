"""Prompts' tile products against a plain-Python reference, on whatever adapter the engine opens.

What bench_page.py's page runs inside the browser (Pyodide has no numpy) to check the tile kernels Chromium compiles
for its own GPU (f32 or f16 tiles) where the test suite cannot go; natively it checks wgpu's adapter the same way.
Q4_0 weights and Q4_K ones (a superblock's scales and minimums: the tiles decode every integer type through one
int_parts, those two its two shapes), a plain product and a GLU one each, over two token tiles and part of a third
and a partial row tile.

Usage: .venv/bin/python benchmarks/check_tiles.py [--f16-prompts]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import struct

from engine import kernels as K
from engine.products import TILE_TOKENS


def _f16(v: float) -> float:
    """v as the nearest f16 holds it."""
    return struct.unpack("<e", struct.pack("<e", v))[0]


def _q4_0_rows(rnd: random.Random, rows: int, n_in: int) -> tuple[bytes, list[list[float]]]:
    """Random Q4_0 rows: their GGUF bytes, and their weights (d * (q - 8), d as f16 holds it)."""
    raw, weights = bytearray(), []
    for _ in range(rows):
        row = []
        for _ in range(n_in // 32):
            d = _f16(rnd.uniform(0.01, 0.05))
            q = [rnd.randrange(16) for _ in range(32)]
            raw += struct.pack("<e", d) + bytes(q[i] | (q[i + 16] << 4) for i in range(16))
            row += [d * (v - 8) for v in q]
        weights.append(row)
    return bytes(raw), weights


def _q4_k_rows(rnd: random.Random, rows: int, n_in: int) -> tuple[bytes, list[list[float]]]:
    """Random Q4_K rows: their GGUF bytes (superblocks of 256: d, dmin, 12 bytes of 6-bit scales and minimums,
    128 of nibbles), and their weights (d scale q - dmin min of each 32 weights' own scale and minimum)."""
    raw, weights = bytearray(), []
    for _ in range(rows):
        row = []
        for _ in range(n_in // 256):
            d, dmin = _f16(rnd.uniform(1e-4, 1e-3)), _f16(rnd.uniform(0.0, 1e-3))
            sc, qs = bytes(rnd.randrange(256) for _ in range(12)), bytes(rnd.randrange(256) for _ in range(128))
            raw += struct.pack("<ee", d, dmin) + sc + qs
            for j in range(8):  # ggml's get_scale_min_k4
                if j < 4:
                    scale, minimum = sc[j] & 63, sc[j + 4] & 63
                else:
                    scale = (sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4)
                    minimum = (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4)
                chunk, shift = qs[32 * (j // 2):32 * (j // 2) + 32], 4 * (j % 2)
                row += [d * scale * ((q >> shift) & 0xF) - dmin * minimum for q in chunk]
        weights.append(row)
    return bytes(raw), weights


def _silu(v: float) -> float:
    return v / (1.0 + math.exp(-v))


async def check_product(device, f16_prompts: bool, glu: bool, wtype: int = K.Q4_0, n_in: int = 256,
                        n_out: int = 130, n_tokens: int = 2 * TILE_TOKENS + 5, seed: int = 7) -> dict:
    """One tile product on `device` against its reference (weights Q4_0 or Q4_K): the largest error over the
    largest output."""
    kernels = K.Kernels(device, variant="subgroup", f16_prompts=f16_prompts)
    if not kernels.tiles:
        return {"tiles": None}
    rnd = random.Random(seed)
    n_out = n_out // 2 if glu else n_out
    raw, w = (_q4_k_rows if wtype == K.Q4_K else _q4_0_rows)(rnd, 2 * n_out if glu else n_out, n_in)
    x = [[rnd.gauss(0.0, 1.0) for _ in range(n_in)] for _ in range(n_tokens)]
    x_bytes = struct.pack(f"<{n_tokens * n_in}f", *(v for row in x for v in row))
    x = [list(struct.unpack(f"<{n_in}f", x_bytes[4 * n_in * t:4 * n_in * (t + 1)])) for t in range(n_tokens)]
    buffers = []
    for data in (raw, x_bytes, b"\xff" * (4 * n_tokens * n_out)):  # y poisoned: NaN wherever it is not written
        buffers.append(device.create_buffer(len(data)))
        device.write_buffer(buffers[-1], data)
    w_buf, x_buf, y_buf = buffers
    op = kernels.matmul(w_buf, wtype, n_in, n_out, x_buf, y_buf, n_tokens, glu="silu" if glu else None)
    kernels.set_step(0, n_tokens)
    recorder = device.recorder()
    op.record(recorder, n_tokens)
    device.submit(recorder)
    got = struct.unpack(f"<{n_tokens * n_out}f", bytes(await device.read_buffer(y_buf, 0, 4 * n_tokens * n_out)))
    worst, scale, unwritten = 0.0, 0.0, 0
    for t in range(n_tokens):
        for r in range(n_out):
            want = sum(a * b for a, b in zip(w[r], x[t], strict=True))
            if glu:
                want = _silu(want) * sum(a * b for a, b in zip(w[n_out + r], x[t], strict=True))
            value = got[t * n_out + r]
            if math.isnan(value):
                unwritten += 1
                continue
            worst, scale = max(worst, abs(value - want)), max(scale, abs(want))
    return {"tiles": kernels.tiles_module(n_in), "type": "Q4_K" if wtype == K.Q4_K else "Q4_0", "glu": glu,
            "error": worst / max(scale, 1e-30), "unwritten": unwritten}


async def check_tiles(device, f16_prompts: bool) -> list[dict]:
    """check_product plain and with GLU, on Q4_0 and Q4_K weights."""
    return [await check_product(device, f16_prompts, glu, wtype) for wtype in (K.Q4_0, K.Q4_K)
            for glu in (False, True)]


def main() -> None:
    from engine.gpu import open_device

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--f16-prompts", action="store_true", help="f16 tiles (the adapter needs shader-f16)")
    args = parser.parse_args()

    async def run() -> list[dict]:
        return await check_tiles(await open_device(), args.f16_prompts)

    for result in asyncio.run(run()):
        print(result)


if __name__ == "__main__":
    main()
