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


@pytest.mark.parametrize("wtype", [K.Q8_0, K.Q6_K], ids=type_name)
def test_embed_from_a_table_split_into_row_ranges(gpu, kernels_for, rng, wtype):
    """A vocabulary too big for one binding comes in parts (model.Rows): each part writes only its tokens."""
    n_vocab, n_tokens, dim = 40, 9, row_length(wtype, 2 if wtype in F16_FIELDS else 3)
    raw, table = quantised(rng, wtype, n_vocab, dim)
    row_bytes = len(raw) // n_vocab
    ids = np.array([0, 15, 16, 39, 17, 3, 31, 32, 16], np.uint32)  # both sides of each boundary
    out, kernels = gpu.poisoned(n_tokens * dim * 4), kernels_for("scalar")
    id_buffer = gpu.upload(ids)
    ops = [kernels.embed(gpu.upload(raw[first * row_bytes : (first + n) * row_bytes]), wtype, dim, id_buffer, out,
                         first_row=first, n_rows=n)
           for first, n in ((0, 16), (16, 16), (32, 8))]  # fmt: skip
    gpu.run(kernels, ops, n_tokens)
    assert_close(gpu.read(out, n_tokens * dim).reshape(n_tokens, dim), table[ids], 1e-6, f"type {wtype}")
