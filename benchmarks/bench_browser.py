"""The extension in Chromium next to the native engine on the same machine: load time and decode speed.

Usage: .venv/bin/python benchmarks/bench_browser.py [--extension dist/extension] [--decode-tokens 32] [--swiftshader]
Builds nothing: run `python build.py` first. Chromium runs headless with WebGPU on SwiftShader (its CPU
adapter); the native engine runs on whatever wgpu-py opens (lavapipe on a machine without a GPU) and, with
--swiftshader, also on Chromium's SwiftShader through Vulkan, so both sides can be compared on one adapter.
Decode speed counts the tokens after the first (the first pays for the prompt).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]
FLAGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--disable-quic", "--enable-unsafe-webgpu", "--enable-unsafe-swiftshader"]
REQUEST = """async ([messages, max_tokens]) => new Promise((resolve) => {
  const id = crypto.randomUUID();
  chrome.runtime.onMessage.addListener((m) => {
    if (m.target === "panel" && m.id === id && (m.kind === "done" || m.kind === "error")) resolve(m);
  });
  chrome.runtime.sendMessage({ target: "worker", kind: "chat", id,
                               content: { messages, options: { temperature: 0, max_tokens } } });
})"""


def bench_browser(extension: Path, n_decode: int) -> dict:
    """Panel open -> model ready, and one greedy answer's speed, in headless Chromium."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        args = FLAGS + [f"--disable-extensions-except={extension}", f"--load-extension={extension}"]
        context = p.chromium.launch_persistent_context(profile, executable_path="/usr/bin/chromium", headless=True,
                                                       args=args)
        worker = context.service_workers[0] if context.service_workers else context.wait_for_event("serviceworker")
        page = context.new_page()
        page.goto(worker.url.replace("service_worker.js", "sidepanel.html"))
        page.wait_for_selector("body:not([data-state=loading])", timeout=300_000)
        ready_ms = int(page.evaluate("document.body.dataset.readyMs || -1"))
        page.evaluate(REQUEST, [MESSAGES, 2])  # compiles the pipelines once, as the native run does
        done = page.evaluate(REQUEST, [MESSAGES, n_decode])["content"]
        context.close()
    return {"ready_s": ready_ms / 1000, "tokens": done["n_tokens"], "decode_tok_s": done["tokens_per_s"],
            "prompt_s": done["prompt_seconds"], "token_ids": done["token_ids"]}


def bench_native(n_decode: int) -> dict:
    """The same request on the native engine (run in this process)."""
    from engine.engine import Engine
    from engine.sampler import SamplingOptions

    async def run():
        start = time.perf_counter()
        engine = await Engine.load()
        load_s = time.perf_counter() - start
        async for _ in engine.chat(MESSAGES, SamplingOptions(temperature=0, max_tokens=2)):
            pass  # compiles the pipelines (and caches the prompt), as in the browser
        ids, first, start = [], None, time.perf_counter()
        async for chunk in engine.chat(MESSAGES, SamplingOptions(temperature=0, max_tokens=n_decode)):
            first = first or time.perf_counter()
            if chunk.token_id is not None and chunk.finish_reason is None:
                ids.append(chunk.token_id)
        rate = (len(ids) - 1) / (time.perf_counter() - first)
        return {"ready_s": round(load_s, 2), "tokens": len(ids), "decode_tok_s": round(rate, 2),
                "prompt_s": round(first - start, 3), "token_ids": ids, "adapter": engine.model.device.info.device}

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extension", type=Path, default=ROOT / "dist" / "extension")
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--swiftshader", action="store_true", help="also run native on SwiftShader (slow)")
    parser.add_argument("--native-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.native_only:
        print(json.dumps(bench_native(args.decode_tokens)))
        return
    rows = {"browser (Chromium, SwiftShader)": bench_browser(args.extension.resolve(), args.decode_tokens)}
    runs = [("native (wgpu-py)", {})]
    if args.swiftshader:
        swiftshader = {"VK_ICD_FILENAMES": "/usr/lib/chromium/vk_swiftshader_icd.json"}
        runs.append(("native (wgpu-py, SwiftShader)", swiftshader))
    for name, env in runs:  # a fresh process each: the Vulkan driver is chosen at start
        out = subprocess.run([sys.executable, __file__, "--native-only", "--decode-tokens", str(args.decode_tokens)],
                             env={**os.environ, **env}, capture_output=True, text=True, check=True, cwd=ROOT)
        rows[name] = json.loads(out.stdout.splitlines()[-1])
    print(f"{'':34} {'ready s':>8} {'prompt s':>9} {'decode tok/s':>13}  tokens")
    for name, r in rows.items():
        print(f"{name:34} {r['ready_s']:>8} {r['prompt_s']:>9} {r['decode_tok_s']:>13}  {r['tokens']}")
    same = len({tuple(r["token_ids"]) for r in rows.values()}) == 1
    print(f"greedy token ids identical across runs: {same}")


if __name__ == "__main__":
    main()
