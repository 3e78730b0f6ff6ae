"""The engine in a plain page of a given Chromium next to the native engine, on one model, in one run.

Usage: .venv/bin/python benchmarks/bench_page.py [--extension dist/extension] [--model PATH] [--chromium PATH]
       [--prompt-tokens 128] [--decode-tokens 64] [--ignore-eos] [--gpu] [--no-native]
Serves benchmarks/page with the built extension's Pyodide, wheels and engine archive (run `python build.py`
first) and the model on 127.0.0.1, opens it in Chromium (any build: the headless shell, which loads no
extensions, too) and reads the page's figures from its console on stderr; then measures the native engine
(bench_engine.py's `measure`) on the same file. Without --gpu, Chromium's adapter is SwiftShader (the CPU);
with it, the machine's GPU through Vulkan (the flags a GPU machine's headless shell needs). With --f16-prompts
the page's engine runs prompts' products in f16 tiles (Engine.load's f16_prompts), with --q8-prompts on x in 8
bits (q8_prompts); either way the
page's logits after the prompt are held against the native engine's default (f32) ones; --check-tiles runs
check_tiles.py in the page too (its tile products against plain Python).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench_engine import measure, prompt_logits

ROOT = Path(__file__).resolve().parent.parent
PAGE = Path(__file__).resolve().parent / "page"
COMMON = ["--no-sandbox", "--no-first-run", "--disable-background-networking", "--disable-component-update",
          "--enable-unsafe-webgpu", "--enable-logging=stderr", "--v=0"]
CPU = ["--enable-unsafe-swiftshader"]
# (--enable-webgpu-developer-features: the H200's headless shell showed chromium-experimental-subgroup-matrix and
# its configs with it, NOTES.md session 20; the engine on main asks for no experimental feature)
GPU = ["--disable-gpu-sandbox", "--ignore-gpu-blocklist", "--use-vulkan=native", "--enable-webgpu-developer-features",
       "--enable-features=Vulkan,VulkanFromANGLE", "--use-angle=vulkan"]
DAWN = "vulkan_enable_f16_on_nvidia"  # --enable-dawn-features's list with --gpu (--dawn adds to it)
RESULT = re.compile(r'(HEARTH_BENCH(?:_ERROR)?) (.*?)", source:')


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def page_dir(extension: Path, model: Path, into: Path) -> None:
    """The page, bench_engine.py, and the extension's runtime (Pyodide, wheels, engine archive, replay.js,
    model_bytes.js) with the model."""
    for name in ("bench.html", "bench.mjs"):
        shutil.copy(PAGE / name, into / name)
    for name in ("bench_engine.py", "profile_decode.py", "check_tiles.py"):
        shutil.copy(Path(__file__).resolve().parent / name, into / name)
    for name in ("pyodide", "wheels", "hearth", "build.json", "replay.js", "model_bytes.js"):
        (into / name).symlink_to((extension / name).resolve())
    (into / "model.gguf").symlink_to(model.resolve())


def bench_page(chromium: str, extension: Path, model: Path, n_prompt: int, n_decode: int, ignore_eos: bool,
               gpu: bool, profile_steps: int = 0, flags: tuple = (), dawn: tuple = (), timeout: float = 900,
               f16_prompts: bool = False, check_tiles: bool = False, profile_tokens: int = 1,
               q8_prompts: bool = False) -> dict:
    """The page's figures (prefill, decode, device, ...; with profile_steps, profile_decode.py's) from one
    Chromium run."""
    with tempfile.TemporaryDirectory() as served, tempfile.TemporaryDirectory() as profile:
        page_dir(extension, model, Path(served))
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=served))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        query = (f"model=model.gguf&prompt={n_prompt}&decode={n_decode}&profile={profile_steps}"
                 f"&profile_tokens={profile_tokens}")
        query += "&ignore_eos=1" if ignore_eos else ""
        query += "&f16_prompts=1" if f16_prompts else ""
        query += "&q8_prompts=1" if q8_prompts else ""
        query += "&check_tiles=1" if check_tiles else ""
        url = f"http://127.0.0.1:{server.server_address[1]}/bench.html?{query}"
        headless = [] if "headless-shell" in chromium else ["--headless=new"]
        device = [*GPU, f"--enable-dawn-features={','.join([DAWN, *dawn])}"] if gpu else CPU
        args = [chromium, *headless, *COMMON, *device, *flags, f"--user-data-dir={profile}", url]
        browser = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        deadline, found, gpu_errors = time.monotonic() + timeout, None, []
        try:
            for line in browser.stderr:
                if "WebGPU error" in line:  # (engine/gpu/browser.py reports the device's errors so)
                    gpu_errors.append(line.strip()[:400])
                if (match := RESULT.search(line)) is not None:
                    found = match.groups()
                    break
                if time.monotonic() > deadline:
                    break
        finally:
            browser.kill()
            browser.wait()
            server.shutdown()
    if found is None:
        raise SystemExit("bench_page: the page gave no figures (Chromium's stderr ended or timed out)")
    if found[0] == "HEARTH_BENCH_ERROR":
        raise SystemExit(f"bench_page: the page failed: {found[1]}")
    return {**json.loads(found[1]), "gpu_errors": gpu_errors}


async def bench_native(model: Path, n_prompt: int, n_decode: int, ignore_eos: bool, profile_steps: int = 0,
                       profile_tokens: int = 1) -> tuple[float, float, str, dict, list[float]]:
    from profile_decode import profile_engine

    from engine.engine import Engine

    engine = await Engine.load(model, n_ctx=max(512, n_prompt + n_decode + 8))
    prefill, decode = await measure(engine, n_prompt, n_decode, ignore_eos)
    engine.model.rewind(0)
    profile = await profile_engine(engine, profile_steps, profile_tokens) if profile_steps else {}
    logits = await prompt_logits(engine, n_prompt)
    return prefill, decode, engine.model.device.info.device, profile, logits


def logits_apart(top: list, logits: list[float]) -> str:
    """How far the page's largest logits (index, value) lie from native ones: the largest difference over the
    largest native logit, and whether both pick the same token."""
    if not top or not all(map(math.isfinite, logits)):
        return "logits not finite on one side: nothing to compare"
    scale = max(abs(v) for v in logits)
    worst = max(abs(value - logits[i]) for i, value in top)
    same = top[0][0] == max(range(len(logits)), key=logits.__getitem__)
    return f"logits apart {worst / scale:.2e} of the largest over the page's top {len(top)}; same argmax: {same}"


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from build import DEFAULT_OUT

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extension", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--model", type=Path, help="default: the extension's own model")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--ignore-eos", action="store_true", help="for made-up weights (synthetic_model.py)")
    parser.add_argument("--gpu", action="store_true", help="Chromium on the GPU through Vulkan, not SwiftShader")
    parser.add_argument("--no-native", action="store_true")
    parser.add_argument("--flag", action="append", default=[], help="a further Chromium flag (repeatable)")
    parser.add_argument("--dawn", action="append", default=[], help="a further Dawn feature with --gpu (repeatable)")
    parser.add_argument("--f16-prompts", action="store_true", help="the page's prompts' products in f16")
    parser.add_argument("--q8-prompts", action="store_true", help="the page's prompts' products on x in 8 bits")
    parser.add_argument("--check-tiles", action="store_true",
                        help="also check_tiles.py in the page: its tile products against plain Python")
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="also profile_decode.py's figures on both sides, over this many steps")
    parser.add_argument("--profile-tokens", type=int, default=1, metavar="N",
                        help="profile_decode.py's per-op figures for a step of N tokens (a prompt's chunk)")
    args = parser.parse_args()
    if not (args.extension / "build.json").is_file():
        raise SystemExit(f"bench_page: no built extension in {args.extension}: run `python build.py` first")
    model = args.model or args.extension / json.loads((args.extension / "build.json").read_text())["model"]
    page = bench_page(args.chromium, args.extension, model, args.prompt_tokens, args.decode_tokens, args.ignore_eos,
                      args.gpu, args.profile, tuple(args.flag), tuple(args.dawn), f16_prompts=args.f16_prompts,
                      q8_prompts=args.q8_prompts,
                      check_tiles=args.check_tiles, profile_tokens=args.profile_tokens)
    print(f"model: {model}")
    print(f"browser ({page['device']}, {page['variant']}, integer products: {page['dot4']}): prefill "
          f"{page['prefill']:8.1f} tok/s   decode {page['decode']:7.1f} tok/s   (boot and load {page['boot_s']:.1f} s)")
    print(f"  prompts' tiles: {page['tiles']}; features: {', '.join(page['features'])}")
    if page["nonfinite_logits"]:
        print(f"  {page['nonfinite_logits']} of the logits after the prompt are not finite")
    for error in page["gpu_errors"][:3]:
        print(f"  {error}")
    for result in page.get("check_tiles", []):
        print(f"  check_tiles.py: {result}")
    if args.no_native:
        for name, ms in page.get("profile", {}).items():
            if name != "device":
                print(f"  {name:16s} {ms:7.3f} ms (profile_decode.py, {args.profile_tokens} tokens a step)")
        return
    pre, dec, device, profile, logits = asyncio.run(bench_native(model, args.prompt_tokens, args.decode_tokens,
                                                                 args.ignore_eos, args.profile,
                                                                 args.profile_tokens))
    print(f"native ({device}): prefill {pre:8.1f} tok/s   decode {dec:7.1f} tok/s")
    print(f"browser / native: prefill {page['prefill'] / pre:.3f}x   decode {page['decode'] / dec:.3f}x")
    print(logits_apart(page["top_logits"], logits))
    if profile:
        print(f"a step of {args.profile_tokens} tokens, ms (profile_decode.py): browser / native")
        for name, ms in profile.items():
            if name != "device":
                print(f"  {name:16s} {page['profile'][name]:7.3f} / {ms:7.3f}")


if __name__ == "__main__":
    main()
