"""Command line: `python -m engine generate ...` for scripts, `python -m engine chat` for people.

`generate` writes only the completion text to stdout; progress and logs go to stderr, so its output
can be piped and compared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from .config import DEFAULT_N_CTX
from .errors import HearthError, InvalidRequest
from .memory import parse_size
from .sampler import SamplingOptions


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="Hearth: a private LLM engine.")
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", type=Path, help="a GGUF file (default: SmolLM2-135M-Instruct Q4_1)")
    common.add_argument("--system", help="system prompt")
    common.add_argument("--temperature", type=float, default=SamplingOptions.temperature, help="0 means greedy")
    common.add_argument("--top-p", type=float, default=SamplingOptions.top_p)
    common.add_argument("--seed", type=int, help="same seed, same text")
    common.add_argument("--max-tokens", type=int, default=SamplingOptions.max_tokens)
    common.add_argument("--n-ctx", type=int, default=DEFAULT_N_CTX, help="context size to allocate (tokens)")
    common.add_argument("--memory-budget", metavar="SIZE",
                        help="refuse a model that needs more GPU memory than this, e.g. 6GiB (default: no budget)")
    common.add_argument("--f16-prompts", action="store_true",
                        help="prompts' products in f16 on GPUs with shader-f16: faster prefill, less exact logits")
    common.add_argument("--q8-prompts", action="store_true",
                        help="prompts' products on x in 8 bits, as llama.cpp's (GPUs): faster prefill, less exact")
    common.add_argument("--kv-f16", action="store_true",
                        help="keep the KV cache in f16 (any adapter): half its memory, so a longer --n-ctx; less exact")
    gen = sub.add_parser("generate", parents=[common], help="complete one conversation, print the answer")
    gen.add_argument("--messages", type=Path, help="a JSON list of {role, content} messages")
    gen.add_argument("prompt", nargs="?", help="the user's message (read from stdin when absent)")
    sub.add_parser("chat", parents=[common], help="interactive chat in the terminal")
    return parser


def _options(args: argparse.Namespace) -> SamplingOptions:
    return SamplingOptions(
        temperature=args.temperature, top_p=args.top_p, seed=args.seed, max_tokens=args.max_tokens
    )


def _messages(args: argparse.Namespace) -> list[dict]:
    messages = []
    if args.messages:
        try:
            messages = json.loads(args.messages.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise InvalidRequest(f"cannot read messages from {args.messages}: {e}") from None
        if not isinstance(messages, list):
            raise InvalidRequest(f"{args.messages} must hold a JSON list of {{role, content}} messages")
    if args.system:
        messages = [{"role": "system", "content": args.system}, *messages]
    prompt = args.prompt
    if prompt is None and not args.messages:
        prompt = sys.stdin.read()
    if prompt:
        messages.append({"role": "user", "content": prompt})
    return messages


class ProgressBar:
    """A one-line load progress bar on stderr (a single summary line when stderr is not a terminal)."""

    def __init__(self, label: str = "loading model"):
        self.label, self.start, self.last = label, time.monotonic(), -1
        self.live = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        percent = 100 * done // max(total, 1)
        if percent == self.last:
            return
        self.last = percent
        if self.live:
            bar = "#" * (percent // 4)
            line = f"\r{self.label} [{bar:<25}] {percent:3d}% {done >> 20}/{total >> 20} MiB"
            print(line, end="", file=sys.stderr, flush=True)
        if done >= total:
            elapsed = time.monotonic() - self.start
            prefix = "" if self.live else f"{self.label}: {total >> 20} MiB"
            print(f"{prefix} ({elapsed:.1f} s)", file=sys.stderr)


async def _load(args: argparse.Namespace):
    from .engine import Engine

    return await Engine.load(args.model, n_ctx=args.n_ctx, memory_budget=args.memory_budget,
                             f16_prompts=args.f16_prompts, q8_prompts=args.q8_prompts, kv_f16=args.kv_f16,
                             progress=ProgressBar())


async def _generate(args: argparse.Namespace) -> int:
    options = _options(args)
    options.validate()
    messages = _messages(args)
    engine = await _load(args)
    start, n = time.monotonic(), 0
    async for chunk in engine.chat(messages, options):
        n += chunk.token_id is not None
        sys.stdout.write(chunk.text)
        sys.stdout.flush()
    sys.stdout.write("\n")
    elapsed = time.monotonic() - start
    print(f"[{n} tokens in {elapsed:.2f} s, {n / max(elapsed, 1e-9):.1f} tok/s]", file=sys.stderr)
    return 0


async def _chat(args: argparse.Namespace) -> int:
    options = _options(args)
    options.validate()
    engine = await _load(args)
    system = [{"role": "system", "content": args.system}] if args.system else []
    history: list[dict] = []
    print("Type a message; /reset starts over, Ctrl-C stops an answer, Ctrl-D quits.", file=sys.stderr)
    while True:
        try:
            line = await asyncio.to_thread(input, "> ")
        except EOFError:
            return 0
        if line.strip() == "/reset":
            history = []
            continue
        if not line.strip():
            continue
        history.append({"role": "user", "content": line})
        answer = []
        try:
            async for chunk in engine.chat(system + history, options):
                answer.append(chunk.text)
                print(chunk.text, end="", flush=True)
        except KeyboardInterrupt:
            print(" [stopped]", end="")
        except HearthError as e:
            history.pop()
            print(f"error: {e}", file=sys.stderr)
            continue
        print()
        history.append({"role": "assistant", "content": "".join(answer)})


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    run = _generate if args.command == "generate" else _chat
    try:
        if args.memory_budget is not None:  # bytes; a bad size is refused before any work, in one line
            args.memory_budget = parse_size(args.memory_budget)
        return asyncio.run(run(args))
    except HearthError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
