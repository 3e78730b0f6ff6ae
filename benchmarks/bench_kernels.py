"""Matrix-product kernels on the default model's shapes, next to numpy's f32 matmul in the same run.

Usage: .venv/bin/python benchmarks/bench_kernels.py [--tokens 64] [--rounds 5] [--variants scalar,subgroup]
One line per shape x variant x batch: time per dispatch, GB/s of weight bytes read and GFLOP/s; then
numpy's f32 matmul on the dequantised weights (the same bytes would be 4 per weight there), measured
in the same run so a busy machine slows both. Decode is T = 1 (matrix-vector), prefill T = --tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import gguf
import numpy as np

from engine import kernels as K
from engine.gpu import open_device

# (n_in, n_out, ggml type): SmolLM2-135M Q4_1's ffn up/gate, ffn down, and its Q8_0 output head.
SHAPES = [(576, 1536, K.Q4_1), (1536, 576, K.Q4_1), (576, 49152, K.Q8_0)]
NAMES = {K.Q4_0: "Q4_0", K.Q4_1: "Q4_1", K.Q8_0: "Q8_0"}


async def time_op(device, kernels, op, n_tokens: int, out, rounds: int, per_round: int) -> float:
    """Best seconds per dispatch over `rounds` command buffers of `per_round` dispatches each."""
    kernels.set_step(0, n_tokens)
    best = float("inf")
    for round_ in range(rounds + 1):  # round 0 compiles and warms up
        recorder = device.recorder()
        for _ in range(per_round):
            op.record(recorder, n_tokens)
        start = time.perf_counter()
        device.submit(recorder)
        await device.read_buffer(out, 0, 4)
        if round_:
            best = min(best, (time.perf_counter() - start) / per_round)
    return best


def time_numpy(w: np.ndarray, x: np.ndarray, rounds: int) -> float:
    best = float("inf")
    for _round in range(rounds + 1):
        start = time.perf_counter()
        for _ in range(5):
            x @ w.T
        best = min(best, (time.perf_counter() - start) / 5)
    return best


def line(label: str, seconds: float, nbytes: int, flops: int) -> str:
    rates = f"{nbytes / seconds / 1e9:7.2f} GB/s  {flops / seconds / 1e9:8.2f} GFLOP/s"
    return f"  {label:<22} {seconds * 1e6:9.0f} us  {rates}"


async def main(n_tokens: int, rounds: int, variants: list[str]) -> None:
    device = await open_device()
    print(f"adapter: {device.info.device} (software: {device.info.is_software})")
    rng = np.random.default_rng(0)
    for n_in, n_out, wtype in SHAPES:
        w = rng.standard_normal((n_out, n_in)).astype(np.float32)
        raw = gguf.quants.quantize(w, gguf.GGMLQuantizationType(wtype))
        w = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType(wtype)).astype(np.float32)
        x = rng.standard_normal((n_tokens, n_in)).astype(np.float32)
        print(f"{n_in} -> {n_out} {NAMES[wtype]} ({raw.nbytes / 1e6:.1f} MB)")
        w_buf = device.create_buffer(raw.nbytes)
        device.write_buffer(w_buf, raw.tobytes())
        x_buf, y_buf = device.create_buffer(x.nbytes), device.create_buffer(n_tokens * n_out * 4)
        device.write_buffer(x_buf, x.tobytes())
        per_round = max(2, int(1e7 // raw.nbytes))  # ~10 MB of weights a command buffer
        for variant in variants:
            kernels = K.Kernels(device, variant=variant)
            op = kernels.matmul(w_buf, wtype, n_in, n_out, x_buf, y_buf, n_tokens)
            for t in (1, n_tokens):
                seconds = await time_op(device, kernels, op, t, y_buf, rounds, per_round)
                print(line(f"{variant} T={t}", seconds, raw.nbytes, 2 * n_in * n_out * t))
        for t in (1, n_tokens):
            seconds = time_numpy(w, x[:t], rounds)
            print(line(f"numpy f32 T={t}", seconds, w.nbytes, 2 * n_in * n_out * t))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64, help="prefill batch (default 64)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds; the best counts (default 5)")
    parser.add_argument("--variants", default="scalar,subgroup", help="comma-separated kernel variants")
    args = parser.parse_args()
    asyncio.run(main(args.tokens, args.rounds, args.variants.split(",")))
