"""A float64 numpy reference of the llama-family forward pass, read straight from a GGUF file.

The living reference the engine is checked against: every weight is dequantised once with the
`gguf` package and kept as float64, activations are never quantised, and the forward pass is the
textbook one (RMSNorm -> attention with RoPE and grouped KV heads -> RMSNorm -> SwiGLU), so any
disagreement with the engine or with llama.cpp points at them, not here.

GGUF shapes: a tensor listed as [ne0, ne1] is row-major with ne1 rows of ne0 elements, so a weight
matrix is W (n_out, n_in) = (ne1, ne0) and y = W @ x; `gguf.quants.dequantize` already returns it
in that (ne1, ne0) layout.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

# Architectures whose rotary pairing and biases we know. llama.cpp's converter permutes Q/K rows
# of "llama" checkpoints so that RoPE rotates adjacent pairs (2i, 2i+1); "qwen2" is stored
# unpermuted and rotates NeoX-style pairs (i, i + n_rot/2).
ROPE_NEOX = {"llama": False, "qwen2": True}
HAS_QKV_BIAS = {"llama": False, "qwen2": True}


class UnsupportedModel(ValueError):
    """The GGUF uses an architecture or a rope scaling this reference does not implement."""


# ---------------------------------------------------------------- Config


@dataclass(frozen=True)
class Config:
    """Hyperparameters of a llama-family model, all from GGUF metadata."""

    arch: str  # general.architecture: "llama" or "qwen2"
    n_layers: int  # {arch}.block_count
    dim: int  # {arch}.embedding_length
    hidden_dim: int  # {arch}.feed_forward_length (SwiGLU inner size)
    n_heads: int  # {arch}.attention.head_count
    n_kv_heads: int  # {arch}.attention.head_count_kv (grouped-query attention)
    head_dim: int  # {arch}.attention.key_length, else dim // n_heads
    n_rot: int  # {arch}.rope.dimension_count: leading dims of each head that RoPE rotates
    rope_theta: float  # {arch}.rope.freq_base
    rope_scale: float  # positions are divided by this ({arch}.rope.scaling.factor, linear only)
    rms_eps: float  # {arch}.attention.layer_norm_rms_epsilon
    vocab_size: int
    rope_neox: bool  # pairing (i, i + n_rot/2) instead of (2i, 2i+1)


def _field(reader: gguf.GGUFReader, key: str, default=None):
    """The value of one metadata key, or `default` when the file lacks it."""
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def read_config(reader: gguf.GGUFReader) -> Config:
    """Reads the hyperparameters of a llama-family GGUF from its metadata."""
    arch = _field(reader, "general.architecture")
    if arch not in ROPE_NEOX:
        raise UnsupportedModel(f"architecture {arch!r} is not one of {sorted(ROPE_NEOX)}")
    dim = int(_field(reader, f"{arch}.embedding_length"))
    n_heads = int(_field(reader, f"{arch}.attention.head_count"))
    head_dim = int(_field(reader, f"{arch}.attention.key_length", dim // n_heads))
    scaling = _field(reader, f"{arch}.rope.scaling.type", "none")
    if scaling not in ("none", "linear"):
        raise UnsupportedModel(f"rope scaling {scaling!r} is not implemented (only linear)")
    rope_scale = float(_field(reader, f"{arch}.rope.scaling.factor", 1.0)) if scaling == "linear" else 1.0
    tokens = reader.fields["tokenizer.ggml.tokens"]
    return Config(
        arch=arch,
        n_layers=int(_field(reader, f"{arch}.block_count")),
        dim=dim,
        hidden_dim=int(_field(reader, f"{arch}.feed_forward_length")),
        n_heads=n_heads,
        n_kv_heads=int(_field(reader, f"{arch}.attention.head_count_kv", n_heads)),
        head_dim=head_dim,
        n_rot=int(_field(reader, f"{arch}.rope.dimension_count", head_dim)),
        rope_theta=float(_field(reader, f"{arch}.rope.freq_base", 10000.0)),
        rope_scale=rope_scale or 1.0,
        rms_eps=float(_field(reader, f"{arch}.attention.layer_norm_rms_epsilon")),
        vocab_size=len(tokens.data),
        rope_neox=ROPE_NEOX[arch],
    )


# ---------------------------------------------------------------- Weights


@dataclass(frozen=True)
class Layer:
    """One transformer block's weights, float64, each matrix (n_out, n_in)."""

    rms_att_weight: np.ndarray  # (dim,)
    wq: np.ndarray  # (n_heads * head_dim, dim)
    wk: np.ndarray  # (n_kv_heads * head_dim, dim)
    wv: np.ndarray  # (n_kv_heads * head_dim, dim)
    bq: np.ndarray | None  # (n_heads * head_dim,) qwen2 only
    bk: np.ndarray | None  # (n_kv_heads * head_dim,)
    bv: np.ndarray | None  # (n_kv_heads * head_dim,)
    wo: np.ndarray  # (dim, n_heads * head_dim)
    rms_ffn_weight: np.ndarray  # (dim,)
    w_gate: np.ndarray  # (hidden_dim, dim)  "w1" in llama2.c
    w_up: np.ndarray  # (hidden_dim, dim)    "w3"
    w_down: np.ndarray  # (dim, hidden_dim)  "w2"


@dataclass(frozen=True)
class Weights:
    """All weights of the model, dequantised to float64 once."""

    config: Config
    token_embedding_table: np.ndarray  # (vocab_size, dim)
    layers: tuple[Layer, ...]
    rms_final_weight: np.ndarray  # (dim,)
    wcls: np.ndarray  # (vocab_size, dim): output.weight, or the embedding table when tied
    inv_freq: np.ndarray  # (n_rot // 2,) rotation speed of each pair, scaling already applied


def _inverse_frequencies(config: Config, freq_factors: np.ndarray | None) -> np.ndarray:
    """theta_i = base^(-2i / n_rot), divided by rope_freqs.weight (Llama 3 style) and the linear scale."""
    inv_freq = config.rope_theta ** (-np.arange(0, config.n_rot, 2, dtype=np.float64) / config.n_rot)
    if freq_factors is not None:
        inv_freq = inv_freq / freq_factors  # ggml divides theta by the factor, as here
    return inv_freq / config.rope_scale


@functools.lru_cache(maxsize=2)
def load_weights(path: str) -> Weights:
    """Dequantises every tensor of the GGUF at `path` to float64; cached so tests share one copy."""
    reader = gguf.GGUFReader(path)
    config = read_config(reader)
    tensors = {t.name: t for t in reader.tensors}

    def get(name: str) -> np.ndarray:
        t = tensors[name]
        # dequantize returns the row-major (ne1, ne0) layout, i.e. (n_out, n_in) for a matrix.
        return np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float64)

    def maybe(name: str) -> np.ndarray | None:
        return get(name) if name in tensors else None

    layers = []
    for i in range(config.n_layers):
        b = f"blk.{i}."
        layers.append(
            Layer(
                rms_att_weight=get(b + "attn_norm.weight"),
                wq=get(b + "attn_q.weight"),
                wk=get(b + "attn_k.weight"),
                wv=get(b + "attn_v.weight"),
                bq=maybe(b + "attn_q.bias"),
                bk=maybe(b + "attn_k.bias"),
                bv=maybe(b + "attn_v.bias"),
                wo=get(b + "attn_output.weight"),
                rms_ffn_weight=get(b + "ffn_norm.weight"),
                w_gate=get(b + "ffn_gate.weight"),
                w_up=get(b + "ffn_up.weight"),
                w_down=get(b + "ffn_down.weight"),
            )
        )
    embedding = get("token_embd.weight")
    weights = Weights(
        config=config,
        token_embedding_table=embedding,
        layers=tuple(layers),
        rms_final_weight=get("output_norm.weight"),
        wcls=get("output.weight") if "output.weight" in tensors else embedding,  # tied head
        inv_freq=_inverse_frequencies(config, maybe("rope_freqs.weight")),
    )
    _check_shapes(weights)
    return weights


def _check_shapes(w: Weights) -> None:
    """Fails loudly if a matrix came out transposed: a silent transpose would still 'run'."""
    c = w.config
    q, kv = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
    assert w.token_embedding_table.shape == (c.vocab_size, c.dim)
    assert w.wcls.shape == (c.vocab_size, c.dim)
    for layer in w.layers:
        assert layer.wq.shape == (q, c.dim) and layer.wo.shape == (c.dim, q)
        assert layer.wk.shape == (kv, c.dim) and layer.wv.shape == (kv, c.dim)
        assert layer.w_gate.shape == layer.w_up.shape == (c.hidden_dim, c.dim)
        assert layer.w_down.shape == (c.dim, c.hidden_dim)


# ---------------------------------------------------------------- forward


def rmsnorm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """x / sqrt(mean(x^2) + eps) * weight, over the last axis."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def rope(x: np.ndarray, positions: np.ndarray, inv_freq: np.ndarray, neox: bool) -> np.ndarray:
    """Rotates the first 2*len(inv_freq) dims of each head of x (T, heads, head_dim) by pos * inv_freq."""
    n_rot = 2 * len(inv_freq)
    angle = positions[:, None, None] * inv_freq[None, None, :]  # (T, 1, n_rot/2)
    cos, sin = np.cos(angle), np.sin(angle)
    out = x.copy()
    if neox:
        a, b = x[..., : n_rot // 2], x[..., n_rot // 2 : n_rot]
        out[..., : n_rot // 2] = a * cos - b * sin
        out[..., n_rot // 2 : n_rot] = a * sin + b * cos
    else:
        a, b = x[..., 0:n_rot:2], x[..., 1:n_rot:2]
        out[..., 0:n_rot:2] = a * cos - b * sin
        out[..., 1:n_rot:2] = a * sin + b * cos
    return out


def silu(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(x)."""
    return x / (1.0 + np.exp(-x))


class ReferenceModel:
    """The model plus its own KV cache; `forward` runs a chunk of tokens at once (prefill or decode)."""

    def __init__(self, path: str | Path):
        self.weights = load_weights(str(path))
        self.config = self.weights.config
        self.reset()

    def reset(self) -> None:
        """Empties the KV cache."""
        c = self.config
        empty = np.zeros((0, c.n_kv_heads, c.head_dim))
        self.key_cache = [empty] * c.n_layers  # per layer (seq_len, n_kv_heads, head_dim)
        self.value_cache = [empty] * c.n_layers

    @property
    def n_past(self) -> int:
        """How many positions the KV cache holds."""
        return self.key_cache[0].shape[0]

    def forward(self, tokens: list[int], start_pos: int) -> np.ndarray:
        """Logits (len(tokens), vocab) float64 of tokens at start_pos..; appends their keys/values."""
        if start_pos != self.n_past:
            raise ValueError(f"start_pos {start_pos} but the KV cache holds {self.n_past} positions")
        c, w = self.config, self.weights
        n = len(tokens)
        positions = np.arange(start_pos, start_pos + n, dtype=np.float64)
        group = c.n_heads // c.n_kv_heads  # query heads sharing one KV head
        # Causal mask within the chunk: query t sees all cached positions and chunk positions <= t.
        total = start_pos + n
        mask = np.arange(total)[None, :] > (start_pos + np.arange(n))[:, None]  # (n, total)

        x = w.token_embedding_table[np.asarray(tokens)]  # (n, dim)
        for li, layer in enumerate(w.layers):
            # Attention block.
            xb = rmsnorm(x, layer.rms_att_weight, c.rms_eps)
            q, k, v = xb @ layer.wq.T, xb @ layer.wk.T, xb @ layer.wv.T
            if layer.bq is not None:
                q, k, v = q + layer.bq, k + layer.bk, v + layer.bv
            q = rope(q.reshape(n, c.n_heads, c.head_dim), positions, w.inv_freq, c.rope_neox)
            k = rope(k.reshape(n, c.n_kv_heads, c.head_dim), positions, w.inv_freq, c.rope_neox)
            v = v.reshape(n, c.n_kv_heads, c.head_dim)
            self.key_cache[li] = keys = np.concatenate([self.key_cache[li], k])
            self.value_cache[li] = values = np.concatenate([self.value_cache[li], v])
            # Grouped-query attention: query head h reads KV head h // group.
            qg = q.reshape(n, c.n_kv_heads, group, c.head_dim)
            att = np.einsum("tkgd,skd->kgts", qg, keys) / np.sqrt(c.head_dim)  # (kv, group, n, total)
            att = np.where(mask, -np.inf, att)
            att = np.exp(att - att.max(axis=-1, keepdims=True))
            att /= att.sum(axis=-1, keepdims=True)
            out = np.einsum("kgts,skd->tkgd", att, values).reshape(n, c.n_heads * c.head_dim)
            x = x + out @ layer.wo.T
            # Feed-forward block: SwiGLU, w_down(silu(w_gate x) * w_up x).
            xb = rmsnorm(x, layer.rms_ffn_weight, c.rms_eps)
            x = x + (silu(xb @ layer.w_gate.T) * (xb @ layer.w_up.T)) @ layer.w_down.T
        x = rmsnorm(x, w.rms_final_weight, c.rms_eps)
        return x @ w.wcls.T

    def greedy(self, prompt_ids: list[int], n: int) -> tuple[list[int], list[float]]:
        """Resets, prefills the prompt, then takes n argmax steps (never stopping at EOS).

        Returns the generated ids and, per step, the gap between the top two logits: where that
        gap is tiny, float rounding in another implementation may legitimately pick the other token.
        """
        self.reset()
        logits = self.forward(list(prompt_ids), 0)[-1]
        ids: list[int] = []
        gaps: list[float] = []
        for step in range(n):
            top2 = np.partition(logits, -2)[-2:]
            next_id = int(np.argmax(logits))
            ids.append(next_id)
            gaps.append(float(top2[1] - top2[0]))
            if step + 1 < n:  # the last token's logits are never needed
                logits = self.forward([next_id], self.n_past)[-1]
        return ids, gaps
