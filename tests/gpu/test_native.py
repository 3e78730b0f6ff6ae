"""The native backend's read-backs (engine/gpu/native.py), on whatever adapter wgpu-py opens."""

from __future__ import annotations

import asyncio
import struct

import pytest

from engine.gpu import open_device


def test_started_reads_see_the_buffer_as_it_was_and_may_be_awaited_in_any_order():
    """Greedy decoding starts a token's read-back, then submits the next step, which overwrites it."""

    async def scenario():
        device = await open_device()
        buffer, later = device.create_buffer(16), device.create_buffer(16)
        device.write_buffer(buffer, struct.pack("<4I", 1, 2, 3, 4))
        first = device.start_read(buffer, 4, 8)
        device.write_buffer(later, struct.pack("<4I", 9, 8, 7, 6))
        rec = device.recorder()
        rec.copy(later, 0, buffer, 0, 16)  # a later submit overwrites what the first read copies
        device.submit(rec)
        second = device.start_read(buffer)  # in flight with the first: its own staging buffer
        got_second = bytes(await second)
        got_first = bytes(await first)
        again = bytes(await device.read_buffer(buffer, 8, 4))  # staging buffers go back to use
        return got_first, got_second, again

    first, second, again = asyncio.run(scenario())
    assert struct.unpack("<2I", first) == (2, 3)
    assert struct.unpack("<4I", second) == (9, 8, 7, 6)
    assert struct.unpack("<I", again) == (7,)


def test_a_read_recorded_with_work_sees_that_work_and_not_what_comes_after():
    """Greedy decoding records its steps' token read at their end (start_read's recorder): one submission that
    reads what its own commands wrote, before the next submission overwrites it."""

    async def scenario():
        device = await open_device()
        source, tokens = device.create_buffer(16), device.create_buffer(16)
        device.write_buffer(source, struct.pack("<4I", 5, 6, 7, 8))
        device.write_buffer(tokens, struct.pack("<4I", 0, 0, 0, 0))
        rec = device.recorder()
        rec.copy(source, 4, tokens, 0, 8)  # the "steps": their tokens land in `tokens`
        read = device.start_read(tokens, 0, 12, rec)  # submits rec with the read's copy at its end
        device.write_buffer(source, struct.pack("<4I", 1, 1, 1, 1))
        after = device.recorder()
        after.copy(source, 0, tokens, 0, 16)  # the next submission overwrites them
        device.submit(after)
        return struct.unpack("<3I", bytes(await read)), struct.unpack("<4I", bytes(await device.read_buffer(tokens)))

    got, later = asyncio.run(scenario())
    assert got == (6, 7, 0)
    assert later == (1, 1, 1, 1)


_REVERSED_SCALED = """
@group(0) @binding(0) var<storage, read_write> data: array<f32>;
var<workgroup> staged: array<f32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) i: u32) {
    staged[63u - i] = data[i];
    workgroupBarrier();
    var lanes = array<f32, 4>(1.0, 2.0, 3.0, 4.0);
    for (var k = 0u; k < 4u; k++) { lanes[k] *= staged[63u - i]; }
    data[i] = lanes[i % 4u];
}
"""


def _run_reversed_scaled(checked: bool) -> tuple[list[float], bool]:
    """_REVERSED_SCALED on 0..63 through create_pipeline(checked=...), and whether the module skipped naga's checks."""
    from engine.gpu import native

    async def scenario():
        device = await open_device()
        made = []
        real = native._UNCHECKED_MODULE

        def spy(gpu_device, wgsl):
            made.append(wgsl)
            return real(gpu_device, wgsl)

        native._UNCHECKED_MODULE = spy if real is not None else None
        try:
            pipeline = device.create_pipeline(_REVERSED_SCALED, "main", {}, checked=checked)
        finally:
            native._UNCHECKED_MODULE = real
        data = device.create_buffer(256)
        device.write_buffer(data, struct.pack("<64f", *range(64)))
        rec = device.recorder()
        rec.dispatch(pipeline, device.create_bind_group(pipeline, [data]), (1, 1, 1))
        device.submit(rec)
        return list(struct.unpack("<64f", bytes(await device.read_buffer(data)))), bool(made)

    return asyncio.run(scenario())


def test_an_unchecked_module_computes_what_a_checked_one_does():
    """Kernels' UNCHECKED_SHADERS compile without naga's index clamps and loop counters on Vulkan (lavapipe here):
    the same results, workgroup and local arrays alike."""
    want = [(i % 4 + 1) * float(i) for i in range(64)]
    checked, skipped_checks = _run_reversed_scaled(checked=True)
    unchecked, unchecked_made = _run_reversed_scaled(checked=False)
    assert checked == want and unchecked == want
    assert not skipped_checks
    assert unchecked_made  # wgpu-py exposes wgpuDeviceCreateShaderModuleTrusted and the adapter is Vulkan's


def test_an_unchecked_module_still_reports_its_compile_errors():
    async def scenario():
        device = await open_device()
        device.create_pipeline(_REVERSED_SCALED.replace("staged[63u - i] = data[i];", "staged[63u - i] = nothing;"),
                               "main", {}, checked=False)

    with pytest.raises(Exception, match="nothing"):
        asyncio.run(scenario())
