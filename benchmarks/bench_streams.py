"""Aggregate decode speed of streams decoding together (engine/streams.py) against one stream, in one run.

Usage: .venv/bin/python benchmarks/bench_streams.py [--model PATH] [--streams 1,2,4,8] [--prompt-tokens 16]
       [--decode-tokens 256] [--ignore-eos]
For each count n: n greedy streams of the same length start at once (each its own prompt), and the line gives
their tokens a second together, from their start to their last token (prompts included), over one stream's and
over Engine.generate's alone (one request, as the host serves it today), all in the same run; then the same
while all of them decode: from the moment the last of them has its first token (the issue's target: 8
streams decoding >= 4x one).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench_engine import _prompt_ids

from engine.default_model import default_model_path
from engine.engine import Engine
from engine.sampler import SamplingOptions
from engine.streams import Streams


async def _run(streams: Streams, prompts: list[list[int]], n_decode: int) -> tuple[float, float]:
    """Tokens a second of all the streams together: from their start to the last token (prompt steps
    included), and from the last stream's first token on (decoding only)."""
    options = SamplingOptions(temperature=0, max_tokens=n_decode)

    async def one(prompt: list[int]) -> list[float]:
        return [time.perf_counter() async for chunk in streams.generate(prompt, options) if chunk.token_id is not None]

    start = time.perf_counter()
    times = await asyncio.gather(*(one(p) for p in prompts))
    end = max(t[-1] for t in times)
    decoding = max(t[0] for t in times)  # every stream past its prompt
    after = sum(1 for t in times for s in t if s > decoding)
    return sum(map(len, times)) / (end - start), after / (end - decoding)


async def main(args) -> None:
    counts = [int(n) for n in args.streams.split(",")]
    n_ctx = args.prompt_tokens + args.decode_tokens + 8
    engine = await Engine.load(args.model or default_model_path(), n_ctx=n_ctx, n_seqs=max(counts) + 1)
    if args.ignore_eos:  # made-up weights (synthetic_model.py) would end at a random step
        engine.tokenizer.eog_ids = frozenset()
    base = _prompt_ids(engine, args.prompt_tokens + max(counts))
    prompts = [base[i : i + args.prompt_tokens] for i in range(max(counts))]  # distinct prompts
    streams = Streams(engine)
    await _run(streams, prompts[:1], 4)  # compile every pipeline once
    start, n = time.perf_counter(), 0
    async for chunk in engine.generate(prompts[0], SamplingOptions(temperature=0, max_tokens=args.decode_tokens)):
        n += chunk.token_id is not None
    alone = n / (time.perf_counter() - start)
    print(f"{engine.model.device.info.device}: Engine.generate alone {alone:.1f} tok/s")
    single = None
    for count in counts:
        rate, decoding = await _run(streams, prompts[:count], args.decode_tokens)
        single = single or (rate, decoding)
        print(f"{count} streams: {rate:.1f} tok/s together ({rate / single[0]:.2f}x one stream, "
              f"{rate / alone:.2f}x Engine.generate); decoding {decoding:.1f} ({decoding / single[1]:.2f}x one)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--streams", default="1,2,4,8")
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--decode-tokens", type=int, default=256)
    parser.add_argument("--ignore-eos", action="store_true")
    asyncio.run(main(parser.parse_args()))
