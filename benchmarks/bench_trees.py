"""Prefill of several source trees of the engine in turn, on one model: an A/B of kernels on the GPU machine.

Each tree is a folder holding engine/, shaders/ and benchmarks/ (this checkout, `git archive REV engine shaders
benchmarks` unpacked, or a copy with changed files laid over it). Each round runs each tree in a process of its
own: a prefill of --tokens (best of --repeats after a warm-up), and with --ops in the first round the GPU ms of
each kind of layer op for a step of --tokens (profile_decode's). Then the logits after the prompt, each tree's
against the first's, as a fraction of the largest: a kernel change that is meant to change nothing shows 0.

Usage: python benchmarks/bench_trees.py MODEL.gguf TREE [TREE ...] [--rounds 2] [--tokens 512] [--ops]
"""

from __future__ import annotations

import argparse
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

# What each tree's process runs: argv is (tree, model, tokens, repeats, ops, logits file).
_ONE_TREE = """
import asyncio, struct, sys, time
tree, model_path, tokens, repeats, ops, out = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6]), sys.argv[6]
sys.path[:0] = [tree, tree + "/benchmarks"]
from bench_engine import _prompt_ids, prompt_logits
from engine.engine import Engine

async def main():
    engine = await Engine.load(model_path, n_ctx=max(1024, tokens + 128))
    engine.tokenizer.eog_ids = frozenset()  # (made-up weights: never stop early)
    ids, model, runs = _prompt_ids(engine, tokens), engine.model, []
    for i in range(repeats + 1):  # the first warms the pipelines
        engine._cached = []
        start = time.perf_counter()
        await engine.prefill(ids)
        await model.device.read_buffer(model.logits, 0, 4)
        runs.append(tokens / (time.perf_counter() - start))
    logits = await prompt_logits(engine, tokens)
    open(out, "wb").write(struct.pack(f"<{len(logits)}f", *logits))
    print("prefill", " ".join(f"{r:.0f}" for r in runs[1:]), flush=True)
    if ops:
        from profile_decode import profile_engine
        times = await profile_engine(engine, 4, tokens)
        kinds = {k[4:]: v for k, v in times.items() if k.startswith("GPU ") and k != "GPU per forward"}
        print("ops", " ".join(f"{k} {v:.2f}" for k, v in kinds.items()), f"sum {sum(kinds.values()):.1f}")

asyncio.run(main())
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("trees", type=Path, nargs="+")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ops", action="store_true", help="also each op's GPU ms for a step of --tokens (round 1)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        logits = {}
        for round_ in range(1, args.rounds + 1):
            for i, tree in enumerate(args.trees):
                out = Path(scratch) / f"{i}.logits"
                command = [sys.executable, "-c", _ONE_TREE, str(tree.resolve()), str(args.model), str(args.tokens),
                           str(args.repeats), str(int(args.ops and round_ == 1)), str(out)]  # fmt: skip
                result = subprocess.run(command, capture_output=True, text=True)
                lines = result.stdout.splitlines() or result.stderr.strip().splitlines()[-1:]
                for line in lines:
                    print(f"round {round_} {tree}: {line}", flush=True)
                if out.exists():
                    logits[i] = struct.unpack(f"<{out.stat().st_size // 4}f", out.read_bytes())
        if 0 in logits:
            largest = max(abs(v) for v in logits[0])
            for i in sorted(logits)[1:]:
                diff = max(abs(a - b) for a, b in zip(logits[0], logits[i], strict=True))
                print(f"logits of {args.trees[i]} against {args.trees[0]}: {diff / largest:.2e} of the largest")


if __name__ == "__main__":
    main()
