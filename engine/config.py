"""Hyperparameters of a transformer, read once from GGUF metadata into one frozen dataclass.

Every architecture Hearth runs is the llama block (RMSNorm, grouped-query attention with RoPE, a gated
feed-forward) plus what its family adds, read as llama.cpp reads it (src/models/<arch>.cpp):
- llama (and mistral): the block as is; Llama 3.x's RoPE scaling is a rope_freqs tensor (Model reads it).
- qwen2: biases on q, k and v; NeoX RoPE.
- qwen3: a per-head RMSNorm of q and of k before RoPE; NeoX RoPE.
- phi3: q|k|v and gate|up fused in one tensor each (Model reads either layout); LongRoPE's per-pair factors,
  short or long by context, and its attention factor on cos and sin; NeoX RoPE.
- gemma2: embeddings times sqrt(dim); GELU (tanh) as the gate; RMSNorm of each branch before its residual
  add; attention scores and final logits soft-capped; every other layer (0, 2, ..) a sliding window;
  NeoX RoPE.
- gemma3: gemma2's block with q/k norms and without soft-capping; five of every six layers slide (when the
  file declares a window) and rotate with their own RoPE base.
Anything else is refused with the architecture's name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from .errors import UnsupportedModel

DEFAULT_N_CTX = 2048  # tokens of context allocated unless asked otherwise (at most the model's own)
# Requests a loaded model answers at once (engine/streams.py): each holds its own n_ctx positions of KV cache.
DEFAULT_SEATS = 1

# NeoX-style RoPE pairs (i, i + d/2); llama.cpp's converter permutes llama's Q/K so it uses (2i, 2i+1).
_NEOX_ROPE = {"llama": False, "mistral": False, "qwen2": True, "qwen3": True, "phi3": True, "gemma2": True,
              "gemma3": True}  # fmt: skip
ARCHITECTURES = tuple(_NEOX_ROPE)
_GEMMA = ("gemma2", "gemma3")
# RoPE scalings: "none"; "linear" divides positions by the factor; "longrope" (Phi 3) and Llama 3's
# frequency factors come as tensors. llama.cpp reads a missing key as "linear" (with no factor: none).
_ROPE_SCALINGS = ("none", "linear", "longrope")


@dataclass(frozen=True)
class ModelConfig:
    """What the forward pass needs to know about a model."""

    arch: str  # GGUF general.architecture, one of ARCHITECTURES
    n_layers: int
    dim: int  # residual stream width
    ffn_dim: int  # hidden width of the gated feed-forward
    n_heads: int
    n_kv_heads: int  # < n_heads: grouped-query attention
    head_dim: int
    vocab_size: int
    context_length: int  # what the model was trained for
    rope_theta: float  # frequency base
    rope_dim: int  # dimensions of each head that RoPE rotates
    rope_neox: bool
    rope_freq_scale: float  # 1 / linear scaling factor
    rms_eps: float
    qkv_bias: bool
    tied_output: bool  # the embedding table doubles as the output head
    # What the family adds (defaults: the llama block).
    embed_scale: float = 1.0  # embeddings are multiplied by this (Gemma: sqrt(dim))
    glu: str = "silu"  # the feed-forward gate's activation: "silu", or "gelu" (tanh form, Gemma)
    qk_norm: bool = False  # per-head RMSNorm of q and k before RoPE (Qwen 3, Gemma 3)
    post_norms: bool = False  # RMSNorm of attention's and the feed-forward's outputs before the adds (Gemma)
    attn_scale: float | None = None  # q.k is scaled by this (None: 1 / sqrt(head_dim))
    attn_softcap: float = 0.0  # scores become cap * tanh(s / cap) (0: not capped; Gemma 2)
    final_softcap: float = 0.0  # logits likewise (Gemma 2)
    sliding_window: int = 0  # sliding layers see the last this many positions (0: none slide)
    sliding_layers: tuple[bool, ...] = ()  # per layer: does it slide (empty: none)
    rope_theta_sliding: float = 0.0  # sliding layers' RoPE base and scale (Gemma 3's local RoPE)
    rope_freq_scale_sliding: float = 1.0
    rope_attn_factor: float = 1.0  # cos and sin are multiplied by this (LongRoPE's attention factor)
    rope_original_context: int = 0  # LongRoPE: contexts longer than this use the long factors

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    @property
    def qkv_dim(self) -> int:
        """Width of a row of q | k | v, as the stacked product writes them."""
        return self.q_dim + 2 * self.kv_dim

    def slides(self, layer: int) -> bool:
        """Whether `layer` attends over a sliding window."""
        return bool(self.sliding_layers) and self.sliding_layers[layer]

    def rope_base(self, layer: int) -> tuple[float, float]:
        """(theta, freq_scale) of `layer`'s RoPE: Gemma's sliding layers have their own."""
        if self.slides(layer) and self.rope_theta_sliding:
            return self.rope_theta_sliding, self.rope_freq_scale_sliding
        return self.rope_theta, self.rope_freq_scale

    def rope_factors_tensor(self, n_ctx: int) -> str | None:
        """The tensor of per-pair RoPE factors this context uses, if the family has one: Llama 3's
        rope_freqs, or LongRoPE's short factors up to the original context and long ones past it
        (as llama.cpp chooses them by the context it allocates)."""
        if self.arch == "phi3":
            return "rope_factors_long.weight" if n_ctx > self.rope_original_context else "rope_factors_short.weight"
        return "rope_freqs.weight"

    @classmethod
    def from_gguf(cls, metadata: dict[str, Any], tensor_names: set[str]) -> ModelConfig:
        """Read the hyperparameters; raise UnsupportedModel for architectures this engine does not run."""
        arch = metadata.get("general.architecture", "")
        if arch not in _NEOX_ROPE:
            raise UnsupportedModel(f"unsupported architecture {arch!r} (Hearth runs: {', '.join(ARCHITECTURES)})")

        def get(key: str, default: Any = None) -> Any:
            value = metadata.get(f"{arch}.{key}", default)
            if value is None:
                raise UnsupportedModel(f"GGUF metadata lacks {arch}.{key}")
            return value

        dim, n_heads, n_layers = get("embedding_length"), get("attention.head_count"), get("block_count")
        head_dim = get("attention.key_length", dim // n_heads)
        scaling = get("rope.scaling.type", "linear")
        if scaling not in _ROPE_SCALINGS:
            supported = ", ".join(_ROPE_SCALINGS)
            raise UnsupportedModel(f"unsupported RoPE scaling {scaling!r} (Hearth supports {supported})")
        factor = float(get("rope.scaling.factor", 0.0)) if scaling == "linear" else 0.0
        vocab = metadata.get(f"{arch}.vocab_size") or len(metadata.get("tokenizer.ggml.tokens", ()))
        context = get("context_length")
        base = cls(
            arch=arch,
            n_layers=n_layers,
            dim=dim,
            ffn_dim=get("feed_forward_length"),
            n_heads=n_heads,
            n_kv_heads=get("attention.head_count_kv", n_heads),
            head_dim=head_dim,
            vocab_size=vocab,
            context_length=context,
            rope_theta=float(get("rope.freq_base", 10000.0)),
            rope_dim=get("rope.dimension_count", head_dim),
            rope_neox=_NEOX_ROPE[arch],
            rope_freq_scale=1.0 / factor if factor else 1.0,
            rms_eps=float(get("attention.layer_norm_rms_epsilon")),
            qkv_bias="blk.0.attn_q.bias" in tensor_names,
            tied_output="output.weight" not in tensor_names,
            qk_norm="blk.0.attn_q_norm.weight" in tensor_names,
            rope_attn_factor=float(get("rope.scaling.attn_factor", 1.0)),
            rope_original_context=int(get("rope.scaling.original_context_length", context)),
        )
        if arch in _GEMMA:
            return _gemma(base, get)
        window = int(get("attention.sliding_window", 0))
        if window and arch in ("llama", "mistral"):  # Mistral 7B v0.1: every layer slides
            return replace(base, sliding_window=window, sliding_layers=(True,) * n_layers)
        return base  # phi3's files declare a window that llama.cpp ignores (and so does Hearth)


def _gemma(c: ModelConfig, get) -> ModelConfig:
    """Gemma 2 and 3 as llama.cpp builds them (src/models/gemma2.cpp, gemma3.cpp)."""
    # llama.cpp scales queries by 1/sqrt(head_dim), except for the 27B models (told apart by their layer
    # count), whose query_pre_attn_scalar is dim / n_heads.
    twenty_seven_b = c.n_layers == (46 if c.arch == "gemma2" else 62)
    scale = 1 / math.sqrt(c.dim / c.n_heads if twenty_seven_b else c.head_dim)
    common = dict(embed_scale=math.sqrt(c.dim), glu="gelu", post_norms=True, attn_scale=scale)
    if c.arch == "gemma2":  # layers 0, 2, 4.. slide; defaults as llama.cpp's
        window, pattern = int(get("attention.sliding_window", 4096)), 2
        capped = dict(attn_softcap=float(get("attn_logit_softcapping", 50.0)),
                      final_softcap=float(get("final_logit_softcapping", 30.0)))  # fmt: skip
        local_rope = dict(rope_theta_sliding=float(get("rope.freq_base_swa", c.rope_theta)),
                          rope_freq_scale_sliding=c.rope_freq_scale)  # fmt: skip
    else:  # gemma3: five of every six layers slide, only if the file declares a window
        window, pattern = int(get("attention.sliding_window", 0)), 6
        capped = dict(final_softcap=float(get("final_logit_softcapping", 0.0)))
        local_rope = dict(rope_theta_sliding=float(get("rope.freq_base_swa", 10000.0)), rope_freq_scale_sliding=1.0)
    pattern = get("attention.sliding_window_pattern", pattern)  # a period, or one flag per layer
    if isinstance(pattern, list | tuple):
        sliding = tuple(bool(flag) for flag in pattern[: c.n_layers])
    else:
        sliding = tuple(pattern == 0 or i % pattern < pattern - 1 for i in range(c.n_layers))
    if not window:
        return replace(c, **common, **capped)
    return replace(c, **common, **capped, **local_rope, sliding_window=window, sliding_layers=sliding)
