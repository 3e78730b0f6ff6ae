"""The GPU seam: the one narrow interface between the engine and WebGPU.

Everything above this package speaks only to `Device` and `Recorder`; the two backends
(`native.py` over wgpu-py, `browser.py` over Pyodide's `js` FFI) are the only files that import
`wgpu` or `js`. The vocabulary is WebGPU's; every call that waits on the GPU is async, because the
browser has no blocking GPU calls.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol

# Buffer roles. Each maps to a fixed set of WebGPU usage flags inside the backends.
STORAGE = "storage"  # read/write from shaders, written from the host, copied from and to
UNIFORM = "uniform"  # small per-step parameters written from the host


@dataclass(frozen=True)
class AdapterInfo:
    """What the engine needs to know about the adapter to pick kernel variants."""

    vendor: str
    device: str
    is_software: bool  # CPU rasterisers (lavapipe, SwiftShader) punish barriers: see shaders/
    features: frozenset[str]  # WebGPU spec names: "shader-f16", "subgroups"
    max_storage_binding: int
    max_buffer_size: int


class Buffer(Protocol):
    """A GPU buffer; `size` in bytes. The backend object stays opaque to the engine."""

    size: int


class Pipeline(Protocol):
    """A compute pipeline made from WGSL, an entry point and override constants."""


class BindGroup(Protocol):
    """The buffers one dispatch reads and writes, bound once and reused every step."""


class Plan(Protocol):
    """A fixed sequence of dispatches (`Device.plan`), recorded again whole by `Recorder.replay`."""


class Recorder(Protocol):
    """Records dispatches and copies into one command buffer; `Device.submit` sends it."""

    def dispatch(self, pipeline: Pipeline, bind_group: BindGroup, groups: tuple[int, int, int]) -> None:
        """Record one compute dispatch of `groups` workgroups."""

    def replay(self, plan: Plan) -> None:
        """Record a plan's dispatches, in order, as `dispatch` would each."""

    def copy(self, src: Buffer, src_offset: int, dst: Buffer, dst_offset: int, size: int) -> None:
        """Record a buffer-to-buffer copy."""


class Device(Protocol):
    """One opened WebGPU device."""

    info: AdapterInfo

    def create_buffer(self, size: int, role: str = STORAGE, label: str = "") -> Buffer:
        """A zero-initialised buffer of `size` bytes (rounded up to 4)."""

    def write_buffer(self, buffer: Buffer, data: Any, offset: int = 0) -> None:
        """Queue a host-to-GPU copy of `data` (bytes-like natively, a typed array in the browser)."""

    def create_pipeline(self, wgsl: str, entry_point: str, constants: dict[str, float]) -> Pipeline:
        """Compile `entry_point` of `wgsl` with the given override constants."""

    def create_bind_group(self, pipeline: Pipeline, buffers: list[Buffer | tuple[Buffer, int, int]]) -> BindGroup:
        """Bind `buffers` (or `(buffer, offset, size)` ranges) to bindings 0..n-1 of group 0."""

    def plan(self, dispatches: list[tuple[Pipeline, BindGroup, tuple[int, int, int]]]) -> Plan:
        """Dispatches (pipeline, bind group, groups) made ready to record again and again with the least
        work on the host: a decode step records the same ~300 every token."""

    def recorder(self) -> Recorder:
        """Start recording a command buffer."""

    def submit(self, recorder: Recorder) -> None:
        """Finish and submit a recorded command buffer."""

    async def read_buffer(self, buffer: Buffer, offset: int = 0, size: int | None = None) -> memoryview:
        """Copy a range of `buffer` back to the host once the GPU has finished with it."""

    def start_read(self, buffer: Buffer, offset: int = 0, size: int | None = None) -> Awaitable[memoryview]:
        """Submit the copy-back of a range of `buffer` now (later submits may then overwrite it); await
        the result when it is needed. Every started read must be awaited: that frees its staging buffer."""


async def open_device() -> Device:
    """Open the best device where the engine runs: the browser's WebGPU on Pyodide, wgpu-py elsewhere."""
    import sys

    if sys.platform == "emscripten":
        from .browser import open_browser_device

        return await open_browser_device()
    from .native import open_native_device

    return await open_native_device()
