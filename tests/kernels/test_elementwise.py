"""SwiGLU's silu(gate) * up, residual adds and biases, on awkward sizes."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import assert_close

SIZES = [(1, 1), (7, 3), (33, 9), (4099, 2), (36, 5), (1536, 3)]  # odd and vec4 widths


def silu(x):
    return x / (1.0 + np.exp(-x))


def rows(rng, n_tokens, n, max_tokens=9):
    return (rng.standard_normal((max_tokens, n)) * 4).astype(np.float32)


@pytest.mark.parametrize("n,n_tokens", SIZES)
def test_silu_mul(gpu, kernels_for, rng, n, n_tokens):
    kernels = kernels_for("scalar")
    gate, up = rows(rng, n_tokens, n), rows(rng, n_tokens, n)
    out = gpu.poisoned(gate.nbytes)
    gpu.run(kernels, kernels.silu_mul(gpu.upload(gate), gpu.upload(up), out, n), n_tokens)
    got = gpu.read(out, gate.size).reshape(gate.shape)
    assert_close(got[:n_tokens], silu(gate[:n_tokens].astype(np.float64)) * up[:n_tokens], 1e-5)
    assert np.isnan(got[n_tokens:]).all()


@pytest.mark.parametrize("n,n_tokens", SIZES)
def test_silu_mul_into_gate(gpu, kernels_for, rng, n, n_tokens):
    kernels = kernels_for("scalar")
    gate, up = rows(rng, n_tokens, n), rows(rng, n_tokens, n)
    gate_buffer = gpu.upload(gate)
    gpu.run(kernels, kernels.silu_mul(gate_buffer, gpu.upload(up), gate_buffer, n), n_tokens)
    got = gpu.read(gate_buffer, gate.size).reshape(gate.shape)
    assert_close(got[:n_tokens], silu(gate[:n_tokens].astype(np.float64)) * up[:n_tokens], 1e-5)
    assert (got[n_tokens:] == gate[n_tokens:]).all()


@pytest.mark.parametrize("n,n_tokens", SIZES)
def test_add_and_bias(gpu, kernels_for, rng, n, n_tokens):
    kernels = kernels_for("scalar")
    x, y, bias = rows(rng, n_tokens, n), rows(rng, n_tokens, n), rng.standard_normal(n).astype(np.float32)
    xb = gpu.upload(x)
    gpu.run(kernels, [kernels.add(xb, gpu.upload(y), n), kernels.add_bias(xb, gpu.upload(bias), n)], n_tokens)
    got = gpu.read(xb, x.size).reshape(x.shape)
    assert_close(got[:n_tokens], x[:n_tokens].astype(np.float64) + y[:n_tokens] + bias, 1e-6)
    assert (got[n_tokens:] == x[n_tokens:]).all()
