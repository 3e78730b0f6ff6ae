"""Matrix-product kernels on the default model's shapes, next to numpy's f32 matmul in the same run, and
every weight type on one shape.

Usage: .venv/bin/python benchmarks/bench_kernels.py [--tokens 64] [--rounds 5] [--variants scalar,subgroup]
                                                    [--types Q4_1,Q4_K,...] [--no-shapes]
One line per shape x variant x batch: time per dispatch, GB/s of weight bytes read and GFLOP/s; then
numpy's f32 matmul on the dequantised weights (the same bytes would be 4 per weight there), measured
in the same run so a busy machine slows both. Decode is T = 1 (matrix-vector), prefill T = --tokens.
Then, per weight type (random blocks, TYPE_SHAPE), GB/s of weight bytes for decode and prefill and
the ratio to Q4_1's in the same run; on CPU adapters also per second of CPU time summed over the
process's threads, which a machine busy with other work disturbs less than the wall clock. Where one
token's product quantises x first (GPUs' integer products), also the product's dispatch alone: what the
type's decoder reads, without the dispatch every type pays before it.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import gguf
import numpy as np
from synthetic_model import random_blocks

from engine import kernels as K
from engine.gguf import GGML_TYPES
from engine.gpu import open_device
from engine.kernel_ops import Op

# (n_in, n_out, ggml type): SmolLM2-135M Q4_1's ffn up/gate, ffn down, and its Q8_0 output head.
SHAPES = [(576, 1536, K.Q4_1), (1536, 576, K.Q4_1), (576, 49152, K.Q8_0)]
NAMES = {t: GGML_TYPES[t][0] for t in K.SUPPORTED_WEIGHT_TYPES}
TYPE_SHAPE = (1536, 1536)  # (n_in, n_out): SmolLM2's ffn_down row length, whole superblocks for the K-quants


async def time_op(device, kernels, op, n_tokens: int, out, rounds: int, per_round: int) -> tuple[float, float]:
    """Best (wall, CPU) seconds per dispatch over `rounds` command buffers of `per_round` dispatches each."""
    kernels.set_step(0, n_tokens)
    best, best_cpu = float("inf"), float("inf")
    for round_ in range(rounds + 1):  # round 0 compiles and warms up
        recorder = device.recorder()
        for _ in range(per_round):
            op.record(recorder, n_tokens)
        start, cpu = time.perf_counter(), time.process_time()
        device.submit(recorder)
        await device.read_buffer(out, 0, 4)
        if round_:
            best = min(best, (time.perf_counter() - start) / per_round)
            best_cpu = min(best_cpu, (time.process_time() - cpu) / per_round)
    return best, best_cpu


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


def kernels_of(device, spec: str) -> K.Kernels:
    """The Kernels of a --variants entry: a variant, or "scalar:N" for the scalar one with N lanes sharing x's
    loads (Kernels' x_lanes: 0, 4 or 8; the adapter's choice without)."""
    variant, _, lanes = spec.partition(":")
    return K.Kernels(device, variant=variant, x_lanes=int(lanes) if lanes else None)


async def bench_shapes(device, n_tokens: int, rounds: int, variants: list[str]) -> None:
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
            kernels = kernels_of(device, variant)
            op = kernels.matmul(w_buf, wtype, n_in, n_out, x_buf, y_buf, n_tokens)
            for t in (1, n_tokens):
                seconds, _ = await time_op(device, kernels, op, t, y_buf, rounds, per_round)
                print(line(f"{variant} T={t}", seconds, raw.nbytes, 2 * n_in * n_out * t))
        for t in (1, n_tokens):
            seconds = time_numpy(w, x[:t], rounds)
            print(line(f"numpy f32 T={t}", seconds, w.nbytes, 2 * n_in * n_out * t))


async def bench_types(device, types: list[int], n_tokens: int, rounds: int, variant: str,
                      shape: tuple[int, int] = TYPE_SHAPE) -> None:
    """GB/s of weight bytes per type on `shape` (n_in, n_out), decode and prefill, and the ratio to Q4_1's."""
    n_in, n_out = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n_tokens, n_in)).astype(np.float32)
    x_buf, y_buf = device.create_buffer(x.nbytes), device.create_buffer(n_tokens * n_out * 4)
    device.write_buffer(x_buf, x.tobytes())
    kernels = kernels_of(device, variant)
    cpu = device.info.is_software
    print(f"{n_in} -> {n_out} per type, {variant}: GB/s of weight bytes (x Q4_1's){', and per CPU-second' * cpu}")
    rates: dict[tuple, float] = {}
    for wtype in [K.Q4_1, *[t for t in types if t != K.Q4_1]]:
        _, block, _ = GGML_TYPES[wtype]
        raw = random_blocks(wtype, n_out * n_in // block, rng)
        w_buf = device.create_buffer(len(raw))
        device.write_buffer(w_buf, raw)
        op = kernels.matmul(w_buf, wtype, n_in, n_out, x_buf, y_buf, n_tokens)
        cells = []
        for t in (1, n_tokens):
            per_round = max(2, int(1e7 // len(raw) // t)) if cpu else 200
            seconds, cpu_seconds = await time_op(device, kernels, op, t, y_buf, rounds, per_round)
            for key, s in (((t, "wall"), seconds), ((t, "cpu"), cpu_seconds)):
                rates[(wtype, *key)] = len(raw) / s / 1e9
            cell = f"T={t}: {rates[wtype, t, 'wall']:6.3f} ({rates[wtype, t, 'wall'] / rates[K.Q4_1, t, 'wall']:4.2f}x)"
            if cpu:
                cell += f" {rates[wtype, t, 'cpu']:6.3f} ({rates[wtype, t, 'cpu'] / rates[K.Q4_1, t, 'cpu']:4.2f}x)"
            cells.append(cell)
        if len(op.steps) > 1:  # one token's x quantised first (matvec_dot4): the product alone as well, x ready
            product = Op(op.steps[-1])
            seconds, _ = await time_op(device, kernels, product, 1, y_buf, rounds, 200)
            rates[wtype, 1, "product"] = len(raw) / seconds / 1e9
            ratio = rates[wtype, 1, "product"] / rates.get((K.Q4_1, 1, "product"), float("nan"))
            cells.append(f"product alone T=1: {rates[wtype, 1, 'product']:6.3f} ({ratio:4.2f}x)")
        print(f"  {NAMES[wtype]:<5} {len(raw) / 1e6:5.2f} MB  " + "   ".join(cells))


async def main(n_tokens: int, rounds: int, variants: list[str], types: list[int], shapes: bool,
               type_shape: tuple[int, int]) -> None:
    device = await open_device()
    print(f"adapter: {device.info.device} (software: {device.info.is_software})")
    if shapes:
        await bench_shapes(device, n_tokens, rounds, variants)
    for variant in variants:
        if types:
            await bench_types(device, types, n_tokens, rounds, variant, type_shape)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64, help="prefill batch (default 64)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds; the best counts (default 5)")
    parser.add_argument("--variants", default="scalar,subgroup",
                        help="comma-separated kernel variants; scalar:N for N lanes sharing x (0, 4, 8)")
    parser.add_argument("--types", default=",".join(NAMES[t] for t in sorted(K.SUPPORTED_WEIGHT_TYPES)),
                        help="comma-separated weight types to compare on one shape ('' for none)")
    parser.add_argument("--no-shapes", action="store_true", help="skip the default model's shapes")
    parser.add_argument("--type-shape", default="x".join(map(str, TYPE_SHAPE)),
                        help="N_INxN_OUT of the per-type product (default %(default)s; GPUs want e.g. 4096x14336)")
    args = parser.parse_args()
    type_shape = tuple(int(n) for n in args.type_shape.split("x"))
    ids = {name: t for t, name in NAMES.items()}
    types = [ids[name] for name in args.types.split(",") if name]
    asyncio.run(main(args.tokens, args.rounds, args.variants.split(","), types, not args.no_shapes, type_shape))
