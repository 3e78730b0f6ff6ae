"""RMSNorm on awkward row lengths and batches, against tests/reference.py."""

from __future__ import annotations

import numpy as np
import pytest

from tests.reference import rmsnorm

from .conftest import assert_close


@pytest.mark.parametrize("n", [1, 7, 33, 576, 4099])
@pytest.mark.parametrize("n_tokens", [1, 3, 9])
@pytest.mark.parametrize("variant", ["scalar", "subgroup"])
def test_rmsnorm(gpu, kernels_for, rng, n, n_tokens, variant):
    kernels = kernels_for(variant)
    max_tokens, eps = 9, 1e-5
    x = (rng.standard_normal((max_tokens, n)) * rng.uniform(0.1, 10, (max_tokens, 1))).astype(np.float32)
    weight = rng.standard_normal(n).astype(np.float32)
    out = gpu.poisoned(max_tokens * n * 4)
    gpu.run(kernels, kernels.rmsnorm(gpu.upload(x), gpu.upload(weight), out, n, eps), n_tokens)
    got = gpu.read(out, max_tokens * n).reshape(max_tokens, n)
    want = rmsnorm(x[:n_tokens].astype(np.float64), weight.astype(np.float64), eps)
    assert_close(got[:n_tokens], want, 1e-5)
    assert np.isnan(got[n_tokens:]).all()


@pytest.mark.parametrize("n", [7, 576])
@pytest.mark.parametrize("variant", ["scalar", "subgroup"])
def test_rmsnorm_accumulates_into_the_residual(gpu, kernels_for, rng, n, variant):
    """Gemma's norms after attention and the feed-forward: x += rmsnorm(branch) * weight."""
    kernels, max_tokens, n_tokens, eps = kernels_for(variant), 5, 3, 1e-6
    branch = (rng.standard_normal((max_tokens, n)) * 5).astype(np.float32)
    weight = rng.standard_normal(n).astype(np.float32)
    x = rng.standard_normal((max_tokens, n)).astype(np.float32)
    out = gpu.upload(x)
    gpu.run(kernels, kernels.rmsnorm(gpu.upload(branch), gpu.upload(weight), out, n, eps, accumulate=True), n_tokens)
    got = gpu.read(out, x.size).reshape(x.shape)
    want = x[:n_tokens] + rmsnorm(branch[:n_tokens].astype(np.float64), weight.astype(np.float64), eps)
    assert_close(got[:n_tokens], want, 1e-5)
    assert (got[n_tokens:] == x[n_tokens:]).all()


@pytest.mark.parametrize("n_heads,head_dim,col", [(3, 16, 0), (2, 128, 40), (5, 7, 3)])
def test_rmsnorm_of_heads_in_place(gpu, kernels_for, rng, n_heads, head_dim, col):
    """Qwen 3's and Gemma 3's q and k norms: each head of a wider row on its own, the rest untouched."""
    kernels, max_tokens, n_tokens, eps = kernels_for("scalar"), 6, 4, 1e-6
    row = col + n_heads * head_dim + 9
    x = (rng.standard_normal((max_tokens, row)) * rng.uniform(0.1, 10, (max_tokens, 1))).astype(np.float32)
    weight = rng.standard_normal(head_dim).astype(np.float32)
    buffer = gpu.upload(x)
    gpu.run(kernels, kernels.rmsnorm_heads(buffer, gpu.upload(weight), n_heads, head_dim, eps, row=row, col=col),
            n_tokens)
    got = gpu.read(buffer, x.size).reshape(x.shape)
    heads = x[:n_tokens, col : col + n_heads * head_dim].reshape(n_tokens, n_heads, head_dim).astype(np.float64)
    want = rmsnorm(heads, weight.astype(np.float64), eps).reshape(n_tokens, -1)
    assert_close(got[:n_tokens, col : col + n_heads * head_dim], want, 1e-5)
    outside = np.ones(x.shape, dtype=bool)
    outside[:n_tokens, col : col + n_heads * head_dim] = False
    assert (got[outside] == x[outside]).all(), "columns outside the heads or rows past the batch changed"
    with pytest.raises(ValueError):
        kernels.rmsnorm_heads(buffer, buffer, n_heads, head_dim, eps, row=n_heads * head_dim, col=1)


def test_rmsnorm_refuses_in_place(gpu, kernels_for):
    kernels = kernels_for("scalar")
    x = gpu.poisoned(64)
    with pytest.raises(ValueError):
        kernels.rmsnorm(x, gpu.poisoned(64), x, 16, 1e-5)
