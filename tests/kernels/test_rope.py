"""RoPE in both pair layouts, partial rotation, linear scaling and llama3 factors, against the reference."""

from __future__ import annotations

import numpy as np
import pytest

from tests.reference import rope

from .conftest import assert_close


def check_rope(gpu, kernels, rng, *, n_heads, head_dim, n_rot, neox, pos, n_tokens, freq_scale, factors, rtol,
               extra=0, mscale=1.0):
    """extra: rows carry this many more columns after the heads, which must stay as they are.
    mscale: the rotated dims are scaled by it (LongRoPE's attention factor)."""
    theta = 10000.0
    wide = rng.standard_normal((n_tokens, n_heads * head_dim + extra)).astype(np.float32)
    x = wide[:, : n_heads * head_dim]
    buffer = gpu.upload(wide)
    factor_buffer = None
    inv_freq = freq_scale * theta ** (-np.arange(0, n_rot, 2, dtype=np.float64) / n_rot)
    if factors:
        f = rng.uniform(1.0, 8.0, n_rot // 2).astype(np.float32)
        factor_buffer = gpu.upload(f)
        inv_freq = inv_freq / f.astype(np.float64)
    row = n_heads * head_dim + extra if extra else 0
    op = kernels.rope(buffer, n_heads, head_dim, n_rot, theta, freq_scale, neox, factor_buffer, row=row, mscale=mscale)
    gpu.run(kernels, op, n_tokens, pos=pos)
    got_wide = gpu.read(buffer, wide.size).reshape(wide.shape)
    np.testing.assert_array_equal(got_wide[:, n_heads * head_dim :], wide[:, n_heads * head_dim :])
    got = got_wide[:, : n_heads * head_dim].reshape(n_tokens, n_heads, head_dim)
    positions = np.arange(pos, pos + n_tokens, dtype=np.float64)
    want = rope(x.reshape(n_tokens, n_heads, head_dim).astype(np.float64), positions, inv_freq, neox)
    want[..., :n_rot] *= mscale
    assert_close(got, want, rtol, f"neox={neox} n_rot={n_rot} pos={pos}")


@pytest.mark.parametrize("neox", [False, True])
@pytest.mark.parametrize("n_rot", [16, 10])
@pytest.mark.parametrize("n_tokens,pos", [(1, 0), (3, 37), (9, 5)])
def test_rope(gpu, kernels_for, rng, neox, n_rot, n_tokens, pos):
    check_rope(
        gpu,
        kernels_for("scalar"),
        rng,
        n_heads=3,
        head_dim=16,
        n_rot=n_rot,
        neox=neox,
        pos=pos,
        n_tokens=n_tokens,
        freq_scale=1.0,
        factors=False,
        rtol=1e-5,
    )


@pytest.mark.parametrize("neox", [False, True])
def test_rope_scaled_with_factors(gpu, kernels_for, rng, neox):
    check_rope(
        gpu,
        kernels_for("scalar"),
        rng,
        n_heads=7,
        head_dim=64,
        n_rot=64,
        neox=neox,
        pos=100,
        n_tokens=5,
        freq_scale=0.25,
        factors=True,
        rtol=1e-5,
    )


def test_rope_far_positions(gpu, kernels_for, rng):
    # The angle itself is an f32 product (as in llama.cpp): ~1e-7 relative, so ~1e-3 rad at 10^4.
    check_rope(
        gpu,
        kernels_for("scalar"),
        rng,
        n_heads=2,
        head_dim=32,
        n_rot=32,
        neox=False,
        pos=8000,
        n_tokens=2,
        freq_scale=1.0,
        factors=False,
        rtol=5e-3,
    )


@pytest.mark.parametrize("neox", [False, True])
def test_rope_heads_leading_wider_rows(gpu, kernels_for, rng, neox):
    # The model rotates q's and k's heads of its [T, q | k | v] rows in one dispatch.
    check_rope(
        gpu,
        kernels_for("scalar"),
        rng,
        n_heads=5,
        head_dim=16,
        n_rot=16,
        neox=neox,
        pos=7,
        n_tokens=4,
        freq_scale=1.0,
        factors=False,
        rtol=1e-5,
        extra=24,
    )


def test_rope_long_rope_factors_and_attention_factor(gpu, kernels_for, rng):
    # Phi-3's LongRoPE: per-pair factors, NeoX pairs, and cos and sin scaled by the attention factor.
    check_rope(gpu, kernels_for("scalar"), rng, n_heads=4, head_dim=32, n_rot=24, neox=True, pos=11, n_tokens=3,
               freq_scale=1.0, factors=True, rtol=1e-5, mscale=1.1902380714238083)


@pytest.mark.parametrize("variant", ["scalar", "subgroup"])
def test_rope_at_each_tokens_own_position(gpu, kernels_for, rng, variant):
    """A step of several sequences (Kernels.set_places): each token turns by its own position, in any order."""
    n_heads, head_dim, positions = 3, 16, [5, 0, 37, 6, 4096]
    x = rng.standard_normal((len(positions), n_heads * head_dim)).astype(np.float32)
    buffer = gpu.upload(x)
    kernels = kernels_for(variant)
    op = kernels.rope(buffer, n_heads, head_dim, head_dim, 10000.0, 1.0, True)
    gpu.run(kernels, op, len(positions), places=[(7 * i, p) for i, p in enumerate(positions)])
    inv_freq = 10000.0 ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    want = rope(x.reshape(-1, n_heads, head_dim).astype(np.float64), np.array(positions, np.float64), inv_freq, True)
    assert_close(gpu.read(buffer, x.size).reshape(want.shape), want, 1e-5, "positions from the table")


def test_a_step_holds_at_most_the_tables_tokens(gpu, kernels_for):
    kernels = kernels_for("scalar")
    with pytest.raises(ValueError, match="1..64 tokens"):
        kernels.set_places([(0, i) for i in range(65)])
    with pytest.raises(ValueError):
        kernels.set_places([])
