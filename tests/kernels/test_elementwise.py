"""The gated activations (SiLU, GELU), residual adds, biases and soft-capping, on awkward sizes."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import assert_close, glu

SIZES = [(1, 1), (7, 3), (33, 9), (4099, 2), (36, 5), (1536, 3)]  # odd and vec4 widths


def rows(rng, n_tokens, n, max_tokens=9):
    return (rng.standard_normal((max_tokens, n)) * 4).astype(np.float32)


@pytest.mark.parametrize("activation", ["silu", "gelu"])
@pytest.mark.parametrize("n,n_tokens", SIZES)
def test_glu_mul(gpu, kernels_for, rng, activation, n, n_tokens):
    kernels = kernels_for("scalar")
    gate, up = rows(rng, n_tokens, n), rows(rng, n_tokens, n)
    out = gpu.poisoned(gate.nbytes)
    gpu.run(kernels, kernels.glu_mul(gpu.upload(gate), gpu.upload(up), out, n, activation), n_tokens)
    got = gpu.read(out, gate.size).reshape(gate.shape)
    assert_close(got[:n_tokens], glu(activation, gate[:n_tokens], up[:n_tokens]), 1e-5, activation)
    assert np.isnan(got[n_tokens:]).all()


@pytest.mark.parametrize("activation", ["silu", "gelu"])
@pytest.mark.parametrize("n,n_tokens", SIZES)
def test_glu_mul_into_gate(gpu, kernels_for, rng, activation, n, n_tokens):
    kernels = kernels_for("scalar")
    gate, up = rows(rng, n_tokens, n), rows(rng, n_tokens, n)
    gate_buffer = gpu.upload(gate)
    gpu.run(kernels, kernels.glu_mul(gate_buffer, gpu.upload(up), gate_buffer, n, activation), n_tokens)
    got = gpu.read(gate_buffer, gate.size).reshape(gate.shape)
    assert_close(got[:n_tokens], glu(activation, gate[:n_tokens], up[:n_tokens]), 1e-5, activation)
    assert (got[n_tokens:] == gate[n_tokens:]).all()


def test_gelu_is_exact_at_every_scale(gpu, kernels_for):
    """GELU near 0, far out (where e^2u overflows) and very negative (where 1 + tanh(u) would cancel)."""
    kernels = kernels_for("scalar")
    gate = np.concatenate([np.geomspace(1e-6, 1e3, 200), -np.geomspace(1e-6, 1e3, 200), [0.0] * 4]).astype(np.float32)
    up = np.ones_like(gate)
    out = gpu.poisoned(gate.nbytes)
    gpu.run(kernels, kernels.glu_mul(gpu.upload(gate[None]), gpu.upload(up[None]), out, gate.size, "gelu"), 1)
    got = gpu.read(out, gate.size).astype(np.float64)
    want = glu("gelu", gate, up)
    assert np.isfinite(got).all()
    # Relative to each output, however small (outputs under 1e-36 may read 0: the kernels flush them); f32's
    # rounding of the exponent 2u (up to 88) alone allows ~5e-6 there.
    bad = np.abs(got - want) > 1e-5 * np.abs(want) + 1e-36
    assert not bad.any(), f"x={gate[bad][:5]} got={got[bad][:5]} want={want[bad][:5]}"


@pytest.mark.parametrize("n,n_tokens", SIZES)
def test_softcap(gpu, kernels_for, rng, n, n_tokens):
    kernels, cap = kernels_for("scalar"), 30.0
    x = rows(rng, n_tokens, n) * 20  # well past the cap, and near 0
    buffer = gpu.upload(x)
    gpu.run(kernels, kernels.softcap(buffer, n, cap), n_tokens)
    got = gpu.read(buffer, x.size).reshape(x.shape)
    want = cap * np.tanh(x[:n_tokens].astype(np.float64) / cap)
    np.testing.assert_allclose(got[:n_tokens], want, rtol=1e-6, atol=cap * 2e-7)
    assert (got[n_tokens:] == x[n_tokens:]).all()


@pytest.mark.parametrize("n,n_tokens", SIZES)
def test_add_and_bias(gpu, kernels_for, rng, n, n_tokens):
    kernels = kernels_for("scalar")
    x, y, bias = rows(rng, n_tokens, n), rows(rng, n_tokens, n), rng.standard_normal(n).astype(np.float32)
    xb = gpu.upload(x)
    gpu.run(kernels, [kernels.add(xb, gpu.upload(y), n), kernels.add_bias(xb, gpu.upload(bias), n)], n_tokens)
    got = gpu.read(xb, x.size).reshape(x.shape)
    assert_close(got[:n_tokens], x[:n_tokens].astype(np.float64) + y[:n_tokens] + bias, 1e-6)
    assert (got[n_tokens:] == x[n_tokens:]).all()
