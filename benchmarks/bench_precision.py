"""What the faster paths cost in precision: each one's next-token distributions against f32's.

Usage: .venv/bin/python benchmarks/bench_precision.py [--model PATH] [--text FILE] [--tokens 512]
       [--paths f16,q8,kv16]
Runs a chat prompt and a stretch of real text (README.md unless --text) through the model with every position's
logits, once in f32 tiles and once for each path asked for (f16: Kernels' f16_prompts; q8: q8_prompts; kv16: the
KV cache in f16, kv_f16, whose keys and values every later position reads), and
prints per path: the KL divergence from f32's next-token distributions (mean and largest over the positions),
how often the most likely token is f32's, perplexity of the text under each, and the largest logit error as a
fraction of the largest logit. llama.cpp's tooling reports the same figures for its quantisations; on this
scale, a Q4_K_M file's own weights cost llama-class models a mean KL of a few 1e-2.
The paths run where prompts take tiles: on CPU adapters (lavapipe) this asks for the subgroup variant, which
the engine would not choose there (slow, but the same kernels as a GPU's).
"""

from __future__ import annotations

import argparse
import asyncio
import math
from pathlib import Path

import numpy as np

from engine.default_model import default_model_path
from engine.engine import Engine
from engine.gguf import open_gguf
from engine.gpu import open_device

ROOT = Path(__file__).resolve().parent.parent
CHAT = [{"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Explain what a GGUF file is, in two sentences."}]  # fmt: skip
PATHS = {"f32": {}, "f16": {"f16_prompts": True}, "q8": {"q8_prompts": True}, "kv16": {"kv_f16": True}}


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def perplexity(ids: list[int], logits: np.ndarray) -> float:
    """exp of the mean negative log-likelihood of each next token of ids."""
    return math.exp(-log_softmax(logits)[np.arange(len(ids) - 1), ids[1:]].mean())


def compare(ids: list[int], got: np.ndarray, exact: np.ndarray) -> str:
    """One line of figures for a path's logits at every position of ids against f32's."""
    lp, lq = log_softmax(exact), log_softmax(got)
    kl = (np.exp(lp) * (lp - lq)).sum(axis=1)
    same = (got.argmax(axis=1) == exact.argmax(axis=1)).mean()
    error = (np.abs(got - exact).max(axis=1) / np.abs(exact).max(axis=1)).max()
    return (f"KL mean {kl.mean():.2e} max {kl.max():.2e}, same top token {100 * same:.1f} %, "
            f"perplexity {perplexity(ids, got):.3f}, logits' error {error:.1e} of the largest")


async def main(args) -> None:
    device = await open_device()
    if "subgroups" not in device.info.features:
        raise SystemExit(f"bench_precision: {device.info.device} has no subgroups, so no prompt tiles to compare")
    gguf = open_gguf(args.model or default_model_path())
    runs, prompts = {}, None
    for name in ["f32", *args.paths.split(",")]:
        if name not in PATHS:
            raise SystemExit(f"bench_precision: unknown path {name!r}; choose from {', '.join(PATHS)}")
        engine = await Engine.load(gguf=gguf, device=device, n_ctx=args.tokens + 64, variant="subgroup",
                                   **PATHS[name])
        if prompts is None:  # (every path's engine has the same tokenizer and template)
            text = engine.tokenizer.encode(args.text.read_text(encoding="utf-8"))[: args.tokens]
            prompts = {"chat": engine.chat_prompt(CHAT), "text": text}
        runs[name] = {label: (ids, np.array(await engine.logits_all(ids), dtype=np.float64))
                      for label, ids in prompts.items()}  # fmt: skip
        module = engine.model.kernels.tiles_module(engine.model.config.dim)
        print(f"{name}: {module} on {device.info.device}", flush=True)
        del engine
    exact = runs.pop("f32")
    for label, (ids, logits) in exact.items():
        print(f"f32 {label} ({len(ids)} tokens): perplexity {perplexity(ids, logits):.3f}")
    for name, run in runs.items():
        for label, (ids, logits) in run.items():
            print(f"{name} {label} ({len(ids)} tokens): {compare(ids, logits, exact[label][1])}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--text", type=Path, default=ROOT / "README.md")
    parser.add_argument("--tokens", type=int, default=512, help="tokens of the text to run")
    parser.add_argument("--paths", default="f16,q8,kv16", help="the paths to set against f32's")
    asyncio.run(main(parser.parse_args()))
