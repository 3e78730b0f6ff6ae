"""KV-cache writes and causal GQA attention: f32 and f16 caches, a cache holding earlier rows."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import assert_close


def reference_attention(q, keys, values, pos, n_heads, n_kv_heads):
    """q (T, n_heads, hd); keys/values (pos + T, n_kv_heads, hd): the textbook causal GQA, float64."""
    n_tokens, _, head_dim = q.shape
    group = n_heads // n_kv_heads
    out = np.zeros_like(q)
    for t in range(n_tokens):
        for h in range(n_heads):
            k, v = keys[: pos + t + 1, h // group], values[: pos + t + 1, h // group]
            s = k @ q[t, h] / np.sqrt(head_dim)
            p = np.exp(s - s.max())
            out[t, h] = (p / p.sum()) @ v
    return out


def check_attention(gpu, kernels, rng, *, n_heads, n_kv_heads, head_dim, max_ctx, pos, n_tokens, rtol, packed=False):
    """packed: q, k and v as the model holds them, one [T, q | k | v] buffer."""
    f16 = kernels.kv_f16
    kv_dim, max_tokens = n_kv_heads * head_dim, max(n_tokens, 4)
    store = np.float16 if f16 else np.float32
    # The cache already holds rows 0..pos-1; every row after is poison the kernels must not read.
    earlier_k = rng.standard_normal((pos, kv_dim)).astype(store)
    earlier_v = rng.standard_normal((pos, kv_dim)).astype(store)
    nbytes = kernels.kv_cache_nbytes(max_ctx, kv_dim)
    poison = np.frombuffer(b"\xff" * nbytes, dtype=store).reshape(max_ctx, kv_dim).copy()
    k_cache, v_cache = (
        gpu.upload(np.concatenate([earlier_k, poison[pos:]])),
        gpu.upload(np.concatenate([earlier_v, poison[pos:]])),
    )
    q = rng.standard_normal((max_tokens, n_heads * head_dim)).astype(np.float32)
    k = rng.standard_normal((max_tokens, kv_dim)).astype(np.float32)
    v = rng.standard_normal((max_tokens, kv_dim)).astype(np.float32)
    out = gpu.poisoned(q.nbytes)
    if packed:
        q_dim = n_heads * head_dim
        qkv = gpu.upload(np.concatenate([q, k, v], axis=1))
        row = q_dim + 2 * kv_dim
        ops = [
            kernels.store_kv(qkv, qkv, k_cache, v_cache, kv_dim, src_row=row, k_col=q_dim, v_col=q_dim + kv_dim),
            kernels.attention(qkv, k_cache, v_cache, out, n_heads, n_kv_heads, head_dim, max_ctx, max_tokens, row),
        ]
    else:
        ops = [
            kernels.store_kv(gpu.upload(k), gpu.upload(v), k_cache, v_cache, kv_dim),
            kernels.attention(gpu.upload(q), k_cache, v_cache, out, n_heads, n_kv_heads, head_dim, max_ctx, max_tokens),
        ]
    gpu.run(kernels, ops, n_tokens, pos=pos)

    rows = pos + n_tokens
    keys = np.concatenate([earlier_k, k[:n_tokens].astype(store)]).astype(np.float64)
    values = np.concatenate([earlier_v, v[:n_tokens].astype(store)]).astype(np.float64)
    got_k = gpu.read(k_cache, max_ctx * kv_dim, store).reshape(max_ctx, kv_dim)
    got_v = gpu.read(v_cache, max_ctx * kv_dim, store).reshape(max_ctx, kv_dim)
    assert (got_k[:rows] == keys).all() and (got_v[:rows] == values).all(), "cache rows differ"
    assert np.isnan(got_k[rows:].astype(np.float32)).all(), "cache rows past the batch were written"

    got = gpu.read(out, q.size).reshape(max_tokens, n_heads, head_dim)
    want = reference_attention(
        q[:n_tokens].reshape(n_tokens, n_heads, head_dim).astype(np.float64),
        keys.reshape(rows, n_kv_heads, head_dim),
        values.reshape(rows, n_kv_heads, head_dim),
        pos,
        n_heads,
        n_kv_heads,
    )
    # Against the cache's own (rounded) contents the kernels are as exact as f32 allows ...
    assert_close(got[:n_tokens], want, rtol, f"f16={f16} pos={pos} T={n_tokens}")
    if f16:  # ... and an f16 cache stays close to attention over the f32 keys and values.
        exact = reference_attention(
            q[:n_tokens].reshape(n_tokens, n_heads, head_dim).astype(np.float64),
            np.concatenate([earlier_k, k[:n_tokens]]).astype(np.float64).reshape(rows, n_kv_heads, head_dim),
            np.concatenate([earlier_v, v[:n_tokens]]).astype(np.float64).reshape(rows, n_kv_heads, head_dim),
            pos,
            n_heads,
            n_kv_heads,
        )
        assert_close(got[:n_tokens], exact, 5e-3, "f16 cache against f32 keys and values")
    assert np.isnan(got[n_tokens:]).all()


@pytest.mark.parametrize("kv_f16", [False, True])
@pytest.mark.parametrize("n_tokens,pos", [(1, 0), (1, 13), (3, 0), (9, 21)])
def test_attention_gqa(gpu, kernels_for, rng, kv_f16, n_tokens, pos):
    # Groups of 5 query heads per KV head: a chunk of 4 and a chunk of 1 per group.
    shape = dict(n_heads=10, n_kv_heads=2, head_dim=16, max_ctx=33)
    check_attention(gpu, kernels_for("scalar", kv_f16), rng, **shape, pos=pos, n_tokens=n_tokens, rtol=1e-5)


@pytest.mark.parametrize("kv_f16", [False, True])
def test_attention_long_context(gpu, kernels_for, rng, kv_f16):
    # Past 256 positions each scoring invocation loops; 9 heads over 3 KV heads of 64 dims (SmolLM2's).
    shape = dict(n_heads=9, n_kv_heads=3, head_dim=64, max_ctx=701)
    check_attention(gpu, kernels_for("scalar", kv_f16), rng, **shape, pos=690, n_tokens=3, rtol=1e-5)


@pytest.mark.parametrize("kv_f16", [False, True])
@pytest.mark.parametrize("n_tokens,pos", [(1, 5), (6, 0)])
def test_attention_over_a_packed_qkv_buffer(gpu, kernels_for, rng, kv_f16, n_tokens, pos):
    shape = dict(n_heads=6, n_kv_heads=2, head_dim=16, max_ctx=17)
    check_attention(gpu, kernels_for("scalar", kv_f16), rng, **shape, pos=pos, n_tokens=n_tokens, rtol=1e-5,
                    packed=True)


@pytest.mark.parametrize("n_heads,n_kv_heads", [(7, 7), (4, 1), (6, 2)])
def test_attention_head_groupings(gpu, kernels_for, rng, n_heads, n_kv_heads):
    shape = dict(n_heads=n_heads, n_kv_heads=n_kv_heads, head_dim=8, max_ctx=10)
    check_attention(gpu, kernels_for("scalar"), rng, **shape, pos=3, n_tokens=7, rtol=1e-5)


def test_attention_refuses_odd_shapes(gpu, kernels_for):
    kernels, b = kernels_for("scalar"), gpu.poisoned(64)
    with pytest.raises(ValueError):
        kernels.attention(b, b, b, gpu.poisoned(64), 6, 4, 8, 8, 1)  # heads not a multiple of KV heads
    with pytest.raises(ValueError):
        kernels.attention(b, b, b, gpu.poisoned(64), 2, 1, 12, 8, 1)  # head_dim not a multiple of 8
