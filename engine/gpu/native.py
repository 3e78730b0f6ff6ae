"""The native backend of the GPU seam: WebGPU through wgpu-py (Vulkan, Metal, D3D12; lavapipe on CPUs)."""

from __future__ import annotations

import asyncio

import wgpu

from ..errors import GpuUnavailable
from . import STORAGE, TEXEL_BYTES, TEXELS_A_ROW, UNIFORM, AdapterInfo, Texels, texel_copies, texel_rows

_USAGE = {
    STORAGE: wgpu.BufferUsage.STORAGE | wgpu.BufferUsage.COPY_DST | wgpu.BufferUsage.COPY_SRC,
    UNIFORM: wgpu.BufferUsage.UNIFORM | wgpu.BufferUsage.COPY_DST,
}
# wgpu-native names two features differently from the WebGPU spec, which is the engine's vocabulary.
_FEATURE_NAMES = {"shader-f16": "shader-f16", "subgroup": "subgroups", "subgroups": "subgroups"}
# Directives the browser's compiler (Tint) requires but naga does not implement yet: naga takes the
# subgroup builtins without `enable subgroups;` and rejects the directive; it knows no such rule.
_NAGA_UNSUPPORTED = ("enable subgroups;", "diagnostic(off, subgroup_uniformity);")


def _native_calls():
    """wgpu-native's own compute-pass functions, if this wgpu-py (pinned in pyproject.toml) exposes them.

    A decode step records ~300 dispatches, and wgpu-py's set_bind_group builds a cffi array of dynamic offsets
    and a keep-alive entry on every call (~10 us on a slow CPU: most of a small model's time per token). The
    engine never uses dynamic offsets, and its ops hold their pipelines and bind groups for as long as the model
    lives, so the recorder calls the C functions itself. Errors still surface through the device's error scope
    at submit. None: some other wgpu-py; the public methods are used."""
    try:
        from wgpu.backends.wgpu_native._ffi import ffi, lib

        return (lib.wgpuComputePassEncoderSetPipeline, lib.wgpuComputePassEncoderSetBindGroup,
                lib.wgpuComputePassEncoderDispatchWorkgroups, ffi.NULL)  # fmt: skip
    except (ImportError, AttributeError):
        return None


_CALLS = _native_calls()


def _submission_calls():
    """wgpu-native's submit-for-index and poll-until-index, if this wgpu-py exposes them.

    A read must not wait for work submitted after it. wgpu-py resolves a buffer's map_async from a thread that
    blocks in wgpuDevicePoll(wait) on the newest submission: a read of step k that the host awaits after
    submitting step k + 1 (the engine runs a step ahead) resolved only when k + 1 had finished too, so the
    GPU sat idle while the host took token k and recorded k + 2 (lavapipe: a read of the first of two
    submitted prefills resolved with the second, at 2.2x the time of one; so did its map_async, which first
    submits an empty command buffer and resolves after it). So reads wait for their own submission's index,
    in a worker thread, then map without that submission. None: some other wgpu-py; map_async alone."""
    try:
        from wgpu.backends.wgpu_native._ffi import ffi, lib

        return lib.wgpuQueueSubmitForIndex, lib.wgpuDevicePoll, ffi
    except (ImportError, AttributeError):
        return None


_SUBMISSIONS = _submission_calls()


def _unchecked_module_call():
    """A function making a shader module without naga's runtime checks (wgpu-native's
    wgpuDeviceCreateShaderModuleTrusted with none), if this wgpu-py exposes it.

    naga clamps every dynamic index of a local or workgroup array, vector or matrix, and bounds every loop with
    a counter of its own; on an H200 that cost the products and attention 8-15 % (NOTES.md, session 22). On
    Vulkan, buffer accesses are guarded by the driver either way (wgpu enables robustBufferAccess2, and naga then
    leaves buffers to it), so what an unchecked module gives up is only the guard on indices the shader computes
    itself: Kernels asks for one only for shaders whose indices stay in range by construction (kernels.py's
    UNCHECKED_SHADERS). None: some other wgpu-py; every module is checked."""
    try:
        from wgpu.backends.wgpu_native import _api
        from wgpu.backends.wgpu_native._ffi import ffi, lib

        # (libf: errors raise, as wgpu-py's own calls; 0 is WGPUShaderRuntimeChecks_None)
        create, no_checks = _api.libf.wgpuDeviceCreateShaderModuleTrusted, 0
        sstype, new_struct_p, string_view = lib.WGPUSType_ShaderSourceWGSL, _api.new_struct_p, _api.to_c_string_view
    except (ImportError, AttributeError):
        return None

    def unchecked_module(device: wgpu.GPUDevice, wgsl: str):
        source = new_struct_p("WGPUShaderSourceWGSL *", code=string_view(wgsl))
        source[0].chain.next = ffi.NULL
        source[0].chain.sType = sstype
        descriptor = new_struct_p("WGPUShaderModuleDescriptor *", label=string_view(""),
                                  nextInChain=ffi.cast("WGPUChainedStruct *", source))
        handle = create(device._internal, descriptor, no_checks)
        if handle == ffi.NULL:
            raise RuntimeError("shader module creation failed")
        return _api.GPUShaderModule("", handle, device)

    return unchecked_module


_UNCHECKED_MODULE = _unchecked_module_call()


class NativeRecorder:
    """Records into one command encoder, opening a compute pass lazily so copies can sit between passes."""

    def __init__(self, device: wgpu.GPUDevice):
        self.encoder = device.create_command_encoder()
        self._pass = None

    def dispatch(self, pipeline, bind_group, groups):
        if self._pass is None:
            self._pass = self.encoder.begin_compute_pass()
        if _CALLS is None:
            self._pass.set_pipeline(pipeline)
            self._pass.set_bind_group(0, bind_group)
            self._pass.dispatch_workgroups(*groups)
            return
        set_pipeline, set_bind_group, dispatch, null = _CALLS
        handle = self._pass._internal
        set_pipeline(handle, pipeline._internal)
        set_bind_group(handle, 0, bind_group._internal, 0, null)
        dispatch(handle, *groups)

    def replay(self, plan: NativePlan):
        if _CALLS is None:
            for pipeline, bind_group, groups in plan.dispatches:
                self.dispatch(pipeline, bind_group, groups)
            return
        if self._pass is None:
            self._pass = self.encoder.begin_compute_pass()
        set_pipeline, set_bind_group, dispatch, null = _CALLS
        handle = self._pass._internal
        for pipeline, bind_group, x, y, z in plan.handles:
            set_pipeline(handle, pipeline)
            set_bind_group(handle, 0, bind_group, 0, null)
            dispatch(handle, x, y, z)

    def copy(self, src, src_offset, dst, dst_offset, size):
        self._end_pass()
        self.encoder.copy_buffer_to_buffer(src, src_offset, dst, dst_offset, size)

    def copy_to_texels(self, src, texels):
        self._end_pass()
        for offset, origin_row, extent in texel_copies(texels.size):
            source = {
                "buffer": src,
                "offset": offset,
                "bytes_per_row": TEXELS_A_ROW * TEXEL_BYTES,
                "rows_per_image": extent[1],
            }
            self.encoder.copy_buffer_to_texture(
                source, {"texture": texels.texture, "origin": (0, origin_row, 0)}, extent
            )

    def _end_pass(self):
        if self._pass is not None:
            self._pass.end()
            self._pass = None

    def finish(self):
        self._end_pass()
        return self.encoder.finish()


class NativePlan:
    """Dispatches as wgpu-native's handles (the wgpu-py objects kept alive alongside): replaying one is three
    C calls a dispatch, without the engine's ops in between (a decode step's recording 2.4 -> 1.3 ms on a
    slow 2-core CPU)."""

    def __init__(self, dispatches: list):
        self.dispatches = tuple(dispatches)
        self.handles = tuple((p._internal, b._internal, *groups) for p, b, groups in self.dispatches)


class NativeDevice:
    """A wgpu-py device behind the seam's interface."""

    def __init__(self, adapter: wgpu.GPUAdapter, device: wgpu.GPUDevice, info: AdapterInfo):
        self.adapter = adapter
        self.device = device
        self.info = info
        # CPU adapters (lavapipe): a decode step of SmolLM2-135M submitted to an idle queue returns in under 1 ms,
        # the read's copy submitted after it only once the step is done (52-88 ms; NOTES.md, session 25)
        self.submit_blocks = info.is_software
        self.storage_texels = True  # (lavapipe's texel loads in line: NOTES.md, session 26)
        self._staging_free: list[wgpu.GPUBuffer] = []  # map-readable buffers no read is using
        # Only Vulkan guards buffers in the driver (see _unchecked_module_call): elsewhere every module is checked.
        self._unchecked_backend = adapter.info.get("backend_type", "") == "Vulkan"

    def create_buffer(self, size, role=STORAGE, label=""):
        return self.device.create_buffer(size=_round4(max(size, 4)), usage=_USAGE[role], label=label)

    def create_texels(self, size, label=""):
        usage = wgpu.TextureUsage.TEXTURE_BINDING | wgpu.TextureUsage.STORAGE_BINDING | wgpu.TextureUsage.COPY_DST
        texture = self.device.create_texture(
            size=(TEXELS_A_ROW, texel_rows(size), 1), format="rgba32uint", usage=usage, label=label
        )
        return Texels(texture, texture.create_view(), size)

    def write_buffer(self, buffer, data, offset=0):
        view = memoryview(data).cast("B")
        if len(view) % 4:  # WebGPU copies whole words; pad the tail instead of failing
            view = memoryview(bytes(view) + bytes(4 - len(view) % 4))
        self.device.queue.write_buffer(buffer, offset, view)

    def create_pipeline(self, wgsl, entry_point, constants, checked=True):
        """checked=False: on Vulkan, the module without naga's runtime checks (see _unchecked_module_call), for
        shaders whose own indices stay in range by construction."""
        for directive in _NAGA_UNSUPPORTED:
            wgsl = wgsl.replace(directive, "")
        if not checked and self._unchecked_backend and _UNCHECKED_MODULE is not None:
            module = _UNCHECKED_MODULE(self.device, wgsl)
        else:
            module = self.device.create_shader_module(code=wgsl)
        compute = {"module": module, "entry_point": entry_point}
        if constants:
            compute["constants"] = dict(constants)
        return self.device.create_compute_pipeline(layout="auto", compute=compute)

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
        return self.device.create_bind_group(layout=pipeline.get_bind_group_layout(0), entries=entries)

    def plan(self, dispatches):
        return NativePlan(dispatches)

    def recorder(self):
        return NativeRecorder(self.device)

    def submit(self, recorder):
        self._submit(recorder.finish())

    def _submit(self, command_buffer) -> int | None:
        """Submit one command buffer; its submission index where wgpu-native gives one."""
        if _SUBMISSIONS is None:
            self.device.queue.submit([command_buffer])
            return None
        submit_for_index, _poll, ffi = _SUBMISSIONS
        handles = ffi.new("WGPUCommandBuffer[]", [command_buffer._internal])
        return submit_for_index(self.device.queue._internal, 1, handles)

    def _wait_for(self, index: int) -> None:
        """Block until submission `index` is done (and the ones before it), not the ones after it."""
        _submit, poll, ffi = _SUBMISSIONS
        poll(self.device._internal, True, ffi.new("WGPUSubmissionIndex *", index))

    async def read_buffer(self, buffer, offset=0, size=None):
        return await self.start_read(buffer, offset, size)

    def start_read(self, buffer, offset=0, size=None, recorder=None):
        size = buffer.size - offset if size is None else size
        padded = _round4(size)
        staging = self._staging(padded)
        recorder = recorder or self.recorder()
        recorder.copy(buffer, offset, staging, 0, padded)
        index = self._submit(recorder.finish())
        mapped = staging.map_async(wgpu.MapMode.READ, 0, padded) if index is None else None

        async def result() -> memoryview:
            try:
                if mapped is None:  # the copy's own submission, then the map (which that leaves ready)
                    await asyncio.to_thread(self._wait_for, index)
                    # (without wgpu-py's empty "sync" submission before a read's map, queued after all the
                    # rest: the copy it guards against reading too early is done)
                    await staging.map_async("READ_NOSYNC", 0, padded)
                else:
                    await mapped
                return memoryview(staging.read_mapped(0, padded))[:size]
            finally:
                staging.unmap()
                self._staging_free.append(staging)

        return result()

    def _staging(self, size: int) -> wgpu.GPUBuffer:
        """A map-readable buffer of at least `size` bytes that no read in flight is using."""
        for i, staging in enumerate(self._staging_free):
            if staging.size >= size:
                return self._staging_free.pop(i)
        usage = wgpu.BufferUsage.MAP_READ | wgpu.BufferUsage.COPY_DST
        return self.device.create_buffer(size=max(size, 1 << 16), usage=usage)


def _round4(n: int) -> int:
    return (n + 3) & ~3


async def open_native_device() -> NativeDevice:
    """Open the highest-performance adapter wgpu-py finds, with the features the kernels can use."""
    try:
        adapter = await wgpu.gpu.request_adapter_async(power_preference="high-performance")
    except RuntimeError as e:  # wgpu-native reports "no suitable adapter" as a failed request
        raise GpuUnavailable(f"no WebGPU adapter found ({_last_line(e)}); install mesa-vulkan-drivers for a CPU "
                             "device") from None  # fmt: skip
    if adapter is None:
        raise GpuUnavailable("no WebGPU adapter found (install mesa-vulkan-drivers for a CPU device)")
    wanted = [name for name in adapter.features if name in _FEATURE_NAMES]
    limits = adapter.limits
    wanted_limits = ("max-storage-buffer-binding-size", "max-buffer-size", "max-texture-dimension-2d",
                     "max-compute-workgroup-storage-size")
    required_limits = {name: limits[name] for name in wanted_limits if name in limits}
    device = await adapter.request_device_async(required_features=wanted, required_limits=required_limits)
    raw = adapter.info
    info = AdapterInfo(
        vendor=raw.get("vendor", ""),
        device=raw.get("device", ""),
        is_software=raw.get("adapter_type", "").lower() == "cpu",
        features=frozenset(_FEATURE_NAMES[name] for name in wanted),
        max_storage_binding=limits.get("max-storage-buffer-binding-size", 1 << 27),
        max_buffer_size=limits.get("max-buffer-size", 1 << 28),
        max_texture_2d=limits.get("max-texture-dimension-2d", 8192),
        max_workgroup_storage=limits.get("max-compute-workgroup-storage-size", 16384),
        # (wgpu-py 0.32 spells it "stackgroup"; wgpu reports 4 where the driver does not say: lavapipe's is 8)
        subgroup_min_size=raw.get("subgroup_min_size", raw.get("stackgroup_min_size", 0)),
    )
    return NativeDevice(adapter, device, info)


def _last_line(error: BaseException) -> str:
    """wgpu-native's own reason, which it puts on the last line of a long message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
