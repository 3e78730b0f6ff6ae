"""Embedding lookups over every weight type x variant x batch, against gguf's dequantisation."""

from __future__ import annotations

import numpy as np
import pytest

from engine import kernels as K

from .conftest import assert_close
from .test_matmul import F16_FIELDS, TYPES, VARIANTS, quantised, row_length, type_name


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("wtype", list(TYPES), ids=type_name)
@pytest.mark.parametrize("n_tokens", [1, 3, 9])
def test_embed(gpu, kernels_for, rng, variant, wtype, n_tokens):
    n_vocab, max_tokens = 37, 11
    dim = 36 if wtype in K.FLOAT_TYPES else row_length(wtype, 2 if wtype in F16_FIELDS else 7)
    raw, table = quantised(rng, wtype, n_vocab, dim)
    ids = rng.integers(0, n_vocab, max_tokens).astype(np.uint32)
    ids[-1] = n_vocab - 1  # the table's last row, whose block may end the buffer
    ids = np.roll(ids, n_tokens - 1)
    out = gpu.poisoned(max_tokens * dim * 4)
    kernels = kernels_for(variant)
    gpu.run(kernels, kernels.embed(gpu.upload(raw), wtype, dim, gpu.upload(ids), out), n_tokens)
    got = gpu.read(out, max_tokens * dim).reshape(max_tokens, dim)
    assert_close(got[:n_tokens], table[ids[:n_tokens]], 1e-6, f"type {wtype}")
    assert np.isnan(got[n_tokens:]).all(), "rows past the batch were written"


@pytest.mark.parametrize("wtype", [K.F16, K.Q4_K], ids=type_name)
def test_embed_scaled(gpu, kernels_for, rng, wtype):
    """Gemma multiplies each embedding by sqrt(dim)."""
    dim, scale = row_length(wtype, 2 if wtype in F16_FIELDS else 7), 45.254834
    raw, table = quantised(rng, wtype, 19, dim)
    ids = rng.integers(0, 19, 4).astype(np.uint32)
    out = gpu.poisoned(4 * dim * 4)
    kernels = kernels_for("scalar")
    gpu.run(kernels, kernels.embed(gpu.upload(raw), wtype, dim, gpu.upload(ids), out, scale=scale), 4)
    assert_close(gpu.read(out, 4 * dim).reshape(4, dim), table[ids] * scale, 1e-6)
