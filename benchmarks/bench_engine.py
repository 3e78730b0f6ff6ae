"""Prefill and decode speed of the engine next to llama.cpp on the same GGUF, measured in one run.

Usage: .venv/bin/python benchmarks/bench_engine.py [--model PATH] [--prompt-tokens 128] [--decode-tokens 32]
       [--threads 2] [--rounds 1]
Prints tokens/s for both and the engine/llama.cpp ratio. llama.cpp runs on the CPU with --threads;
the engine runs on whatever adapter wgpu-py opens (lavapipe, which uses every core, on a machine without a GPU).
With --rounds N the two are measured in turn N times in one process: each round's figures, then the medians
(a shared machine's speed wanders by 20-40 % between single runs; the rounds' ratios wander less).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import struct
import time

from engine.default_model import default_model_path
from engine.engine import Engine
from engine.sampler import SamplingOptions


def _prompt_ids(engine: Engine, n: int) -> list[int]:
    words = "The quick brown fox jumps over the lazy dog while the river runs to the sea. " * (n // 8 + 1)
    return engine.tokenizer.encode(words)[:n]


async def bench_engine(path, n_prompt: int, n_decode: int, ignore_eos: bool = False, **model_options
                       ) -> tuple[float, float, str]:
    engine = await Engine.load(path, n_ctx=n_prompt + n_decode + 8, **model_options)
    return (*await measure(engine, n_prompt, n_decode, ignore_eos), engine.model.device.info.device)


async def measure(engine: Engine, n_prompt: int, n_decode: int, ignore_eos: bool = False) -> tuple[float, float]:
    """Prefill and decode tokens a second of a loaded engine (n_ctx >= n_prompt + n_decode + 2); also what
    benchmarks/page runs inside the browser."""
    if ignore_eos:  # made-up weights (synthetic_model.py) would end at a random step
        engine.tokenizer.eog_ids = frozenset()
    ids = _prompt_ids(engine, n_prompt)
    await engine.generate(ids, SamplingOptions(temperature=0, max_tokens=2)).__anext__()  # warm the pipelines
    engine._cached = []  # start cold so prefill runs in full
    start = time.perf_counter()
    await engine.prefill(ids)
    await engine.model.device.read_buffer(engine.model.logits, 0, 4)  # wait for the GPU
    prefill = n_prompt / (time.perf_counter() - start)
    # The prompt is cached now, so generate's first token costs one step as the others do. The clock starts at the
    # call, not at the first token: by then the steps run ahead (engine.RUN_AHEAD) may be done, and on lavapipe,
    # whose submit blocks while an earlier submission runs, they are: a decode of 8 tokens read 1.6x fast so.
    options = SamplingOptions(temperature=0, max_tokens=n_decode)
    n, start = 0, time.perf_counter()
    async for chunk in engine.generate(ids, options):
        n += chunk.token_id is not None
    decode = n / (time.perf_counter() - start)
    return prefill, decode


async def prompt_logits(engine: Engine, n_prompt: int) -> list[float]:
    """The logits after a cold prefill of measure's n_prompt-token prompt: what bench_page compares between the
    browser's products and native ones."""
    ids = _prompt_ids(engine, n_prompt)
    engine._cached = []
    await engine.prefill(ids)
    model = engine.model
    data = await model.device.read_buffer(model.logits, 0, model.config.vocab_size * 4)
    return list(struct.unpack(f"<{model.config.vocab_size}f", bytes(data)))


class LlamaCpp:
    """llama.cpp on the same GGUF (llama-cpp-python, on the CPU), loaded once and measured as often as asked."""

    def __init__(self, path, n_prompt: int, n_decode: int, threads: int):
        from llama_cpp import Llama

        self.n_decode = n_decode
        self.llm = Llama(str(path), n_ctx=n_prompt + n_decode + 8, n_threads=threads, n_batch=512, verbose=False)
        self.ids = self.llm.tokenize(("The quick brown fox jumps over the lazy dog. " * n_prompt).encode())[:n_prompt]
        self.llm.eval(self.ids[:8])  # warm up

    def measure(self) -> tuple[float, float]:
        """Prefill and greedy decode tokens a second, from an empty context."""
        import llama_cpp
        import numpy as np

        llm = self.llm
        llm.reset()
        start = time.perf_counter()
        llm.eval(self.ids)
        prefill = len(self.ids) / (time.perf_counter() - start)
        start = time.perf_counter()
        token = self.ids[-1]
        for _ in range(self.n_decode):
            llm.eval([token])
            # The context's own logits: Llama.scores is written only with logits_all (its rows n_batch, not n_ctx)
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits(llm.ctx), shape=(llm.n_vocab(),))
            token = int(logits.argmax())
        decode = self.n_decode / (time.perf_counter() - start)
        return prefill, decode


async def compare(path, n_prompt: int, n_decode: int, threads: int, rounds: int) -> tuple[str, list[tuple]]:
    """The engine's device, and for each round (engine prefill, decode, llama.cpp prefill, decode): the two
    measured in turn in one process, so that a machine whose speed wanders (shared virtual CPUs) moves both.
    llama.cpp loads first: loaded after the engine (lavapipe's JIT and buffers), its decode read 20-35 % slow for
    the first rounds and climbed back over four or five (106, 126, 144, 158, 158 tok/s), which flattered the
    engine's ratio; loaded first it decodes at its own speed from the first round (NOTES.md, session 28)."""
    llama = LlamaCpp(path, n_prompt, n_decode, threads)
    engine = await Engine.load(path, n_ctx=n_prompt + n_decode + 8)
    runs = [(*await measure(engine, n_prompt, n_decode), *llama.measure()) for _ in range(rounds)]
    return engine.model.device.info.device, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="engine and llama.cpp in turn this often; medians")
    args = parser.parse_args()
    path = args.model or default_model_path()
    device, runs = asyncio.run(compare(path, args.prompt_tokens, args.decode_tokens, args.threads, args.rounds))
    print(f"model: {path}")
    if len(runs) > 1:
        for i, (e_pre, e_dec, l_pre, l_dec) in enumerate(runs, 1):
            print(f"round {i}: engine {e_pre:7.1f} / {e_dec:6.1f}, llama.cpp {l_pre:7.1f} / {l_dec:6.1f} tok/s: "
                  f"{e_pre / l_pre:.3f}x / {e_dec / l_dec:.3f}x")
    e_pre, e_dec, l_pre, l_dec = (statistics.median(column) for column in zip(*runs, strict=True))
    pre_ratio = statistics.median(ours / theirs for ours, _, theirs, _ in runs)
    dec_ratio = statistics.median(ours / theirs for _, ours, _, theirs in runs)
    what = "medians" if len(runs) > 1 else "one round"
    print(f"engine ({device}): prefill {e_pre:8.1f} tok/s   decode {e_dec:7.1f} tok/s   ({what})")
    print(f"llama.cpp ({args.threads} threads): prefill {l_pre:8.1f} tok/s   decode {l_dec:7.1f} tok/s")
    print(f"engine / llama.cpp:        prefill {pre_ratio:8.3f}x       decode {dec_ratio:7.3f}x"
          + ("   (median of the rounds' ratios)" if len(runs) > 1 else ""))


if __name__ == "__main__":
    main()
