"""One transformer block on the GPU: its weights and KV cache, read from the file by their GGUF names.

Model (model.py) loads a Layer for each block, then binds its dispatch sequence (Model._layer_ops) into `ops`.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import kernels as K
from .config import ModelConfig
from .upload import Separate, Uploader, Weight


@dataclass(frozen=True)
class LayerOp:
    """One op of a layer's dispatch sequence; `name` labels it for profiles and tests, dispatch never reads it."""

    name: str
    op: K.Op


@dataclass
class Layer:
    """One transformer block's weights on the GPU (GGUF names in comments; rows x cols as used)."""

    attn_norm: object  # blk.N.attn_norm (dim,) f32
    # blk.N.attn_q, attn_k, attn_v stacked (qkv_dim, dim) (Phi 3 stores them so: attn_qkv), or one (n, dim) each
    wqkv: Weight | Separate
    bqkv: object | None  # blk.N.attn_q, attn_k, attn_v .bias one after another (qkv_dim,) f32; Qwen2 only
    wo: Weight  # blk.N.attn_output (dim, q_dim)
    ffn_norm: object  # blk.N.ffn_norm (dim,) f32
    # blk.N.ffn_gate, ffn_up stacked (2 * ffn_dim, dim) (Phi 3's ffn_up is both), or one (ffn_dim, dim) each
    w_gate_up: Weight | Separate
    w_down: Weight  # blk.N.ffn_down (dim, ffn_dim)
    key_cache: object  # (n_seqs * n_ctx, kv_dim): sequence s in rows s * n_ctx..
    value_cache: object  # (n_seqs * n_ctx, kv_dim)
    q_norm: object | None = None  # blk.N.attn_q_norm (head_dim,) f32, and attn_k_norm: Qwen 3, Gemma 3
    k_norm: object | None = None
    attn_post_norm: object | None = None  # blk.N.post_attention_norm (dim,) f32, and post_ffw_norm: Gemma
    ffn_post_norm: object | None = None
    ops: tuple[LayerOp, ...] = ()  # the dispatches in execution order, bound to these buffers (Model._layer_ops)


def load_layer(up: Uploader, c: ModelConfig, i: int, cache_bytes: int) -> Layer:
    """Block i's weights uploaded, and its key and value caches (cache_bytes each) made; `ops` left empty."""
    p, device = f"blk.{i}.", up.device
    qkv_rows = [c.q_dim, c.kv_dim, c.kv_dim]
    # q, k and v (and gate and up) in one buffer each, so one dispatch makes them all (as Phi 3's files hold them)
    if up.has(p + "attn_qkv.weight"):
        wqkv = up.tensor(p + "attn_qkv.weight", (c.dim, c.qkv_dim))
    else:
        wqkv = up.stacked([p + f"attn_{n}.weight" for n in "qkv"], c.dim, qkv_rows)
    if up.has(p + "ffn_gate.weight"):
        w_gate_up = up.stacked([p + "ffn_gate.weight", p + "ffn_up.weight"], c.dim, [c.ffn_dim, c.ffn_dim])
    else:
        w_gate_up = up.tensor(p + "ffn_up.weight", (c.dim, 2 * c.ffn_dim))
    return Layer(  # the matrices first, so a type Hearth cannot run is named before anything else is missed
        wqkv=wqkv,
        w_gate_up=w_gate_up,
        wo=up.tensor(p + "attn_output.weight", (c.q_dim, c.dim)),
        w_down=up.tensor(p + "ffn_down.weight", (c.ffn_dim, c.dim)),
        attn_norm=up.norm(p + "attn_norm.weight", c.dim),
        ffn_norm=up.norm(p + "ffn_norm.weight", c.dim),
        key_cache=device.create_buffer(cache_bytes, label=f"key_cache.{i}"),
        value_cache=device.create_buffer(cache_bytes, label=f"value_cache.{i}"),
        bqkv=up.stacked_norms([p + f"attn_{n}.bias" for n in "qkv"], qkv_rows) if c.qkv_bias else None,
        q_norm=up.norm(p + "attn_q_norm.weight", c.head_dim) if c.qk_norm else None,
        k_norm=up.norm(p + "attn_k_norm.weight", c.head_dim) if c.qk_norm else None,
        attn_post_norm=up.norm(p + "post_attention_norm.weight", c.dim) if c.post_norms else None,
        ffn_post_norm=up.norm(p + "post_ffw_norm.weight", c.dim) if c.post_norms else None,
    )
