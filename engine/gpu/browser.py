"""The browser backend of the GPU seam: WebGPU through Pyodide's `js` FFI (navigator.gpu).

Mirrors native.py call for call; WebGPU's JS API takes camelCase plain objects, so descriptors are
converted with `Object.fromEntries`. Weights arrive as JS typed arrays (views of the model's
chunks, extension/model_bytes.js) and go to `writeBuffer` as they are, never through the wasm heap.
"""

from __future__ import annotations

import js  # type: ignore[import-not-found]  # exists only on Pyodide
from pyodide.ffi import create_proxy, jsnull, to_js  # type: ignore[import-not-found]

from ..errors import GpuUnavailable
from . import (
    STORAGE,
    SUBGROUP_MATRIX,
    TEXEL_BYTES,
    TEXELS_A_ROW,
    UNIFORM,
    AdapterInfo,
    Texels,
    texel_copies,
    texel_rows,
)

# GPUBufferUsage / GPUMapMode flags (numbers from the WebGPU spec).
_MAP_READ, _COPY_SRC, _COPY_DST, _UNIFORM, _STORAGE = 0x1, 0x4, 0x8, 0x40, 0x80
_USAGE = {STORAGE: _STORAGE | _COPY_DST | _COPY_SRC, UNIFORM: _UNIFORM | _COPY_DST}
_TEXTURE_COPY_DST, _TEXTURE_BINDING, _TEXTURE_STORAGE_BINDING = 0x2, 0x4, 0x8  # GPUTextureUsage
_FEATURES = ("shader-f16", "subgroups")


def _f16_matrices(adapter) -> bool:
    """Whether the adapter offers SUBGROUP_MATRIX with f16 x f16 -> f32 16x16x16 (and shader-f16 and subgroups,
    which that needs): Chromium with --enable-webgpu-developer-features on GPUs with tensor cores."""
    if not all(adapter.features.has(name) for name in (SUBGROUP_MATRIX, *_FEATURES)):
        return False
    configs = getattr(adapter.info, "subgroupMatrixConfigs", None)
    return any(c.componentType == "f16" and c.resultComponentType == "f32" and int(c.M) == int(c.N) == int(c.K) == 16
               for c in (configs or ()))


def _js(value):
    """A Python dict/list as plain JS objects/arrays, as WebGPU descriptors must be."""
    return to_js(value, dict_converter=js.Object.fromEntries)


def _replay_in_js():
    """The host page's function recording a plan (a JS array of [pipeline, bind group, x, y, z]) into a
    pass, if it has one: one call from Python a step instead of three a dispatch, each crossing Pyodide's
    FFI. The page defines it (extension/replay.js): an extension's CSP forbids making it from a string."""
    return getattr(js, "hearthReplay", None)


class BrowserRecorder:
    """Records into one GPUCommandEncoder, opening a compute pass lazily (copies sit between passes)."""

    def __init__(self, device):
        self.encoder = device.createCommandEncoder()
        self._pass = None

    def dispatch(self, pipeline, bind_group, groups):
        if self._pass is None:
            self._pass = self.encoder.beginComputePass()
        self._pass.setPipeline(pipeline)
        self._pass.setBindGroup(0, bind_group)
        self._pass.dispatchWorkgroups(*groups)

    def replay(self, plan):
        if self._pass is None:
            self._pass = self.encoder.beginComputePass()
        replay = _replay_in_js()
        if replay is None:
            for pipeline, bind_group, groups in plan:
                self.dispatch(pipeline, bind_group, groups)
        else:
            replay(self._pass, plan)

    def copy(self, src, src_offset, dst, dst_offset, size):
        self._end_pass()
        self.encoder.copyBufferToBuffer(src, src_offset, dst, dst_offset, size)

    def copy_to_texels(self, src, texels):
        self._end_pass()
        for offset, origin_row, extent in texel_copies(texels.size):
            source = {
                "buffer": src,
                "offset": offset,
                "bytesPerRow": TEXELS_A_ROW * TEXEL_BYTES,
                "rowsPerImage": extent[1],
            }
            target = {"texture": texels.texture, "origin": [0, origin_row, 0]}
            self.encoder.copyBufferToTexture(_js(source), _js(target), _js(list(extent)))

    def _end_pass(self):
        if self._pass is not None:
            self._pass.end()
            self._pass = None

    def finish(self):
        self._end_pass()
        return self.encoder.finish()


class BrowserDevice:
    """A navigator.gpu device behind the seam's interface."""

    def __init__(self, adapter, device, info: AdapterInfo):
        self.adapter, self.device, self.info = adapter, device, info
        self.submit_blocks = False  # the GPU process runs the queue, SwiftShader's too
        self.storage_texels = False  # SwiftShader's products 22-25 % slower from storage texels (NOTES.md, session 26)
        self._staging_free = []  # map-readable buffers no read is using

    def create_buffer(self, size, role=STORAGE, label=""):
        return self.device.createBuffer(_js({"size": _round4(max(size, 4)), "usage": _USAGE[role], "label": label}))

    def create_texels(self, size, label=""):
        descriptor = {
            "size": [TEXELS_A_ROW, texel_rows(size), 1],
            "format": "rgba32uint",
            "usage": _TEXTURE_BINDING | _TEXTURE_STORAGE_BINDING | _TEXTURE_COPY_DST,
            "label": label,
        }
        texture = self.device.createTexture(_js(descriptor))
        return Texels(texture, texture.createView(), size)

    def write_buffer(self, buffer, data, offset=0):
        if isinstance(data, bytes | bytearray | memoryview):
            raw = bytes(data)
            if len(raw) % 4:
                raw += bytes(4 - len(raw) % 4)
            data = to_js(memoryview(raw))  # a copy out of the wasm heap: small host data (ids, params) only
        elif data.byteLength % 4:  # a JS view of the model whose length is not whole words: pad a copy
            padded = js.Uint8Array.new(_round4(data.byteLength))
            padded.set(data)
            data = padded
        self.device.queue.writeBuffer(buffer, offset, data)

    def create_pipeline(self, wgsl, entry_point, constants, checked=True):
        """(checked: the browser's compiler always guards indices; see the native device's.)"""
        module = self.device.createShaderModule(_js({"code": wgsl}))
        compute = {"module": module, "entryPoint": entry_point}
        if constants:
            compute["constants"] = dict(constants)
        return self.device.createComputePipeline(_js({"layout": "auto", "compute": compute}))

    def create_bind_group(self, pipeline, buffers):
        entries = []
        for binding, item in enumerate(buffers):
            if item is None:  # a binding the pipeline leaves out
                continue
            if isinstance(item, Texels):
                entries.append({"binding": binding, "resource": item.view})
                continue
            buffer, offset, size = item if isinstance(item, tuple) else (item, 0, item.size)
            entries.append({"binding": binding, "resource": {"buffer": buffer, "offset": offset, "size": size}})
        return self.device.createBindGroup(_js({"layout": pipeline.getBindGroupLayout(0), "entries": entries}))

    def plan(self, dispatches):
        if _replay_in_js() is None:
            return list(dispatches)
        return to_js([[pipeline, bind_group, *groups] for pipeline, bind_group, groups in dispatches])

    def recorder(self):
        return BrowserRecorder(self.device)

    def submit(self, recorder):
        self.device.queue.submit(_js([recorder.finish()]))

    async def read_buffer(self, buffer, offset=0, size=None):
        return await self.start_read(buffer, offset, size)

    def start_read(self, buffer, offset=0, size=None, recorder=None):
        size = buffer.size - offset if size is None else size
        padded = _round4(size)
        staging = self._staging(padded)
        recorder = recorder or self.recorder()
        recorder.copy(buffer, offset, staging, 0, padded)
        self.device.queue.submit(_js([recorder.finish()]))
        mapped = staging.mapAsync(_MAP_READ, 0, padded)

        async def result() -> memoryview:
            try:
                await mapped
                # One bulk copy out of the mapped range: never element by element through the FFI.
                return memoryview(js.Uint8Array.new(staging.getMappedRange(0, padded)).to_bytes())[:size]
            finally:
                staging.unmap()
                self._staging_free.append(staging)

        return result()

    def _staging(self, size: int):
        """A map-readable buffer of at least `size` bytes that no read in flight is using."""
        for i, staging in enumerate(self._staging_free):
            if staging.size >= size:
                return self._staging_free.pop(i)
        return self.device.createBuffer(_js({"size": max(size, 1 << 16), "usage": _MAP_READ | _COPY_DST}))


def _round4(n: int) -> int:
    return (n + 3) & ~3


class ModelBytesSource:
    """The model's bytes as the extension's model_bytes.js holds them, in chunks of JS memory (gguf.ByteSource):
    the header is copied into Python, tensors are handed to `write_buffer` as Uint8Array views (a copy in JS
    only where a tensor straddles two chunks), so weights never enter the wasm heap."""

    def __init__(self, model_bytes):
        self.model_bytes = model_bytes
        self.size = int(model_bytes.size)

    def read(self, offset: int, n: int) -> bytes:
        return self.model_bytes.view(offset, n).to_bytes()

    def view(self, offset: int, n: int):
        return self.model_bytes.view(offset, n)


def _report_gpu_errors(device) -> None:
    """WebGPU reports validation errors and device loss asynchronously: surface them in the console."""

    def on_error(event):
        js.console.error(f"WebGPU error: {event.error.message}")

    device.addEventListener("uncapturederror", create_proxy(on_error))


async def open_browser_device() -> BrowserDevice:
    """Open the browser's WebGPU adapter with the features and limits the kernels can use."""
    # JS null arrives as `jsnull` (not None) in Pyodide 314; undefined as None.
    gpu = getattr(js.navigator, "gpu", None)
    if gpu is None or gpu is jsnull:
        raise GpuUnavailable("WebGPU is not available in this browser")
    adapter = await gpu.requestAdapter(_js({"powerPreference": "high-performance"}))
    if adapter is None or adapter is jsnull:
        raise GpuUnavailable("WebGPU found no adapter (is WebGPU enabled? see chrome://gpu)")
    features = [name for name in _FEATURES if adapter.features.has(name)]
    features += [SUBGROUP_MATRIX] if _f16_matrices(adapter) else []
    limits = adapter.limits
    required = {
        "maxStorageBufferBindingSize": limits.maxStorageBufferBindingSize,
        "maxBufferSize": limits.maxBufferSize,
        "maxTextureDimension2D": limits.maxTextureDimension2D,
        "maxComputeWorkgroupStorageSize": limits.maxComputeWorkgroupStorageSize,
    }
    device = await adapter.requestDevice(_js({"requiredFeatures": features, "requiredLimits": required}))
    _report_gpu_errors(device)
    raw = adapter.info
    description = f"{raw.vendor} {raw.architecture} {raw.device} {raw.description}".lower()
    info = AdapterInfo(
        vendor=str(raw.vendor),
        device=str(raw.device or raw.description or raw.architecture),
        # SwiftShader (Chromium's CPU fallback) and lavapipe behave alike: no barriers in hot loops.
        is_software=any(name in description for name in ("swiftshader", "llvmpipe", "lavapipe", "cpu")),
        features=frozenset(features),
        max_storage_binding=int(limits.maxStorageBufferBindingSize),
        max_buffer_size=int(limits.maxBufferSize),
        max_texture_2d=int(limits.maxTextureDimension2D),
        max_workgroup_storage=int(limits.maxComputeWorkgroupStorageSize),
        subgroup_min_size=int(getattr(raw, "subgroupMinSize", 0) or 0),  # (GPUAdapterInfo's since Chrome 134)
    )
    return BrowserDevice(adapter, device, info)
