"""The engine on a real GPU (wgpu-py over Vulkan) next to PyTorch running the same transformer, in one run.

For the device tool's GPU machine, where the model cannot travel: run it on the synthetic GGUF that
synthetic_model.py writes (the real model's shapes, tensor types and tokenizer; made-up weights), so both
sides ignore end-of-text and generate exactly --decode-tokens. The peer is Hugging Face transformers'
LlamaForCausalLM with the same hyperparameters on CUDA (eager, KV cache, one read-back per token, as a
streaming server does), in float16 and float32.

Usage: python benchmarks/bench_gpu.py --model synthetic.gguf [--prompt-tokens 128] [--decode-tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench_engine import bench_engine

from engine.config import ModelConfig
from engine.gguf import open_gguf


def bench_torch(config: ModelConfig, n_prompt: int, n_decode: int, dtype_name: str) -> tuple[float, float]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    dtype = getattr(torch, dtype_name)
    llama = LlamaConfig(vocab_size=config.vocab_size, hidden_size=config.dim, intermediate_size=config.ffn_dim,
                        num_hidden_layers=config.n_layers, num_attention_heads=config.n_heads,
                        num_key_value_heads=config.n_kv_heads, head_dim=config.head_dim, rms_norm_eps=config.rms_eps,
                        rope_theta=config.rope_theta, max_position_embeddings=config.context_length,
                        tie_word_embeddings=config.tied_output)  # fmt: skip
    model = LlamaForCausalLM(llama).to("cuda", dtype).eval()
    ids = torch.randint(0, config.vocab_size, (1, n_prompt), device="cuda")
    with torch.inference_mode():
        for _ in range(3):  # warm up kernels and the allocator
            model(ids, use_cache=True).logits[:, -1].argmax(-1).item()
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = model(ids, use_cache=True)
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        token.item()
        prefill = n_prompt / (time.perf_counter() - start)
        past = out.past_key_values
        start = time.perf_counter()
        for _ in range(n_decode):
            out = model(token, past_key_values=past, use_cache=True)
            past, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
            token.item()  # the token goes to the client before the next step, as when streaming
        decode = n_decode / (time.perf_counter() - start)
    return prefill, decode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each; the best is reported")
    args = parser.parse_args()
    gguf = open_gguf(args.model)
    config = ModelConfig.from_gguf(gguf.metadata, set(gguf.tensors))
    rows = {}
    for _ in range(args.repeats):
        e_pre, e_dec, device = asyncio.run(bench_engine(args.model, args.prompt_tokens, args.decode_tokens, True))
        rows.setdefault(f"engine ({device})", []).append((e_pre, e_dec))
        for dtype in ("float16", "float32"):
            rows.setdefault(f"transformers (CUDA, {dtype})", []).append(
                bench_torch(config, args.prompt_tokens, args.decode_tokens, dtype))  # fmt: skip
    best = {name: (max(p for p, _ in runs), max(d for _, d in runs)) for name, runs in rows.items()}
    print(f"{args.prompt_tokens}-token prompt, {args.decode_tokens} decode steps, best of {args.repeats}:")
    for name, (pre, dec) in best.items():
        print(f"{name:48s} prefill {pre:9.1f} tok/s   decode {dec:7.1f} tok/s")
    e_pre, e_dec = next(iter(best.values()))
    for name, (pre, dec) in list(best.items())[1:]:
        print(f"engine / {name:39s} prefill {e_pre / pre:8.2f}x      decode {e_dec / dec:6.2f}x")


if __name__ == "__main__":
    main()
