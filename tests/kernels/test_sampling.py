"""Greedy argmax and the repetition penalties on the GPU, against numpy and the sampler's CPU reference."""

from __future__ import annotations

import numpy as np
import pytest

from engine.sampler import apply_penalties_cpu


@pytest.mark.parametrize("n", [1, 7, 257, 4099, 49152])
def test_argmax_lowest_index_on_ties(gpu, kernels_for, rng, n):
    kernels = kernels_for("scalar")
    logits = rng.standard_normal(n + 5).astype(np.float32)
    logits[n:] = 1e9  # past n: must be ignored
    top = rng.choice(n, size=min(n, 3), replace=False)
    logits[top] = 50.0  # a tie at up to three places
    out = gpu.poisoned(4)
    gpu.run(kernels, kernels.argmax(gpu.upload(logits), out, n), 7)  # any batch: one row
    assert gpu.read(out, 1, np.uint32)[0] == top.min()


@pytest.mark.parametrize("n_rows", [1, 3, 8])
def test_argmax_of_each_row(gpu, kernels_for, rng, n_rows):
    """A batch's rows (streams decoding together): out[t] is row t's argmax, lowest on ties; rows past the
    batch's are left alone."""
    kernels, n, max_rows = kernels_for("scalar"), 1001, 8
    logits = rng.standard_normal((max_rows, n)).astype(np.float32)
    logits[0, [5, 700]] = 40.0  # a tie in the first row
    out = gpu.poisoned(4 * max_rows)
    gpu.run(kernels, kernels.argmax(gpu.upload(logits), out, n, rows=True, max_rows=max_rows), n_rows)
    got = gpu.read(out, max_rows, np.uint32)
    assert (got[:n_rows] == logits[:n_rows].argmax(axis=1)).all()
    assert (got[n_rows:] == 0xFFFFFFFF).all()


def test_argmax_of_infinities(gpu, kernels_for):
    kernels = kernels_for("scalar")
    logits = np.full(300, -np.inf, dtype=np.float32)
    out = gpu.poisoned(4)
    gpu.run(kernels, kernels.argmax(gpu.upload(logits), out, 300), 1)
    assert gpu.read(out, 1, np.uint32)[0] == 0
    logits[[17, 260]] = np.inf
    gpu.run(kernels, kernels.argmax(gpu.upload(logits), out, 300), 1)
    assert gpu.read(out, 1, np.uint32)[0] == 17


def test_penalize_matches_cpu_reference(gpu, kernels_for, rng):
    kernels = kernels_for("scalar")
    n_vocab = 1000
    logits = (rng.standard_normal(n_vocab) * 5).astype(np.float32)
    buffer = gpu.upload(logits)
    op = kernels.penalize(buffer, n_vocab, max_history=70)
    tokens = rng.choice(n_vocab, size=70, replace=False)
    counts = [(int(t), int(c)) for t, c in zip(tokens, rng.integers(1, 9, 70), strict=True)]
    want = [float(v) for v in logits]
    apply_penalties_cpu(want, counts, 1.3, 0.4, 0.25)
    op.set(counts, 1.3, 0.4, 0.25)
    gpu.run(kernels, op, 1)
    got = gpu.read(buffer, n_vocab)
    np.testing.assert_allclose(got, np.array(want, dtype=np.float32), rtol=1e-6, atol=1e-6)
    # A shorter list next time applies only itself; an empty one nothing.
    op.set(counts[:3], 2.0, 0.0, 0.0)
    gpu.run(kernels, op, 1)
    apply_penalties_cpu(want, counts[:3], 2.0, 0.0, 0.0)
    op.set([], 2.0, 1.0, 1.0)
    gpu.run(kernels, op, 1)
    np.testing.assert_allclose(gpu.read(buffer, n_vocab), np.array(want, dtype=np.float32), rtol=1e-6, atol=1e-6)


def test_penalize_refuses_bad_lists(gpu, kernels_for):
    op = kernels_for("scalar").penalize(gpu.poisoned(40), 10, max_history=2)
    for bad in ([(1, 1), (2, 1), (3, 1)], [(1, 1), (1, 2)], [(10, 1)]):
        with pytest.raises(ValueError):
            op.set(bad, 1.1, 0.0, 0.0)
