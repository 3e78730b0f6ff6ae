"""Where one decode step's time goes: recording on the host, submitting, and waiting for the GPU.

Prints, in milliseconds per step: the host's recording of the forward pass and greedy sampling; the submit;
the wait for the one read-back; a round trip with no work in it (the floor of any step); and the GPU's own
time per forward, from 16 forwards recorded into one submit (their positions all read the last StepParams
written: the same work, which is all that timing needs).

With --tokens N (> 1) the per-op figures are for a step of N tokens (as streams decoding together, or a
prompt's chunk, run them), the rest as above.

Usage: python benchmarks/profile_decode.py [--model PATH] [--steps 64] [--tokens 1]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from engine.engine import Engine

BATCHED = 16


async def profile(path, steps: int, tokens: int = 1) -> dict[str, float]:
    return await profile_engine(await Engine.load(path, n_ctx=512), steps, tokens)


async def profile_engine(engine: Engine, steps: int, tokens: int = 1) -> dict[str, float]:
    """profile() of a loaded engine (n_ctx >= 512); also what benchmarks/page runs inside the browser."""
    model, device = engine.model, engine.model.device
    await engine.prefill(engine.tokenizer.encode("The quick brown fox jumps over the lazy dog.") * 4)
    token, times = 42, {"record": [], "submit": [], "wait": [], "round trip": []}
    for _ in range(steps + 4):
        t0 = time.perf_counter()
        rec = device.recorder()
        model.forward([token], recorder=rec)
        model.op_argmax.record(rec, 1)
        t1 = time.perf_counter()
        device.submit(rec)
        t2 = time.perf_counter()
        token = (await device.read_buffer(model.token_out, 0, 4)).cast("I")[0]
        t3 = time.perf_counter()
        device.submit(device.recorder())
        await device.read_buffer(model.token_out, 0, 4)
        t4 = time.perf_counter()
        for name, seconds in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            times[name].append(seconds)
    out = {name: statistics.median(values[4:]) * 1e3 for name, values in times.items()}
    model.rewind(8)
    rec = device.recorder()
    for _ in range(BATCHED):
        model.forward([token], recorder=rec)
    start = time.perf_counter()
    device.submit(rec)
    await device.read_buffer(model.token_out, 0, 4)
    out["GPU per forward"] = ((time.perf_counter() - start) * 1e3 - out["round trip"]) / BATCHED
    floor = out["round trip"] / BATCHED
    model.kernels.set_step(model.n_past, tokens)  # the kinds below run a step of `tokens` (their grids' T)
    kinds: dict[str, list] = {}  # each kind of layer op (its label), over all layers, in execution order
    for layer in model.layers:
        for layer_op in layer.ops:
            kinds.setdefault(layer_op.name, []).append(layer_op.op)
    for name, ops in kinds.items():  # each kind alone
        ms = await _gpu_ms(device, model.token_out, lambda rec, ops=ops: [o.record(rec, tokens) for o in ops])
        out[f"GPU {name}"] = ms - floor
    head = model.ops_logits
    out["GPU logits"] = await _gpu_ms(device, model.token_out, lambda rec: [op.record(rec, 1) for op in head]) - floor
    out["device"] = device.info.device
    return out


async def _gpu_ms(device, probe, record) -> float:
    """Milliseconds of GPU time per call of `record`, from BATCHED calls in one submit (with its round trip)."""
    rec = device.recorder()
    for _ in range(BATCHED):
        record(rec)
    start = time.perf_counter()
    device.submit(rec)
    await device.read_buffer(probe, 0, 4)
    return (time.perf_counter() - start) * 1e3 / BATCHED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=1, help="tokens a step in the per-op figures")
    args = parser.parse_args()
    out = asyncio.run(profile(args.model, args.steps, args.tokens))
    print(f"decode step on {out.pop('device')} (median ms):")
    for name, ms in out.items():
        print(f"  {name:16s} {ms:7.3f}")


if __name__ == "__main__":
    main()
