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


def test_rmsnorm_refuses_in_place(gpu, kernels_for):
    kernels = kernels_for("scalar")
    x = gpu.poisoned(64)
    with pytest.raises(ValueError):
        kernels.rmsnorm(x, gpu.poisoned(64), x, 16, 1e-5)
