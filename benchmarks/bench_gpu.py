"""The engine on a real GPU (wgpu-py over Vulkan) next to llama.cpp (CUDA) on the same GGUFs, in one run.

For the device tool's GPU machine, where real models cannot travel: run it on files synthetic_model.py writes
there (the real shapes and weight types, made-up weights), so both sides ignore end-of-text. For each file:
prefill of --prompt tokens, and decode of --decode tokens at depth 0 and at --depth, each side's best of
--repeats; then the ratios, and the floor decode could reach: the weight bytes a token reads (every matrix
once; one row of the embedding) over the bandwidth a plain WGSL kernel reads one buffer at. llama.cpp is its
own llama-bench (`--llama-bench PATH`, built with CUDA from the pinned llama-cpp-python sdist's vendor/llama.cpp); with
`--torch`, Hugging Face transformers' LlamaForCausalLM of the same shape joins as a second peer (float16); with
`--f16-prompts`, the engine's prefill in f16 tiles (Model.load's f16_prompts) as a row of its own, and with
`--q8-prompts` on x in 8 bits (q8_prompts, integer tiles) as another; with `--kv-f16`,
the engine with its KV cache in f16 (Model.load's kv_f16, what llama-bench's cache is by default) as another; with
`--page CHROMIUM`, the engine in a page of that Chromium on the same GPU (bench_page.py, the extension built at
--extension) with f16 prompts, on subgroup matrices where the browser offers them: its prefill as a third row.

Usage: python benchmarks/bench_gpu.py --llama-bench /tmp/llama.cpp/build/bin/llama-bench A.gguf [B.gguf ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import time
from pathlib import Path

from bench_engine import bench_engine
from bench_page import ROOT, bench_page

from engine.config import ModelConfig
from engine.gguf import open_gguf
from engine.gpu import open_device

# Every invocation sums its vec4s of a big buffer and stores one f32: a read as a GEMV reads its weights.
_READ = """
@group(0) @binding(0) var<storage, read> data: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> sums: array<f32>;
override PER: u32 = 64u;
@compute @workgroup_size(256)
fn read_all(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = nwg.x * 256u;
    var s = vec4<f32>(0.0);
    for (var i = 0u; i < PER; i++) { s += data[i * n + gid.x]; }
    sums[gid.x] = s.x + s.y + s.z + s.w;
}
"""


async def read_bandwidth(nbytes: int = 1 << 30, rounds: int = 5) -> float:
    """Bytes/s a WGSL kernel reads from one device buffer (coalesced vec4 loads), best of `rounds`."""
    device = await open_device()
    per, lanes = 64, nbytes // 16 // 64  # each invocation reads 64 vec4s, strided for coalescing
    data, sums = device.create_buffer(nbytes), device.create_buffer(lanes * 4)
    pipeline = device.create_pipeline(_READ, "read_all", {"PER": per})
    bind_group = device.create_bind_group(pipeline, [data, sums])
    best = float("inf")
    for _ in range(rounds + 1):  # the first compiles and warms up
        recorder = device.recorder()
        for _ in range(10):
            recorder.dispatch(pipeline, bind_group, (lanes // 256, 1, 1))
        start = time.perf_counter()
        device.submit(recorder)
        await device.read_buffer(sums, 0, 4)
        best = min(best, (time.perf_counter() - start) / 10)
    return nbytes / best


def bytes_per_token(path: Path) -> int:
    """Weight bytes one decode step reads: every tensor, but only one row of the embedding table (or all of
    it when it is also the head)."""
    gguf = open_gguf(path)
    config = ModelConfig.from_gguf(gguf.metadata, set(gguf.tensors))
    total = sum(t.nbytes for t in gguf.tensors.values())
    if not config.tied_output:
        embedding = gguf.tensors["token_embd.weight"]
        total -= embedding.nbytes - embedding.nbytes // config.vocab_size
    return total


def llama_bench(binary: Path, path: Path, args: list[str], repeats: int) -> dict[str, float]:
    """{test name: tokens/s} from llama-bench's JSON output (fully offloaded): the best of its `repeats` runs, as
    the engine's side is (its average would count the first, cold run: an H200's 135M pp512 read 26,665 tok/s
    alone, 48,117 as the best of three)."""
    command = [str(binary), "-m", str(path), "-ngl", "99", "-r", str(repeats), "-o", "json", *args]
    rows = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    return {f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}@{r.get('n_depth', 0)}":
            max(r.get("samples_ts") or [r["avg_ts"]]) for r in rows}  # fmt: skip


def bench_torch(path: Path, n_prompt: int, n_decode: int) -> tuple[float, float]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    gguf = open_gguf(path)
    c = ModelConfig.from_gguf(gguf.metadata, set(gguf.tensors))
    llama = LlamaConfig(vocab_size=c.vocab_size, hidden_size=c.dim, intermediate_size=c.ffn_dim,
                        num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads, num_key_value_heads=c.n_kv_heads,
                        head_dim=c.head_dim, rms_norm_eps=c.rms_eps, rope_theta=c.rope_theta,
                        max_position_embeddings=c.context_length, tie_word_embeddings=c.tied_output)  # fmt: skip
    model = LlamaForCausalLM(llama).to("cuda", torch.float16).eval()
    ids = torch.randint(0, c.vocab_size, (1, n_prompt), device="cuda")
    with torch.inference_mode():
        model(ids, use_cache=True).logits[:, -1].argmax(-1).item()  # warm up
        start = time.perf_counter()
        out = model(ids, use_cache=True)
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        token.item()
        prefill = n_prompt / (time.perf_counter() - start)
        past, start = out.past_key_values, time.perf_counter()
        for _ in range(n_decode):
            out = model(token, past_key_values=past, use_cache=True)
            past, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
            token.item()  # streamed: the token goes out before the next step
    return prefill, n_decode / (time.perf_counter() - start)


def engine_row(path: Path, args: argparse.Namespace, **model_options) -> tuple[float, float, float]:
    """The engine's prefill, decode at depth 0 and decode at --depth (tokens/s, each the best of --repeats)."""
    runs = range(args.repeats)
    ours = [asyncio.run(bench_engine(path, args.prompt, 8, True, **model_options))[0] for _ in runs]
    at0 = [asyncio.run(bench_engine(path, 1, args.decode, True, **model_options))[1] for _ in runs]
    deep = [asyncio.run(bench_engine(path, args.depth, args.decode, True, **model_options))[1] for _ in runs]
    return max(ours), max(at0), max(deep)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--llama-bench", type=Path, help="llama.cpp's llama-bench (CUDA build)")
    parser.add_argument("--prompt", type=int, default=512)
    parser.add_argument("--decode", type=int, default=128)
    parser.add_argument("--depth", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs a side; the best counts (one leaves llama-bench's prefill cold: use 2 or more)")
    parser.add_argument("--torch", action="store_true", help="transformers on CUDA as a second peer")
    parser.add_argument("--f16-prompts", action="store_true",
                        help="also the engine's prefill with f16 prompts (Model.load's f16_prompts)")
    parser.add_argument("--q8-prompts", action="store_true",
                        help="also the engine's prefill with q8 prompts (Model.load's q8_prompts)")
    parser.add_argument("--kv-f16", action="store_true", help="also the engine with an f16 KV cache (kv_f16)")
    parser.add_argument("--page", metavar="CHROMIUM",
                        help="also the engine's prefill in a page of this Chromium (f16 prompts: bench_page.py)")
    parser.add_argument("--extension", type=Path, default=ROOT / "dist" / "extension",
                        help="the built extension the page takes its runtime from (python build.py)")
    args = parser.parse_args()
    bandwidth = asyncio.run(read_bandwidth())
    print(f"read bandwidth {bandwidth / 1e12:.2f} TB/s; tokens/s, best of {args.repeats}; ratio = engine / peer")
    header = (f"{'model':24s} {'side':10s} {'pp' + str(args.prompt):>9s} {'tg@0':>8s} "
              f"{'tg@' + str(args.depth):>8s} {'floor':>7s}")  # fmt: skip
    print(header)
    for path in args.models:
        floor = bandwidth / bytes_per_token(path)
        engine = engine_row(path, args)
        rows = {"engine": engine}
        if args.llama_bench:
            tests = llama_bench(args.llama_bench, path, ["-p", str(args.prompt), "-n", str(args.decode)], args.repeats)
            tests |= llama_bench(args.llama_bench, path, ["-p", "0", "-n", str(args.decode), "-d", str(args.depth)],
                                 args.repeats)  # fmt: skip
            rows["llama.cpp"] = (tests[f"pp{args.prompt}"], tests[f"tg{args.decode}@0"],
                                 tests[f"tg{args.decode}@{args.depth}"])  # fmt: skip
        for name in ("f16", "q8"):  # (their decode is the default's: only prompts' products change)
            if getattr(args, f"{name}_prompts"):
                runs = [asyncio.run(bench_engine(path, args.prompt, 8, True, **{f"{name}_prompts": True}))[0]
                        for _ in range(args.repeats)]
                rows[f"engine {name}"] = (max(runs), float("nan"), float("nan"))
        if args.kv_f16:
            rows["engine kv16"] = engine_row(path, args, kv_f16=True)
        if args.page:  # (a fresh browser profile each run: the first prompt also compiles the pipelines)
            page = [bench_page(args.page, args.extension, path, args.prompt, 8, True, gpu=True, f16_prompts=True)
                    for _ in range(max(args.repeats, 2))]
            rows["engine page"] = (max(run["prefill"] for run in page), float("nan"), float("nan"))
        if args.torch:
            pre, dec = bench_torch(path, args.prompt, args.decode)
            rows["torch f16"] = (pre, dec, float("nan"))
        for side, (pre, d0, dd) in rows.items():
            print(f"{path.name:24s} {side:10s} {pre:9.1f} {d0:8.1f} {dd:8.1f} {floor:7.1f}")
            if not side.startswith("engine"):
                print(f"{'':24s} {'ratio':10s} {engine[0] / pre:9.2f} {engine[1] / d0:8.2f} {engine[2] / dd:8.2f}")
                if "engine kv16" in rows:
                    kv16 = rows["engine kv16"]
                    print(f"{'':24s} {'ratio kv16':10s} {kv16[0] / pre:9.2f} {kv16[1] / d0:8.2f} {kv16[2] / dd:8.2f}")
                for name in ("f16", "q8", "page"):
                    if f"engine {name}" in rows:
                        print(f"{'':24s} {'ratio ' + name:10s} {rows[f'engine {name}'][0] / pre:9.2f}")
        print(f"{'':24s} {'depth kept':10s} {'':9s} {'':8s} {engine[2] / engine[1]:8.2f}")
        if "engine kv16" in rows:
            kv16 = rows["engine kv16"]
            print(f"{'':24s} {'kept kv16':10s} {'':9s} {'':8s} {kv16[2] / kv16[1]:8.2f}")


if __name__ == "__main__":
    main()
