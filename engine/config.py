"""Hyperparameters of a llama-family model, read once from GGUF metadata into one frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import UnsupportedModel

DEFAULT_N_CTX = 2048  # tokens of context allocated unless asked otherwise (at most the model's own)

# Architectures that share the llama block (RMSNorm, GQA attention with RoPE, SwiGLU MLP).
# NeoX-style RoPE pairs (i, i + d/2); llama.cpp's converter permutes llama's Q/K so it uses (2i, 2i+1).
_NEOX_ROPE = {"qwen2": True, "llama": False, "mistral": False}


@dataclass(frozen=True)
class ModelConfig:
    """What the forward pass needs to know about a model."""

    arch: str  # GGUF general.architecture
    n_layers: int
    dim: int  # residual stream width
    ffn_dim: int  # hidden width of the SwiGLU MLP
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

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    @classmethod
    def from_gguf(cls, metadata: dict[str, Any], tensor_names: set[str]) -> ModelConfig:
        """Read the hyperparameters; raise UnsupportedModel for architectures this engine does not run."""
        arch = metadata.get("general.architecture", "")
        if arch not in _NEOX_ROPE:
            supported = ", ".join(sorted(_NEOX_ROPE))
            raise UnsupportedModel(f"unsupported architecture {arch!r} (Hearth runs: {supported})")

        def get(key: str, default: Any = None) -> Any:
            value = metadata.get(f"{arch}.{key}", default)
            if value is None:
                raise UnsupportedModel(f"GGUF metadata lacks {arch}.{key}")
            return value

        dim, n_heads = get("embedding_length"), get("attention.head_count")
        head_dim = get("attention.key_length", dim // n_heads)
        scaling = get("rope.scaling.type", "none")
        if scaling not in ("none", "linear"):
            raise UnsupportedModel(f"unsupported RoPE scaling {scaling!r} (Hearth supports linear)")
        factor = get("rope.scaling.factor", 1.0) if scaling == "linear" else 1.0
        vocab = metadata.get(f"{arch}.vocab_size") or len(metadata.get("tokenizer.ggml.tokens", ()))
        return cls(
            arch=arch,
            n_layers=get("block_count"),
            dim=dim,
            ffn_dim=get("feed_forward_length"),
            n_heads=n_heads,
            n_kv_heads=get("attention.head_count_kv", n_heads),
            head_dim=head_dim,
            vocab_size=vocab,
            context_length=get("context_length"),
            rope_theta=float(get("rope.freq_base", 10000.0)),
            rope_dim=get("rope.dimension_count", head_dim),
            rope_neox=_NEOX_ROPE[arch],
            rope_freq_scale=1.0 / float(factor or 1.0),
            rms_eps=float(get("attention.layer_norm_rms_epsilon")),
            qkv_bias="blk.0.attn_q.bias" in tensor_names,
            tied_output="output.weight" not in tensor_names,
        )
