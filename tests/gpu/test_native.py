"""The native backend's read-backs (engine/gpu/native.py), on whatever adapter wgpu-py opens."""

from __future__ import annotations

import asyncio
import struct

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
