"""KV-cache writes and causal GQA attention: f32 and f16 caches, a cache holding earlier rows."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from engine import kernels as K

from .conftest import POISON, assert_close


def reference_attention(q, keys, values, pos, n_heads, n_kv_heads, scale=None, softcap=0.0, window=0):
    """q (T, n_heads, hd); keys/values (pos + T, n_kv_heads, hd): the textbook causal GQA, float64.
    scale (None: 1/sqrt(hd)), softcap (0: none) and window (0: none) as Kernels.attention takes them."""
    n_tokens, _, head_dim = q.shape
    group = n_heads // n_kv_heads
    scale = 1 / np.sqrt(head_dim) if scale is None else scale
    out = np.zeros_like(q)
    for t in range(n_tokens):
        first = max(0, pos + t + 1 - window) if window else 0  # query pos + t sees keys pos + t - s < window
        for h in range(n_heads):
            k, v = keys[first : pos + t + 1, h // group], values[first : pos + t + 1, h // group]
            s = k @ q[t, h] * scale
            if softcap:
                s = softcap * np.tanh(s / softcap)
            p = np.exp(s - s.max())
            out[t, h] = (p / p.sum()) @ v
    return out


def poison_scratch(gpu, op) -> None:
    """NaN in the op's scratch (shared by every op of its shape): a kernel must read only what it wrote
    in the same step, never what an earlier op of another shape or window left there."""
    for buffer in op.owned:
        gpu.device.write_buffer(buffer, POISON * buffer.size)


def check_attention(gpu, kernels, rng, *, n_heads, n_kv_heads, head_dim, max_ctx, pos, n_tokens, rtol, packed=False,
                    **options):
    """packed: q, k and v as the model holds them, one [T, q | k | v] buffer. options: Kernels.attention's
    scale, softcap and window."""
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
            kernels.attention(qkv, k_cache, v_cache, out, n_heads, n_kv_heads, head_dim, max_ctx, max_tokens, row,
                              **options),
        ]
    else:
        ops = [
            kernels.store_kv(gpu.upload(k), gpu.upload(v), k_cache, v_cache, kv_dim),
            kernels.attention(gpu.upload(q), k_cache, v_cache, out, n_heads, n_kv_heads, head_dim, max_ctx, max_tokens,
                              **options),
        ]
    poison_scratch(gpu, ops[1])
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
        **options,
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
            **options,
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


@pytest.mark.parametrize("kv_f16", [False, True])
@pytest.mark.parametrize("n_tokens,pos,window", [(1, 0, 3), (1, 13, 8), (9, 21, 5), (6, 0, 4), (3, 29, 1)])
def test_attention_sliding_window(gpu, kernels_for, rng, kv_f16, n_tokens, pos, window):
    """Gemma's and Mistral's local layers: a query sees only the `window` positions up to its own."""
    shape = dict(n_heads=6, n_kv_heads=2, head_dim=16, max_ctx=33)
    check_attention(gpu, kernels_for("scalar", kv_f16), rng, **shape, pos=pos, n_tokens=n_tokens, rtol=1e-5,
                    window=window)


@pytest.mark.parametrize("n_tokens,pos", [(1, 9), (7, 3)])
def test_attention_scaled_and_soft_capped(gpu, kernels_for, rng, n_tokens, pos):
    """Gemma 2: q.k scaled by 1/sqrt(query_pre_attn_scalar), then capped at 50 tanh(s / 50); the scale is
    large here so that scores reach the cap."""
    shape = dict(n_heads=8, n_kv_heads=4, head_dim=32, max_ctx=20)
    check_attention(gpu, kernels_for("scalar"), rng, **shape, pos=pos, n_tokens=n_tokens, rtol=1e-5, packed=True,
                    scale=9.0, softcap=50.0, window=6)
    check_attention(gpu, kernels_for("scalar"), rng, **shape, pos=pos, n_tokens=n_tokens, rtol=1e-5,
                    scale=0.0625)


@pytest.mark.parametrize("kv_f16", [False, True])
@pytest.mark.parametrize("length", [1, 7, 513, 4097])
def test_one_tokens_attention_on_gpus_splits_the_context(gpu, kernels_for, rng, kv_f16, length):
    """The GPU variant's path for a few queries (attention_flash.wgsl): the context in parts of at least
    ATTENTION_MIN_PART positions, each scored and weighed in a workgroup, the parts combined after."""
    shape = dict(n_heads=10, n_kv_heads=2, head_dim=32, max_ctx=length + 3)
    check_attention(gpu, kernels_for("subgroup", kv_f16), rng, **shape, pos=length - 1, n_tokens=1, rtol=1e-5,
                    packed=length % 2 == 1)
    check_attention(gpu, kernels_for("subgroup", kv_f16), rng, **shape, pos=length - 1, n_tokens=1, rtol=1e-5,
                    window=5, softcap=30.0)
    check_attention(gpu, kernels_for("subgroup", kv_f16), rng, **shape, pos=length - 1, n_tokens=1, rtol=1e-5,
                    window=100)  # a window of several parts


@pytest.mark.parametrize("head_dim", [64, 96, 128])
@pytest.mark.parametrize("n_tokens,pos", [(2, 700), (8, 300)])
def test_a_few_queries_attention_on_gpus(gpu, kernels_for, rng, head_dim, n_tokens, pos):
    """A few queries (streams decoding together) share the parts one token would have (each its PARTS / T), at the
    head sizes models use (a workgroup is HEAD_DIM / 2 invocations)."""
    shape = dict(n_heads=8, n_kv_heads=2, head_dim=head_dim, max_ctx=pos + n_tokens + 5)
    check_attention(gpu, kernels_for("subgroup"), rng, **shape, pos=pos, n_tokens=n_tokens, rtol=1e-5, packed=True)


@pytest.mark.parametrize("n_tokens,pos", [(3, 0), (9, 130), (70, 40)])
@pytest.mark.parametrize("options", [{}, {"window": 20, "softcap": 30.0}], ids=["plain", "window"])
def test_a_batchs_attention_on_gpus(gpu, kernels_for, rng, n_tokens, pos, options):
    """The GPU variant's batches (prompts) in attention_flash.wgsl too: past PARTS queries (5 for this context)
    each has a part of its own, and the combine one part to take."""
    shape = dict(n_heads=6, n_kv_heads=2, head_dim=16, max_ctx=160)
    assert K.attention_parts(shape["max_ctx"]) < 9
    check_attention(gpu, kernels_for("subgroup"), rng, **shape, pos=pos, n_tokens=n_tokens, rtol=1e-5, packed=True,
                    **options)


def check_sequences(gpu, kernels, rng, *, lengths, steps, n_heads, n_kv_heads, head_dim, max_ctx, **options):
    """Several sequences in one cache, max_ctx rows each: sequence s holds lengths[s] rows already, and the
    step runs a token of sequence steps[t] for each t (a sequence may have several, in order). Each token
    must see its own sequence's keys up to its own position, and write its own row, nothing else."""
    store = np.float16 if kernels.kv_f16 else np.float32
    kv_dim, n_seqs, T = n_kv_heads * head_dim, len(lengths), len(steps)
    nbytes = kernels.kv_cache_nbytes(max_ctx, kv_dim) * n_seqs
    caches = [np.frombuffer(b"\xff" * nbytes, dtype=store).reshape(n_seqs, max_ctx, kv_dim).copy() for _ in "kv"]
    for cache in caches:
        for s, n in enumerate(lengths):
            cache[s, :n] = rng.standard_normal((n, kv_dim))
    k_cache, v_cache = (gpu.upload(cache) for cache in caches)
    q, k, v = (rng.standard_normal((T, n)).astype(np.float32) for n in (n_heads * head_dim, kv_dim, kv_dim))
    places, seen = [], list(lengths)
    for s in steps:
        places.append((s * max_ctx, seen[s]))
        seen[s] += 1
    out = gpu.poisoned(q.nbytes)
    ops = [kernels.store_kv(gpu.upload(k), gpu.upload(v), k_cache, v_cache, kv_dim),
           kernels.attention(gpu.upload(q), k_cache, v_cache, out, n_heads, n_kv_heads, head_dim, max_ctx, T,
                             **options)]  # fmt: skip
    poison_scratch(gpu, ops[1])
    gpu.run(kernels, ops, T, places=places)

    want_caches = [cache.copy() for cache in caches]
    for t, (s, (_, pos)) in enumerate(zip(steps, places, strict=True)):
        want_caches[0][s, pos], want_caches[1][s, pos] = k[t], v[t]
    for name, buffer, want_cache in zip("kv", (k_cache, v_cache), want_caches, strict=True):
        got_cache = gpu.read(buffer, want_cache.size, store).reshape(want_cache.shape)
        written = np.array([[p < n for p in range(max_ctx)] for n in seen])
        assert (got_cache[written] == want_cache[written]).all(), f"{name} cache rows differ"
        assert np.isnan(got_cache[~written].astype(np.float32)).all(), f"{name} cache rows past the step were written"
    got = gpu.read(out, q.size).reshape(T, n_heads, head_dim)
    keys, values = (c.astype(np.float64).reshape(n_seqs, max_ctx, n_kv_heads, head_dim) for c in want_caches)
    for t, (s, (_, pos)) in enumerate(zip(steps, places, strict=True)):
        want = reference_attention(q[t].reshape(1, n_heads, head_dim).astype(np.float64), keys[s, : pos + 1],
                                   values[s, : pos + 1], pos, n_heads, n_kv_heads, **options)  # fmt: skip
        assert_close(got[t], want[0], 1e-5, f"token {t} of sequence {s} at {pos}")


@pytest.mark.parametrize("variant", ["scalar", "subgroup"])
@pytest.mark.parametrize("kv_f16", [False, True])
def test_attention_of_several_sequences_in_one_step(gpu, kernels_for, rng, variant, kv_f16):
    """Streams decoding together (Kernels.set_places): tokens of sequences 2, 0, 1 and 0 again, each over its
    own rows of one cache; sequence 1 starts empty."""
    shape = dict(n_heads=6, n_kv_heads=2, head_dim=16, max_ctx=40)
    check_sequences(gpu, kernels_for(variant, kv_f16), rng, lengths=[9, 0, 33], steps=[2, 0, 1, 0], **shape)
    check_sequences(gpu, kernels_for(variant, kv_f16), rng, lengths=[9, 0, 33], steps=[1, 2], window=5, **shape)


@pytest.mark.parametrize("length", [1, 130])
def test_one_tokens_attention_on_gpus_in_a_later_sequence(gpu, kernels_for, rng, length):
    """The GPU variant's path for a few queries (context split in parts) over a sequence that does not start
    at row 0."""
    shape = dict(n_heads=10, n_kv_heads=2, head_dim=32, max_ctx=length + 3)
    check_sequences(gpu, kernels_for("subgroup"), rng, lengths=[length, length - 1], steps=[1], **shape)


def test_attention_refuses_odd_shapes(gpu, kernels_for):
    kernels, b = kernels_for("scalar"), gpu.poisoned(64)
    with pytest.raises(ValueError):
        kernels.attention(b, b, b, gpu.poisoned(64), 6, 4, 8, 8, 1)  # heads not a multiple of KV heads
    with pytest.raises(ValueError):
        kernels.attention(b, b, b, gpu.poisoned(64), 2, 1, 12, 8, 1)  # head_dim not a multiple of 8
    with pytest.raises(ValueError):
        kernels.attention(b, b, b, gpu.poisoned(64), 2, 1, 8, 8, 1, window=-1)
    assert f"const MAX_HEAD_DIM = {K.FLASH_MAX_HEAD_DIM}u;" in K.load_shader("attention_flash.wgsl")
    with pytest.raises(ValueError, match=f"up to {K.FLASH_MAX_HEAD_DIM}"):  # its workgroup arrays' size
        kernels_for("subgroup").attention(b, b, b, gpu.poisoned(64), 2, 1, K.FLASH_MAX_HEAD_DIM + 8, 8, 1)


@pytest.mark.parametrize("kv_f16", [False, True])
@pytest.mark.parametrize("n_heads,n_kv_heads,head_dim,length", [(6, 2, 32, 1), (10, 2, 64, 300)])
def test_one_tokens_attention_quantises_the_next_products_x(gpu, kernels_for, rng, kv_f16, n_heads, n_kv_heads,
                                                          head_dim, length):
    """quantise_out (GPUs, one token): attention's output also goes into the integer x that products of its
    width read, the very bytes quantize_x makes of it, and a product that takes them (matmul's x_quantised,
    o in the model) equals one that quantises x itself. 6 heads of 32: the output is 6 blocks, a workgroup of
    attend_combine's one-token outputs (32, 4 blocks) and part of another."""
    kernels = kernels_for("subgroup", kv_f16)
    q_dim, kv_dim, max_tokens, n_out = n_heads * head_dim, n_kv_heads * head_dim, 4, 40
    store = np.float16 if kv_f16 else np.float32
    k_cache = gpu.upload(rng.standard_normal((length, kv_dim)).astype(store))
    v_cache = gpu.upload(rng.standard_normal((length, kv_dim)).astype(store))
    q = gpu.upload(rng.standard_normal((max_tokens, q_dim)).astype(np.float32))
    raw = gguf.quants.quantize(rng.standard_normal((n_out, q_dim)).astype(np.float32), gguf.GGMLQuantizationType.Q4_0)
    w = gpu.upload(raw)
    planes, sums = kernels.dot4_x(q_dim, max_tokens)
    results = []
    for fused in (True, False):
        out, y = gpu.poisoned(max_tokens * q_dim * 4), gpu.poisoned(max_tokens * n_out * 4)
        for scratch in (planes, sums):
            gpu.device.write_buffer(scratch, POISON * scratch.size)
        ops = [
            kernels.attention(q, k_cache, v_cache, out, n_heads, n_kv_heads, head_dim, length, max_tokens,
                              quantise_out=fused),
            kernels.matmul(w, K.Q4_0, q_dim, n_out, out, y, max_tokens, x_quantised=fused),
        ]
        assert len(ops[1].decode) == (1 if fused else 2)  # the product alone, or quantize_x and the product
        gpu.run(kernels, ops, 1, pos=length - 1)
        results.append({"attention": gpu.read(out, q_dim), "planes": gpu.read(planes, q_dim * 3 // 4, np.uint32),
                        "scales and sums": gpu.read(sums, q_dim // 32 * 4), "product": gpu.read(y, n_out)})
    fused, alone = results
    for what in fused:
        assert fused[what].tobytes() == alone[what].tobytes(), f"{what} differ"
    assert not np.isnan(fused["scales and sums"]).any() and not np.isnan(fused["product"]).any()
