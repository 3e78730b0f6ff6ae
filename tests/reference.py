"""A float64 numpy reference of the llama-family forward pass, read straight from a GGUF file.

The living reference the engine is checked against: every weight is dequantised once with the
`gguf` package and kept as float64, activations are never quantised, and the forward pass is the
textbook one (RMSNorm -> attention with RoPE and grouped KV heads -> RMSNorm -> gated FFN), so any
disagreement with the engine or with llama.cpp points at them, not here.

Architectures: llama (Llama 2/3, Mistral, SmolLM), qwen2, qwen3, phi3, gemma2 and gemma3, each with the
meaning llama.cpp gives its GGUF metadata (src/models/<arch>.cpp and src/llama-model.cpp of the pinned
llama.cpp): the ARCHS table holds what each architecture adds to the llama block, `read_config` the keys.

GGUF shapes: a tensor listed as [ne0, ne1] is row-major with ne1 rows of ne0 elements, so a weight
matrix is W (n_out, n_in) = (ne1, ne0) and y = W @ x; `gguf.quants.dequantize` returns it in that layout.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.gguf_files import GGUFFile, read_gguf


class UnsupportedModel(ValueError):
    """The GGUF uses an architecture or a rope scaling this reference does not implement."""


# ---------------------------------------------------------------- Architectures


@dataclass(frozen=True)
class Arch:
    """What llama.cpp's graph of one architecture adds to the llama block; the defaults are llama's."""

    rope_neox: bool = False  # RoPE pairs (i, i + n_rot/2) instead of (2i, 2i+1) (llama_model_rope_type)
    rope_factors: bool = False  # RoPE divides by rope_freqs (Llama 3) or LongRoPE's rope_factors_{short,long}
    embedding_scale: bool = False  # token embeddings are multiplied by sqrt(dim)
    activation: str = "silu"  # of the FFN's gate: "silu" (SwiGLU) or "gelu_tanh" (GeGLU)
    swa: str = "never"  # sliding-window layers: "never", "always" (window 4096 unless set), "if_set" (key > 0)
    swa_pattern: int = 0  # unless set: layer il slides when il % swa_pattern < swa_pattern - 1
    swa_rope_own: bool = False  # sliding layers: own base (default 10000), unscaled; else the global base and scale
    attn_softcap: bool = False  # attention scores soft-capped (cap 50 unless {arch}.attn_logit_softcapping)
    final_softcap: float | None = None  # logits soft-capped: the cap when the key is absent (0: none); None: key unread
    wide_query_layers: int = 0  # a model of this many layers scales q.k by 1/sqrt(dim // n_heads) (Gemma 27B)


ARCHS = {
    "llama": Arch(rope_factors=True),
    "qwen2": Arch(rope_neox=True),
    "qwen3": Arch(rope_neox=True),
    "phi3": Arch(rope_neox=True, rope_factors=True),  # reads attention.sliding_window, then turns SWA off
    "gemma2": Arch(rope_neox=True, embedding_scale=True, activation="gelu_tanh", swa="always", swa_pattern=2,
                   attn_softcap=True, final_softcap=30.0, wide_query_layers=46),
    "gemma3": Arch(rope_neox=True, embedding_scale=True, activation="gelu_tanh", swa="if_set", swa_pattern=6,
                   swa_rope_own=True, final_softcap=0.0, wide_query_layers=62),
}  # fmt: skip


# ---------------------------------------------------------------- Config


@dataclass(frozen=True)
class Config:
    """Hyperparameters of a model, all from GGUF metadata as llama.cpp reads them."""

    arch: str  # general.architecture, a key of ARCHS
    n_layers: int  # {arch}.block_count
    dim: int  # {arch}.embedding_length
    hidden_dim: int  # {arch}.feed_forward_length (gated FFN inner size)
    n_heads: int  # {arch}.attention.head_count
    n_kv_heads: int  # {arch}.attention.head_count_kv (grouped-query attention)
    head_dim: int  # {arch}.attention.key_length, else dim // n_heads
    n_rot: int  # {arch}.rope.dimension_count: leading dims of each head that RoPE rotates
    rms_eps: float  # {arch}.attention.layer_norm_rms_epsilon
    vocab_size: int  # len(tokenizer.ggml.tokens)
    context_length: int  # {arch}.context_length: llama.cpp's n_ctx when none is asked for
    rope_neox: bool  # pairing (i, i + n_rot/2) instead of (2i, 2i+1)
    rope_theta: float  # {arch}.rope.freq_base
    rope_scale: float  # positions are divided by this: {arch}.rope.scaling.factor unless the type is "none"
    rope_theta_swa: float  # sliding layers' base: {arch}.rope.freq_base_swa, else as Arch.swa_rope_own says
    rope_scale_swa: float  # sliding layers' position divisor
    rope_attn_factor: float  # {arch}.rope.scaling.attn_factor: RoPE's cos and sin are multiplied by it
    rope_orig_context: int  # {arch}.rope.scaling.original_context_length: LongRoPE's long factors above it
    sliding_window: int  # {arch}.attention.sliding_window: a sliding layer's query sees this many positions
    swa_layers: tuple[bool, ...]  # per layer: does it slide ({arch}.attention.sliding_window_pattern)
    query_scale: float  # q.k is multiplied by this before soft-capping and softmax
    attn_softcap: float  # scores -> cap * tanh(scores / cap); 0: none
    final_softcap: float  # logits -> cap * tanh(logits / cap); 0: none
    embedding_scale: float  # token embeddings are multiplied by this
    activation: str  # "silu" or "gelu_tanh"


def read_config(metadata: dict) -> Config:
    """The hyperparameters of a GGUF from its metadata (arrays as lists), with llama.cpp's defaults."""
    arch = metadata.get("general.architecture")
    if arch not in ARCHS:
        raise UnsupportedModel(f"architecture {arch!r} is not one of {sorted(ARCHS)}")
    traits = ARCHS[arch]

    def key(name: str, default=None):
        return metadata.get(f"{arch}.{name}", default)

    n_layers, dim = int(key("block_count")), int(key("embedding_length"))
    n_heads = int(key("attention.head_count"))
    head_dim = int(key("attention.key_length", dim // n_heads))
    scaling = key("rope.scaling.type", "linear")  # llama.cpp's default when the key is absent
    if scaling not in ("none", "linear", "longrope"):
        raise UnsupportedModel(f"rope scaling {scaling!r} is not implemented (none, linear, longrope are)")
    factor = float(key("rope.scaling.factor", key("rope.scale_linear", 0.0)))
    rope_theta = float(key("rope.freq_base", 10000.0))
    rope_scale = factor if factor and scaling != "none" else 1.0
    window, swa_layers = _sliding_window(metadata, arch, traits, n_layers)
    if traits.swa_rope_own:  # gemma3
        rope_theta_swa, rope_scale_swa = float(key("rope.freq_base_swa", 10000.0)), 1.0
    else:
        rope_theta_swa, rope_scale_swa = float(key("rope.freq_base_swa", rope_theta)), rope_scale
    wide = traits.wide_query_layers == n_layers  # llama.cpp tells Gemma 27B by its depth
    final_softcap = 0.0 if traits.final_softcap is None else key("final_logit_softcapping", traits.final_softcap)
    context_length = int(key("context_length"))
    return Config(
        arch=arch,
        n_layers=n_layers,
        dim=dim,
        hidden_dim=int(key("feed_forward_length")),
        n_heads=n_heads,
        n_kv_heads=int(key("attention.head_count_kv", n_heads)),
        head_dim=head_dim,
        n_rot=int(key("rope.dimension_count", head_dim)),
        rms_eps=float(key("attention.layer_norm_rms_epsilon")),
        vocab_size=len(metadata["tokenizer.ggml.tokens"]),
        context_length=context_length,
        rope_neox=traits.rope_neox,
        rope_theta=rope_theta,
        rope_scale=rope_scale,
        rope_theta_swa=rope_theta_swa,
        rope_scale_swa=rope_scale_swa,
        rope_attn_factor=float(key("rope.scaling.attn_factor", 1.0)),
        rope_orig_context=int(key("rope.scaling.original_context_length", context_length)),
        sliding_window=window,
        swa_layers=swa_layers,
        query_scale=1.0 / math.sqrt(dim // n_heads if wide else head_dim),
        attn_softcap=float(key("attn_logit_softcapping", 50.0)) if traits.attn_softcap else 0.0,
        final_softcap=float(final_softcap),
        embedding_scale=math.sqrt(dim) if traits.embedding_scale else 1.0,
        activation=traits.activation,
    )


def _sliding_window(metadata: dict, arch: str, traits: Arch, n_layers: int) -> tuple[int, tuple[bool, ...]]:
    """(window, sliding flag per layer) as llama.cpp's load_arch_hparams and set_swa_pattern give them."""
    window = int(metadata.get(f"{arch}.attention.sliding_window", 4096 if traits.swa == "always" else 0))
    if traits.swa == "never" or window == 0:
        return 0, (False,) * n_layers
    pattern = metadata.get(f"{arch}.attention.sliding_window_pattern", traits.swa_pattern)
    if isinstance(pattern, list):  # one flag per layer
        return window, tuple(bool(pattern[il]) if il < len(pattern) else False for il in range(n_layers))
    return window, tuple(pattern == 0 or il % pattern < pattern - 1 for il in range(n_layers))


# ---------------------------------------------------------------- Weights


@dataclass(frozen=True)
class Layer:
    """One transformer block's weights, float64, each matrix (n_out, n_in); optional ones None when absent."""

    rms_att_weight: np.ndarray  # (dim,)
    wq: np.ndarray  # (n_heads * head_dim, dim)    attn_q, or the first rows of a fused attn_qkv
    wk: np.ndarray  # (n_kv_heads * head_dim, dim)
    wv: np.ndarray  # (n_kv_heads * head_dim, dim)
    bq: np.ndarray | None  # (n_heads * head_dim,) qwen2
    bk: np.ndarray | None  # (n_kv_heads * head_dim,)
    bv: np.ndarray | None  # (n_kv_heads * head_dim,)
    q_norm: np.ndarray | None  # (head_dim,) per-head RMSNorm of q before RoPE: qwen3, gemma3
    k_norm: np.ndarray | None  # (head_dim,)
    wo: np.ndarray  # (dim, n_heads * head_dim)
    post_att_norm: np.ndarray | None  # (dim,) RMSNorm of the attention output before the residual add: gemma
    rms_ffn_weight: np.ndarray  # (dim,)
    w_gate: np.ndarray  # (hidden_dim, dim)  "w1" in llama2.c; phi3: the first half of ffn_up
    w_up: np.ndarray  # (hidden_dim, dim)    "w3"
    w_down: np.ndarray  # (dim, hidden_dim)  "w2"
    post_ffn_norm: np.ndarray | None  # (dim,) RMSNorm of the FFN output before the residual add: gemma


@dataclass(frozen=True)
class Weights:
    """All weights of the model, dequantised to float64 once."""

    config: Config
    token_embedding_table: np.ndarray  # (vocab_size, dim)
    layers: tuple[Layer, ...]
    rms_final_weight: np.ndarray  # (dim,)
    wcls: np.ndarray  # (vocab_size, dim): output.weight, or the embedding table when tied
    rope_freqs: np.ndarray | None  # (n_rot // 2,) Llama 3's frequency divisors
    rope_factors_short: np.ndarray | None  # (n_rot // 2,) LongRoPE's divisors up to the original context
    rope_factors_long: np.ndarray | None  # (n_rot // 2,) and beyond it


@functools.lru_cache(maxsize=2)
def load_weights(path: str) -> Weights:
    """Dequantises every tensor of the GGUF at `path` to float64; cached so tests share one copy."""
    f = read_gguf(path)
    config = read_config(f.metadata)

    def maybe(name: str) -> np.ndarray | None:
        return f.tensor(name) if name in f.tensors else None

    layers = tuple(_load_layer(f, config, f"blk.{i}.") for i in range(config.n_layers))
    embedding = f.tensor("token_embd.weight")
    factors = ARCHS[config.arch].rope_factors
    weights = Weights(
        config=config,
        token_embedding_table=embedding,
        layers=layers,
        rms_final_weight=f.tensor("output_norm.weight"),
        wcls=f.tensor("output.weight") if "output.weight" in f.tensors else embedding,  # tied head
        rope_freqs=maybe("rope_freqs.weight") if factors else None,
        rope_factors_short=maybe("rope_factors_short.weight") if factors else None,
        rope_factors_long=maybe("rope_factors_long.weight") if factors else None,
    )
    if unread := sorted(set(f.tensors) - f.read):  # e.g. biases llama.cpp would add: fail, not ignore
        raise UnsupportedModel(f"{len(unread)} tensors the reference does not use, such as {unread[:3]}")
    _check_shapes(weights)
    return weights


def _split_rows(matrix: np.ndarray | None, sizes: list[int]) -> list[np.ndarray | None]:
    """A fused tensor's parts, in order, along its first axis (None stays None)."""
    if matrix is None:
        return [None] * len(sizes)
    return np.split(matrix, np.cumsum(sizes)[:-1])


def _load_layer(f: GGUFFile, c: Config, b: str) -> Layer:
    """One block's tensors; phi3's fused attn_qkv and gate|up ffn_up are split into their parts."""

    def maybe(name: str) -> np.ndarray | None:
        return f.tensor(b + name) if b + name in f.tensors else None

    q, kv = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
    if b + "attn_qkv.weight" in f.tensors:  # rows: q, then k, then v
        wq, wk, wv = _split_rows(f.tensor(b + "attn_qkv.weight"), [q, kv, kv])
        bq, bk, bv = _split_rows(maybe("attn_qkv.bias"), [q, kv, kv])
    else:
        wq, wk, wv = f.tensor(b + "attn_q.weight"), f.tensor(b + "attn_k.weight"), f.tensor(b + "attn_v.weight")
        bq, bk, bv = maybe("attn_q.bias"), maybe("attn_k.bias"), maybe("attn_v.bias")
    if b + "ffn_gate.weight" in f.tensors:
        w_gate, w_up = f.tensor(b + "ffn_gate.weight"), f.tensor(b + "ffn_up.weight")
    else:  # phi3: ffn_up holds the gate's rows, then the up rows (ggml_swiglu takes the first half as gate)
        w_gate, w_up = _split_rows(f.tensor(b + "ffn_up.weight"), [c.hidden_dim, c.hidden_dim])
    return Layer(
        rms_att_weight=f.tensor(b + "attn_norm.weight"),
        wq=wq, wk=wk, wv=wv, bq=bq, bk=bk, bv=bv,
        q_norm=maybe("attn_q_norm.weight"),
        k_norm=maybe("attn_k_norm.weight"),
        wo=f.tensor(b + "attn_output.weight"),
        post_att_norm=maybe("post_attention_norm.weight"),
        rms_ffn_weight=f.tensor(b + "ffn_norm.weight"),
        w_gate=w_gate, w_up=w_up,
        w_down=f.tensor(b + "ffn_down.weight"),
        post_ffn_norm=maybe("post_ffw_norm.weight"),
    )  # fmt: skip


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
        assert layer.q_norm is None or layer.q_norm.shape == layer.k_norm.shape == (c.head_dim,)
    for factors in (w.rope_freqs, w.rope_factors_short, w.rope_factors_long):
        assert factors is None or factors.shape == (c.n_rot // 2,)


# ---------------------------------------------------------------- RoPE


def rope_factors(w: Weights, n_ctx: int) -> np.ndarray | None:
    """The divisors of the rotation speeds (llama_model::get_rope_factors): Llama 3's rope_freqs, else
    LongRoPE's long factors when the context n_ctx exceeds the original one, else its short factors."""
    if w.rope_freqs is not None:
        return w.rope_freqs
    return w.rope_factors_long if n_ctx > w.config.rope_orig_context else w.rope_factors_short


def inverse_frequencies(w: Weights, sliding: bool, n_ctx: int) -> np.ndarray:
    """theta_i = base^(-2i / n_rot) / factor_i / scale, with a sliding layer's own base and scale."""
    c = w.config
    base, scale = (c.rope_theta_swa, c.rope_scale_swa) if sliding else (c.rope_theta, c.rope_scale)
    inv_freq = base ** (-np.arange(0, c.n_rot, 2, dtype=np.float64) / c.n_rot)
    factors = rope_factors(w, n_ctx)
    if factors is not None:
        inv_freq = inv_freq / factors  # ggml divides theta by the factor, as here
    return inv_freq / scale


def rope(
    x: np.ndarray, positions: np.ndarray, inv_freq: np.ndarray, neox: bool, attn_factor: float = 1.0
) -> np.ndarray:
    """Rotates the first 2*len(inv_freq) dims of each head of x (T, heads, head_dim) by pos * inv_freq.

    attn_factor multiplies cos and sin (LongRoPE's magnitude correction; ggml's mscale), so it scales
    the rotated dims only.
    """
    n_rot = 2 * len(inv_freq)
    angle = positions[:, None, None] * inv_freq[None, None, :]  # (T, 1, n_rot/2)
    cos, sin = np.cos(angle) * attn_factor, np.sin(angle) * attn_factor
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


# ---------------------------------------------------------------- forward


def rmsnorm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """x / sqrt(mean(x^2) + eps) * weight, over the last axis (Gemma's files store 1 + w already)."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def silu(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(x)."""
    return x / (1.0 + np.exp(-x))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


ACTIVATIONS = {"silu": silu, "gelu_tanh": gelu_tanh}  # Config.activation -> the FFN gate's function


def soft_cap(x: np.ndarray, cap: float) -> np.ndarray:
    """cap * tanh(x / cap): smoothly bounds x to (-cap, cap); cap 0 leaves x as it is."""
    return cap * np.tanh(x / cap) if cap else x


def attention(
    q: np.ndarray, keys: np.ndarray, values: np.ndarray, positions: np.ndarray, c: Config, window: int
) -> np.ndarray:
    """softmax(soft_cap(q.k * query_scale)) v over the keys each query may see, heads concatenated.

    q (n, n_heads, head_dim) at `positions`; keys, values (total, n_kv_heads, head_dim) at 0..total-1.
    A query sees keys at or before its position, and with a sliding `window` only the last `window`.
    """
    n, group = q.shape[0], c.n_heads // c.n_kv_heads  # query head h reads KV head h // group
    qg = q.reshape(n, c.n_kv_heads, group, c.head_dim)
    scores = np.einsum("tkgd,skd->kgts", qg, keys) * c.query_scale  # (kv, group, n, total)
    scores = soft_cap(scores, c.attn_softcap)
    distance = positions[:, None] - np.arange(keys.shape[0])[None, :]  # (n, total) query - key position
    hidden = (distance < 0) | ((distance >= window) if window else False)
    scores = np.where(hidden, -np.inf, scores)
    att = np.exp(scores - scores.max(axis=-1, keepdims=True))
    att /= att.sum(axis=-1, keepdims=True)
    return np.einsum("kgts,skd->tkgd", att, values).reshape(n, c.n_heads * c.head_dim)


def feed_forward(x: np.ndarray, layer: Layer, activation: str) -> np.ndarray:
    """w_down(act(w_gate x) * w_up x): SwiGLU with silu, GeGLU with gelu_tanh."""
    return (ACTIVATIONS[activation](x @ layer.w_gate.T) * (x @ layer.w_up.T)) @ layer.w_down.T


class ReferenceModel:
    """The model plus its own KV cache; `forward` runs a chunk of tokens at once (prefill or decode).

    n_ctx is the context llama.cpp would be given (its default: the model's context_length); it only
    picks LongRoPE's short or long factors (llama.cpp first rounds it up to a multiple of 256).
    """

    def __init__(self, path: str | Path, n_ctx: int | None = None):
        self._start(load_weights(str(path)), n_ctx)

    @classmethod
    def from_weights(cls, weights: Weights, n_ctx: int | None = None) -> ReferenceModel:
        """A model of weights already loaded, e.g. altered with dataclasses.replace to take a feature out."""
        model = cls.__new__(cls)
        model._start(weights, n_ctx)
        return model

    def _start(self, weights: Weights, n_ctx: int | None) -> None:
        self.weights, self.config = weights, weights.config
        self.n_ctx = self.config.context_length if n_ctx is None else n_ctx
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

        x = w.token_embedding_table[np.asarray(tokens)] * c.embedding_scale  # (n, dim)
        for li, layer in enumerate(w.layers):
            sliding = c.swa_layers[li]
            # Attention block.
            xb = rmsnorm(x, layer.rms_att_weight, c.rms_eps)
            q, k, v = xb @ layer.wq.T, xb @ layer.wk.T, xb @ layer.wv.T
            if layer.bq is not None:
                q, k, v = q + layer.bq, k + layer.bk, v + layer.bv
            q = q.reshape(n, c.n_heads, c.head_dim)
            k = k.reshape(n, c.n_kv_heads, c.head_dim)
            v = v.reshape(n, c.n_kv_heads, c.head_dim)
            if layer.q_norm is not None:  # per head, before RoPE
                q, k = rmsnorm(q, layer.q_norm, c.rms_eps), rmsnorm(k, layer.k_norm, c.rms_eps)
            inv_freq = inverse_frequencies(w, sliding, self.n_ctx)
            q = rope(q, positions, inv_freq, c.rope_neox, c.rope_attn_factor)
            k = rope(k, positions, inv_freq, c.rope_neox, c.rope_attn_factor)
            self.key_cache[li] = keys = np.concatenate([self.key_cache[li], k])
            self.value_cache[li] = values = np.concatenate([self.value_cache[li], v])
            out = attention(q, keys, values, positions, c, c.sliding_window if sliding else 0) @ layer.wo.T
            if layer.post_att_norm is not None:
                out = rmsnorm(out, layer.post_att_norm, c.rms_eps)
            x = x + out
            # Feed-forward block.
            out = feed_forward(rmsnorm(x, layer.rms_ffn_weight, c.rms_eps), layer, c.activation)
            if layer.post_ffn_norm is not None:
                out = rmsnorm(out, layer.post_ffn_norm, c.rms_eps)
            x = x + out
        x = rmsnorm(x, w.rms_final_weight, c.rms_eps)
        return soft_cap(x @ w.wcls.T, c.final_softcap)

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
