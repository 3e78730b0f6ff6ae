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
# Texels a row of the textures that hold weights on CPU adapters (weights_texture.wgsl's TEXELS_A_ROW):
# 16 bytes each, so a row is 64 KiB of the tensor.
TEXELS_A_ROW = 4096
TEXEL_BYTES = 16
# The feature name under which AdapterInfo.features says the adapter multiplies f16 x f16 -> f32 16x16x16
# subgroup matrices (tensor cores from WGSL): Chromium's experimental feature, listed only when that
# configuration is among those it offers (matmul_tiled_matrix.wgsl's).
SUBGROUP_MATRIX = "chromium-experimental-subgroup-matrix"


@dataclass(frozen=True)
class AdapterInfo:
    """What the engine needs to know about the adapter to pick kernel variants."""

    vendor: str
    device: str
    is_software: bool  # CPU rasterisers (lavapipe, SwiftShader) punish barriers: see shaders/
    features: frozenset[str]  # WebGPU names: "shader-f16", "subgroups", SUBGROUP_MATRIX
    max_storage_binding: int
    max_buffer_size: int
    max_texture_2d: int = 8192  # texels a 2D texture may have along each side (WebGPU's default)
    max_workgroup_storage: int = 16384  # bytes of workgroup memory a workgroup may have (WebGPU's default)
    subgroup_min_size: int = 0  # lanes of the adapter's smallest subgroup; 0: unknown (kernels.lanes_sharing_x)

    def weight_binding(self, texels: bool) -> int:
        """Bytes of the largest tensor one binding holds: a storage buffer's, or with texels the whole texel rows
        that fit in one (a texture holds whole rows; at most max_texture_2d of them)."""
        if not texels:
            return self.max_storage_binding
        row = TEXELS_A_ROW * TEXEL_BYTES
        return min(self.max_storage_binding // row, self.max_texture_2d) * row


class Buffer(Protocol):
    """A GPU buffer; `size` in bytes. The backend object stays opaque to the engine."""

    size: int

    def destroy(self) -> None:
        """Free the buffer's memory now (WebGPU's destroy), not when the garbage collector gets to it."""


@dataclass(frozen=True)
class Texels:
    """A tensor's bytes in a 2D rgba32uint texture, TEXELS_A_ROW texels of TEXEL_BYTES a row, in order: how
    CPU adapters' kernels read weights (weights_texture.wgsl). `size`: the tensor's bytes."""

    texture: Any
    view: Any
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

    def copy_to_texels(self, src: Buffer, texels: Texels) -> None:
        """Record a copy of src's first texels.size bytes (rounded up to whole texels, which src must hold)
        into texels."""


def texel_rows(size: int) -> int:
    """Rows of TEXELS_A_ROW texels that hold `size` bytes."""
    return max(1, -(-size // (TEXELS_A_ROW * TEXEL_BYTES)))


def texel_copies(size: int) -> list[tuple[int, int, tuple[int, int, int]]]:
    """(source offset, first texture row, extent) of the copies that put `size` bytes into texels: the whole
    rows at once, then the texels of the last row (one row: a copy's bytes_per_row need not cover it)."""
    n = -(-size // TEXEL_BYTES)
    full, rest = divmod(n, TEXELS_A_ROW)
    copies = [(0, 0, (TEXELS_A_ROW, full, 1))] if full else []
    if rest:
        copies.append((full * TEXELS_A_ROW * TEXEL_BYTES, full, (rest, 1, 1)))
    return copies


class Device(Protocol):
    """One opened WebGPU device."""

    info: AdapterInfo
    # Whether submit blocks while an earlier submission runs (lavapipe's queue holds one): work submitted far ahead
    # of the host's reads then waits in submit itself, and only holds each result back.
    submit_blocks: bool
    # Whether kernels read texels (weights_texture.wgsl) as a read-only storage texture, which lavapipe loads in
    # line, rather than a sampled one, which SwiftShader loads faster (shader_sources.TEXEL_BINDINGS).
    storage_texels: bool

    def create_buffer(self, size: int, role: str = STORAGE, label: str = "") -> Buffer:
        """A zero-initialised buffer of `size` bytes (rounded up to 4)."""

    def write_buffer(self, buffer: Buffer, data: Any, offset: int = 0) -> None:
        """Queue a host-to-GPU copy of `data` (bytes-like natively, a typed array in the browser)."""

    def create_pipeline(self, wgsl: str, entry_point: str, constants: dict[str, float]) -> Pipeline:
        """Compile `entry_point` of `wgsl` with the given override constants."""

    def create_texels(self, size: int, label: str = "") -> Texels:
        """Zeroed texels for a tensor of `size` bytes: whole rows of TEXELS_A_ROW, a texture that kernels read
        sampled or as a read-only storage texture (storage_texels), texel_repack.wgsl writes and copies fill."""

    def create_bind_group(
        self, pipeline: Pipeline, buffers: list[Buffer | tuple[Buffer, int, int] | Texels | None]
    ) -> BindGroup:
        """Bind `buffers` (or `(buffer, offset, size)` ranges, or texels) to bindings 0..n-1 of group 0; None
        skips a binding number the pipeline does not use."""

    def plan(self, dispatches: list[tuple[Pipeline, BindGroup, tuple[int, int, int]]]) -> Plan:
        """Dispatches (pipeline, bind group, groups) made ready to record again and again with the least
        work on the host: a decode step records the same ~300 every token."""

    def recorder(self) -> Recorder:
        """Start recording a command buffer."""

    def submit(self, recorder: Recorder) -> None:
        """Finish and submit a recorded command buffer."""

    async def read_buffer(self, buffer: Buffer, offset: int = 0, size: int | None = None) -> memoryview:
        """Copy a range of `buffer` back to the host once the GPU has finished with it."""

    def start_read(
        self, buffer: Buffer, offset: int = 0, size: int | None = None, recorder: Recorder | None = None
    ) -> Awaitable[memoryview]:
        """Submit the copy-back of a range of `buffer` now (later submits may then overwrite it); await
        the result when it is needed. Every started read must be awaited: that frees its staging buffer.
        With a recorder, the copy is recorded at its end and submitted with it: one submission, not two."""


async def open_device() -> Device:
    """Open the best device where the engine runs: the browser's WebGPU on Pyodide, wgpu-py elsewhere."""
    import sys

    if sys.platform == "emscripten":
        from .browser import open_browser_device

        return await open_browser_device()
    from .native import open_native_device

    return await open_native_device()
