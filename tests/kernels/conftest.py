"""Shared fixtures for the kernel tests: one device per session, fresh seeds, poisoned outputs.

Every test draws its inputs from a seed chosen at random for this run (HEARTH_SEED=<n> replays
one); the seed is printed, so pytest shows it with any failure. Output buffers start as NaN bytes,
so an element a kernel forgets to write fails the comparison.
The adapter is whatever wgpu-py opens (lavapipe here); Chromium's SwiftShader, the browser's CPU
WebGPU, runs the same suite with VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json.
"""

from __future__ import annotations

import asyncio
import os
import random

import numpy as np
import pytest

from engine.gpu import open_device
from engine.kernels import Kernels

POISON = b"\xff"  # 0xFFFFFFFF: a NaN as f32, the largest u32


def run(coro):
    """Run one coroutine of the async-first seam to completion."""
    return asyncio.run(coro)


@pytest.fixture(scope="session")
def device():
    return run(open_device())


@pytest.fixture(scope="session")
def kernels_for(device):
    """kernels_for(variant, kv_f16=False, x_lanes=None) -> a Kernels, made once per session for each choice."""
    cache: dict[tuple, Kernels] = {}

    def get(variant: str, kv_f16: bool = False, x_lanes: int | None = None) -> Kernels:
        if (variant, kv_f16, x_lanes) not in cache:
            cache[variant, kv_f16, x_lanes] = Kernels(device, variant=variant, kv_f16=kv_f16, x_lanes=x_lanes)
        return cache[variant, kv_f16, x_lanes]

    return get


@pytest.fixture
def rng():
    seed = int(os.environ.get("HEARTH_SEED", random.randrange(2**32)))
    print(f"seed={seed} (rerun with HEARTH_SEED={seed})")
    return np.random.default_rng(seed)


class Gpu:
    """Small helpers over the seam for tests: upload, poison, run an op, read back."""

    def __init__(self, device):
        self.device = device

    def upload(self, data) -> object:
        """A storage buffer holding `data` (a numpy array or bytes)."""
        raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
        buffer = self.device.create_buffer(len(raw))
        self.device.write_buffer(buffer, raw)
        return buffer

    def poisoned(self, nbytes: int) -> object:
        """A buffer of nbytes filled with 0xFF bytes (NaN as f32)."""
        return self.upload(POISON * nbytes)

    def run(self, kernels: Kernels, ops, n_tokens: int, pos: int = 0, places=None) -> None:
        """set_step(pos, n_tokens) (or set_places(places): tokens of several sequences), then record `ops`
        into one command buffer and submit it."""
        if places is None:
            kernels.set_step(pos, n_tokens)
        else:
            kernels.set_places(places)
        recorder = self.device.recorder()
        for op in ops if isinstance(ops, list | tuple) else [ops]:
            op.record(recorder, n_tokens)
        self.device.submit(recorder)

    def read(self, buffer, count: int, dtype=np.float32, offset: int = 0) -> np.ndarray:
        """`count` elements of `dtype` from `buffer`, starting at byte `offset`."""
        size = count * np.dtype(dtype).itemsize
        raw = run(self.device.read_buffer(buffer, offset, size))
        return np.frombuffer(bytes(raw), dtype=dtype).copy()


@pytest.fixture(scope="session")
def gpu(device):
    return Gpu(device)


def assert_close(got: np.ndarray, want: np.ndarray, rtol: float = 1e-4, what: str = "", widen=None) -> None:
    """|got - want| <= rtol * max|want| everywhere (the output's scale), and no NaN anywhere; `widen` (an
    array broadcast to want's shape) adds its own allowance to each output's (a known error bound)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert np.isfinite(got).all(), f"{what}: {int((~np.isfinite(got)).sum())} non-finite outputs (unwritten?)"
    scale = max(float(np.abs(want).max(initial=0.0)), 1e-30)
    if widen is not None:
        err = np.abs(got - want)
        over = err > np.broadcast_to(widen, want.shape) + rtol * scale
        assert not over.any(), f"{what}: {int(over.sum())} outputs past their bound (largest error {err.max():.3g})"
        return
    err = np.abs(got - want).max(initial=0.0) / scale
    assert err <= rtol, f"{what}: max error {err:.3g} of the output scale > {rtol:g}"


def glu(activation: str, gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    """act(gate) * up in float64: SiLU, or GELU's tanh approximation (engine.kernels.GLU_ACTIVATIONS), with
    results below f32's smallest normal flushed to zero as the kernels do."""
    g = np.asarray(gate, dtype=np.float64)
    if activation == "silu":
        act = g / (1.0 + np.exp(-g))
    else:
        u = np.sqrt(2.0 / np.pi) * (g + 0.044715 * g**3)
        with np.errstate(over="ignore"):  # e^-2u overflowing to inf gives the right 0
            act = g / (1.0 + np.exp(-2.0 * u))  # = g / 2 (1 + tanh u), without its cancellation for negative g
    out = act * up
    return np.where(np.abs(out) < 1.1754944e-38, 0.0, out)  # as the kernels flush (activations.wgsl says why)
