"""Tiny random-weight GGUF models, one per architecture the reference knows, each with a real tokenizer.

A file holds what llama.cpp's converter (convert_hf_to_gguf.py, conversion/<family>.py) writes for a model
of that family, the same metadata keys and tensor names, only at toy size with float32 weights; its
tokenizer (every tokenizer.* key) comes from llama.cpp's tokenizer test set and its chat template from
llama.cpp's templates, both through tests/llama_sdist.py. llama.cpp, the float64 reference and the engine
can all run it, and a 40-token prompt reaches every feature: the sliding windows are 8 positions wide.
"""

from __future__ import annotations

import functools
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np

from tests.gguf_files import read_gguf
from tests.llama_sdist import template, vocab_case


@dataclass(frozen=True)
class Family:
    """One architecture's toy shape, its tokenizer and template, and the metadata its converter adds."""

    arch: str  # general.architecture (Mistral's converter writes "llama")
    vocab: str  # tokenizer of llama.cpp's test set: models/ggml-vocab-<vocab>.gguf
    template: str  # chat template: models/templates/<template>.jinja
    n_layers: int
    dim: int
    hidden_dim: int
    n_heads: int
    n_kv_heads: int
    head_dim: int  # written as attention.key_length / value_length when it is not dim // n_heads
    context_length: int
    rope_theta: float
    rms_eps: float = 1e-6
    tied: bool = True  # no output.weight: the head reuses token_embd
    extra: dict = field(default_factory=dict)  # more {arch}.* keys, written without the prefix


FAMILIES = {
    # Llama 3.2: Llama 3 RoPE frequency factors in rope_freqs.weight (no rope.scaling.* keys: the converter
    # writes none for rope_type "llama3"), tied head, vocab_size key.
    "llama": Family("llama", "llama-bpe", "meta-llama-Llama-3.2-3B-Instruct", n_layers=2, dim=64, hidden_dim=128,
                    n_heads=4, n_kv_heads=2, head_dim=16, context_length=131072, rope_theta=500000.0,
                    rms_eps=1e-5, extra={"vocab_size": 128256, "rope.dimension_count": 16}),
    # Mistral 7B v0.2+: a llama with SentencePiece vocabulary and its own head. llama.cpp's llama graph
    # never reads attention.sliding_window, and the converter does not write it.
    "mistral": Family("llama", "llama-spm", "mistralai-Mistral-Nemo-Instruct-2407", n_layers=2, dim=128,
                      hidden_dim=256, n_heads=4, n_kv_heads=2, head_dim=32, context_length=32768,
                      rope_theta=1000000.0, rms_eps=1e-5, tied=False,
                      extra={"vocab_size": 32000, "rope.dimension_count": 32}),
    # Qwen2.5: q, k and v biases, NeoX RoPE, tied head.
    "qwen2": Family("qwen2", "qwen2", "Qwen-Qwen2.5-7B-Instruct", n_layers=2, dim=64, hidden_dim=128,
                    n_heads=4, n_kv_heads=2, head_dim=16, context_length=32768, rope_theta=1000000.0),
    # Qwen3: per-head RMSNorm of q and k, head_dim wider than dim // n_heads (as in Qwen3-0.6B).
    "qwen3": Family("qwen3", "qwen2", "Qwen-Qwen3-0.6B", n_layers=2, dim=64, hidden_dim=128,
                    n_heads=4, n_kv_heads=2, head_dim=32, context_length=40960, rope_theta=1000000.0),
    # Phi-3.5-mini: fused attn_qkv and gate|up ffn_up, own head, LongRoPE with the original context
    # 4096 (short factors below it) and attn_factor sqrt(1 + ln(131072/4096) / ln(4096)); its
    # sliding_window is written and llama.cpp turns it off.
    "phi3": Family("phi3", "phi-3", "microsoft-Phi-3.5-mini-instruct", n_layers=2, dim=128, hidden_dim=256,
                   n_heads=4, n_kv_heads=2, head_dim=32, context_length=131072, rope_theta=10000.0,
                   rms_eps=1e-5, tied=False,
                   extra={"rope.scaling.original_context_length": 4096, "rope.dimension_count": 32,
                          "rope.scaling.attn_factor": math.sqrt(1 + math.log(131072 / 4096) / math.log(4096)),
                          "attention.sliding_window": 262144}),
    # Gemma 2: post-norms, GeGLU, soft-capped attention scores and logits, sliding layers 0, 2, ...
    # (llama.cpp's default pattern 2; the converter writes only the window).
    "gemma2": Family("gemma2", "gemma-4", "google-gemma-2-2b-it", n_layers=4, dim=64, hidden_dim=128,
                     n_heads=4, n_kv_heads=2, head_dim=32, context_length=8192, rope_theta=10000.0,
                     extra={"attention.sliding_window": 8, "attn_logit_softcapping": 5.0,
                            "final_logit_softcapping": 15.0}),
    # Gemma 3 (4B and up): q/k norms, post-norms, GeGLU, sliding layers 0-4 of each 6 (llama.cpp's
    # default pattern), local RoPE base 10000 unscaled, global base 1e6 with linear scaling 8.
    "gemma3": Family("gemma3", "gemma-4", "google-gemma-2-2b-it", n_layers=6, dim=64, hidden_dim=128,
                     n_heads=4, n_kv_heads=2, head_dim=32, context_length=131072, rope_theta=1000000.0,
                     extra={"attention.sliding_window": 8, "rope.freq_base_swa": 10000.0,
                            "rope.scaling.type": "linear", "rope.scaling.factor": 8.0}),
}  # fmt: skip
ARCHS = tuple(FAMILIES)

# Per-layer tensors beyond the llama block, by family.
QKV_BIAS = {"qwen2"}  # attn_{q,k,v}.bias
QK_NORM = {"qwen3", "gemma3"}  # attn_q_norm, attn_k_norm (head_dim,)
POST_NORMS = {"gemma2", "gemma3"}  # post_attention_norm, post_ffw_norm
FUSED = {"phi3"}  # attn_qkv (q|k|v rows), ffn_up (gate|up rows) and no ffn_gate

# Weight scales, chosen so attention is sharp enough for the window and soft-caps to matter and the
# top two logits are rarely within rounding of each other.
EMBEDDING_STD = 1.0  # token_embd and output; Gemma's sqrt(dim) input scale is divided out of its table
MATRIX_GAIN = 1.5  # a matrix's std is MATRIX_GAIN / sqrt(n_in)
LOGIT_STD = 5.0  # output_norm's mean is set for logits of about this spread


def write_tiny_model(path: str | Path, arch: str, *, seed: int = 0) -> Path:
    """Writes the toy model of `arch` (one of ARCHS) to `path` and returns the path."""
    family = FAMILIES[arch]
    metadata = {**_hparams(family, arch), **_tokenizer(family.vocab),
                "tokenizer.chat_template": template(family.template)}  # fmt: skip
    return write_gguf_fast(Path(path), family.arch, metadata, _tensors(family, arch, seed))


def _hparams(f: Family, arch: str) -> dict:
    """The {arch}.* keys as the family's converter writes them."""
    a = f.arch
    meta = {
        "general.name": f"hearth-tiny-{arch}",
        "general.file_type": 0,  # LLAMA_FTYPE_ALL_F32
        f"{a}.block_count": f.n_layers,
        f"{a}.context_length": f.context_length,
        f"{a}.embedding_length": f.dim,
        f"{a}.feed_forward_length": f.hidden_dim,
        f"{a}.attention.head_count": f.n_heads,
        f"{a}.attention.head_count_kv": f.n_kv_heads,
        f"{a}.attention.layer_norm_rms_epsilon": f.rms_eps,
        f"{a}.rope.freq_base": f.rope_theta,
    }
    if f.head_dim != f.dim // f.n_heads or a in POST_NORMS:  # Gemma's converters always write them
        meta |= {f"{a}.attention.key_length": f.head_dim, f"{a}.attention.value_length": f.head_dim}
    return meta | {f"{a}.{key}": value for key, value in f.extra.items()}


@functools.cache
def _tokenizer(vocab: str) -> dict:
    """Every tokenizer.* key of llama.cpp's test vocabulary `vocab` except its chat template."""
    metadata = read_gguf(vocab_case(vocab).gguf).metadata
    return {k: v for k, v in metadata.items() if k.startswith("tokenizer.") and k != "tokenizer.chat_template"}


def _tensors(f: Family, arch: str, seed: int) -> dict[str, np.ndarray]:
    """All tensors, float32, each matrix (n_out, n_in) as GGUF stores it."""
    rng = np.random.default_rng(seed)
    n_vocab = len(_tokenizer(f.vocab)["tokenizer.ggml.tokens"])

    def matrix(n_out: int, n_in: int, gain: float = MATRIX_GAIN) -> np.ndarray:
        return (rng.standard_normal((n_out, n_in)) * gain / math.sqrt(n_in)).astype(np.float32)

    def bias(n: int) -> np.ndarray:
        return rng.normal(0.0, 0.5, n).astype(np.float32)

    def norm(n: int, mean: float = 1.0) -> np.ndarray:  # Gemma's converters store 1 + w: also near 1
        return rng.normal(mean, 0.1, n).astype(np.float32)

    embedding_std = EMBEDDING_STD / math.sqrt(f.dim) if arch in POST_NORMS else EMBEDDING_STD

    def table() -> np.ndarray:  # (n_vocab, dim): drawn in float32, as the 262k-row ones are large
        return rng.standard_normal((n_vocab, f.dim), dtype=np.float32) * np.float32(embedding_std)

    tensors = {"token_embd.weight": table(),
               "output_norm.weight": norm(f.dim, LOGIT_STD / (embedding_std * math.sqrt(f.dim)))}  # fmt: skip
    if not f.tied:
        tensors["output.weight"] = table()
    tensors |= _rope_tensors(f, arch, rng)
    q, kv = f.n_heads * f.head_dim, f.n_kv_heads * f.head_dim
    for i in range(f.n_layers):
        layer = {"attn_norm.weight": norm(f.dim), "attn_output.weight": matrix(f.dim, q),
                 "ffn_norm.weight": norm(f.dim), "ffn_down.weight": matrix(f.dim, f.hidden_dim)}  # fmt: skip
        if arch in FUSED:
            layer |= {"attn_qkv.weight": matrix(q + 2 * kv, f.dim), "ffn_up.weight": matrix(2 * f.hidden_dim, f.dim)}
        else:
            layer |= {"attn_q.weight": matrix(q, f.dim), "attn_k.weight": matrix(kv, f.dim),
                      "attn_v.weight": matrix(kv, f.dim), "ffn_gate.weight": matrix(f.hidden_dim, f.dim),
                      "ffn_up.weight": matrix(f.hidden_dim, f.dim)}  # fmt: skip
        if arch in QKV_BIAS:
            layer |= {f"attn_{x}.bias": bias(n) for x, n in zip("qkv", (q, kv, kv), strict=True)}
        if arch in QK_NORM:
            layer |= {"attn_q_norm.weight": norm(f.head_dim), "attn_k_norm.weight": norm(f.head_dim)}
        if arch in POST_NORMS:
            layer |= {"post_attention_norm.weight": norm(f.dim), "post_ffw_norm.weight": norm(f.dim)}
        tensors |= {f"blk.{i}.{name}": array for name, array in layer.items()}
    return tensors


def _rope_tensors(f: Family, arch: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Llama 3's rope_freqs and Phi-3's LongRoPE factors, one divisor per rotated pair."""
    if arch == "llama":
        return {"rope_freqs.weight": llama3_rope_freqs(f.rope_theta, f.head_dim)}
    if arch == "phi3":  # increasing with the wavelength, as Phi-3.5's are; long ones far larger
        short = np.sort(rng.uniform(1.0, 3.0, f.head_dim // 2)).astype(np.float32)
        long = np.sort(rng.uniform(1.0, 40.0, f.head_dim // 2)).astype(np.float32)
        return {"rope_factors_short.weight": short, "rope_factors_long.weight": long}
    return {}


def llama3_rope_freqs(base: float, dim: int, factor: float = 8.0, low_freq_factor: float = 1.0,
                      high_freq_factor: float = 4.0, original_context: int = 64) -> np.ndarray:  # fmt: skip
    """rope_freqs.weight as LlamaModel.generate_extra_tensors computes it from rope_scaling.

    The original context is shrunk from Llama 3's 8192 to 64 so that the factors reach wavelengths
    (here pairs 1 and up) that a 40-token prompt turns through.
    """
    freqs = 1.0 / base ** (np.arange(0, dim, 2, dtype=np.float32) / dim)
    low_freq_wavelen, high_freq_wavelen = original_context / low_freq_factor, original_context / high_freq_factor
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_freq_wavelen:
            factors.append(1.0)
        elif wavelen > low_freq_wavelen:
            factors.append(factor)
        else:
            smooth = (original_context / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


# ---------------------------------------------------------------- writing


class ArrayWriter(gguf.GGUFWriter):
    """gguf's writer, packing a metadata array of strings or numbers in one go where gguf packs item by
    item (seconds for a 262k-token vocabulary and its merges); the bytes are the same."""

    _NUMBERS = {gguf.GGUFValueType.INT32: "<i4", gguf.GGUFValueType.FLOAT32: "<f4", gguf.GGUFValueType.BOOL: "?"}

    def _pack_val(self, val, vtype, add_vtype, sub_type=None) -> bytes:
        item_type = sub_type or (gguf.GGUFValueType.get_type(val[0]) if isinstance(val, list) and val else None)
        if vtype != gguf.GGUFValueType.ARRAY or item_type not in (gguf.GGUFValueType.STRING, *self._NUMBERS):
            return super()._pack_val(val, vtype, add_vtype, sub_type)
        head = struct.pack("<I", vtype) if add_vtype else b""
        head += struct.pack("<IQ", item_type, len(val))
        if item_type == gguf.GGUFValueType.STRING:
            encoded = [item.encode("utf-8") for item in val]
            return head + b"".join(struct.pack("<Q", len(item)) + item for item in encoded)
        return head + np.asarray(val, dtype=self._NUMBERS[item_type]).tobytes()


# How tests/gguf_files.write_gguf types a Python value.
_VALUE_TYPES = {bool: gguf.GGUFValueType.BOOL, int: gguf.GGUFValueType.UINT32, float: gguf.GGUFValueType.FLOAT32,
                str: gguf.GGUFValueType.STRING, list: gguf.GGUFValueType.ARRAY}  # fmt: skip


def write_gguf_fast(path: Path, arch: str, metadata: dict, tensors: dict[str, np.ndarray]) -> Path:
    """tests/gguf_files.write_gguf with ArrayWriter, for float32 `tensors` (name -> array)."""
    writer = ArrayWriter(str(path), arch)
    for key, value in metadata.items():
        writer.add_key_value(key, value, _VALUE_TYPES[type(value)])
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
