"""Many clients, one provider: fair turns, streams that never mix, cancellation, and a provider that vanishes.

The echo provider answers each request with its own message word by word, so a stream that received
another request's words would show it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

import bridge as hearth_bridge
from bridge import AsyncClient
from bridge.fair_queue import FairQueue

from .harness import EchoEngine

ROOT = Path(__file__).resolve().parents[2]


def ask(client: AsyncClient, text: str, **options):
    return client.chat.completions.create(model="echo", messages=[{"role": "user", "content": text}], **options)


def test_fair_queue_takes_turns():
    queue = FairQueue()
    for i in range(3):
        queue.push("a", f"a{i}")
    queue.push("b", "b0")
    queue.push("c", "c0")
    queue.push("b", "b1")
    assert queue.remove("a", "a1") and not queue.remove("a", "zz")
    assert queue.drain() == ["a0", "b0", "c0", "a2", "b1"]
    assert len(queue) == 0 and queue.pop() is None


def test_16_clients_8_streams_each_never_mix(bridge, echo):
    async def client_run(n: int) -> list[tuple[str, str]]:
        async with AsyncClient(bridge.url) as client:
            streams = [ask(client, f"client{n} request{i} " + " ".join(f"w{n}.{i}.{k}" for k in range(12)),
                           stream=True, max_tokens=64) for i in range(8)]  # fmt: skip
            texts = await asyncio.gather(*(_text(s) for s in streams))
            return [(f"client{n} request{i} ", text) for i, text in enumerate(texts)]

    async def main():
        return await asyncio.gather(*(client_run(n) for n in range(16)))

    results = asyncio.run(main())
    assert sum(len(r) for r in results) == 128
    for n, runs in enumerate(results):
        for i, (prefix, text) in enumerate(runs):
            expected = prefix + " ".join(f"w{n}.{i}.{k}" for k in range(12)) + " "
            assert text == expected, (n, i, text)


async def _text(create) -> str:
    stream = await create
    parts = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
    assert stream.completion is not None and stream.completion.choices[0].message.content == "".join(parts)
    return "".join(parts)


def test_no_client_starves(bridge, provider):
    echo = provider()
    bridge.call(_close_gate(echo.engine))

    async def main():
        async with AsyncClient(bridge.url) as greedy, AsyncClient(bridge.url) as modest:
            many = [asyncio.ensure_future(ask(greedy, f"greedy {i}", max_tokens=4)) for i in range(8)]
            await asyncio.sleep(0.2)  # all eight queued (one already at the provider, waiting at the gate)
            one = asyncio.ensure_future(ask(modest, "modest 0", max_tokens=4))
            await asyncio.sleep(0.2)
            bridge.loop.call_soon_threadsafe(echo.engine.gate.set)
            await asyncio.gather(*many, one)

    asyncio.run(main())
    served = echo.engine.served
    assert len(served) == 9
    assert served.index("modest 0") <= 2, served  # behind the one in flight and at most one more: its turn


async def _close_gate(engine: EchoEngine):
    engine.gate = asyncio.Event()


def test_usage_and_stream_options(bridge, echo):
    async def main():
        async with AsyncClient(bridge.url) as client:
            answer = await ask(client, "one two three", max_tokens=2)
            assert answer.choices[0].message.content == "one two "
            assert answer.choices[0].finish_reason == "length"
            assert answer.usage.prompt_tokens == len(b"one two three") and answer.usage.completion_tokens == 2
            stream = await ask(client, "a b", stream=True, stream_options={"include_usage": True})
            chunks = [chunk async for chunk in stream]
            assert chunks[0].choices[0].delta.role == "assistant"
            assert chunks[-2].choices[0].finish_reason == "stop"
            assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 2
            models = await client.models.list()
            assert [m.id for m in models.data] == ["echo-1"]

    asyncio.run(main())


def test_client_disconnect_cancels_and_frees_the_model(bridge, provider):
    echo = provider(delay=0.05)
    long = " ".join(f"word{i}" for i in range(200))  # 10 s if nobody stops it

    async def main():
        client = AsyncClient(bridge.url)
        stream = await ask(client, long, stream=True, max_tokens=500)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content == "word2 ":
                break
        await client.close()  # gone mid-stream, without a word
        started = time.monotonic()
        async with AsyncClient(bridge.url) as other:
            answer = await ask(other, "next please", max_tokens=8)
        return answer, time.monotonic() - started

    answer, seconds = asyncio.run(main())
    assert answer.choices[0].message.content == "next please "
    assert seconds < 2, seconds  # the model was freed, not busy with the abandoned answer
    assert echo.engine.closed_early == [long]


def test_stop_frame_cancels_one_stream_only(bridge, provider):
    echo = provider(delay=0.02)

    async def main():
        async with AsyncClient(bridge.url) as client:
            doomed = await ask(client, " ".join(["doomed"] * 100), stream=True, max_tokens=200)
            kept = asyncio.ensure_future(ask(client, "kept answer", max_tokens=8))
            await doomed.__anext__()
            await doomed.close()  # sends `stop` for this id only
            return await kept

    answer = asyncio.run(main())
    assert answer.choices[0].message.content == "kept answer "
    assert len(echo.engine.closed_early) == 1


def test_vanishing_provider_fails_pending_requests_fast(bridge, provider):
    echo = provider(delay=0.05)

    async def main():
        async with AsyncClient(bridge.url) as client:
            running = await ask(client, " ".join(["slow"] * 200), stream=True, max_tokens=300)
            queued = asyncio.ensure_future(ask(client, "queued", max_tokens=4))
            await running.__anext__()
            await asyncio.sleep(0.1)
            gone = time.monotonic()
            bridge.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(echo.stop()))
            errors = []
            for pending in (_drain(running), queued):
                try:
                    await pending
                except hearth_bridge.InternalServerError as e:
                    errors.append((e.code, time.monotonic() - gone))
            return errors

    errors = asyncio.run(main())
    assert [code for code, _ in errors] == ["provider_disconnected", "no_provider"], errors
    assert all(seconds < 2 for _, seconds in errors), errors
    provider()  # a provider comes back: the bridge serves again

    async def again():
        async with AsyncClient(bridge.url) as client:
            return await ask(client, "back again", max_tokens=4)

    assert asyncio.run(again()).choices[0].message.content == "back again "


async def _drain(stream):
    async for _ in stream:
        pass


def test_without_a_provider_requests_fail_at_once(bridge, provider):
    async def main():
        async with AsyncClient(bridge.url) as client:
            with pytest.raises(hearth_bridge.InternalServerError) as failed:
                await ask(client, "anyone?")
            assert failed.value.code == "no_provider"
            assert (await client.models.list()).data == []

    asyncio.run(main())


def test_stop_of_a_running_request_ends_its_stream_cancelled_and_frees_its_id(bridge, provider):
    echo = provider(delay=0.02)
    chat = {"kind": "chat", "id": "x", "content": {"messages": [{"role": "user", "content": "go " * 300}],
                                                   "max_tokens": 400, "stream": True}}  # fmt: skip

    async def main():
        async with connect(bridge.url, additional_headers={"Authorization": f"Bearer {bridge.token}"}) as ws:
            await ws.send(json.dumps(chat))  # the first frame (the bridge greets with `hello` after it)
            while json.loads(await ws.recv())["kind"] != "chunk":
                pass
            stopped = time.monotonic()
            await ws.send(json.dumps({"kind": "stop", "id": "x"}))
            while (frame := json.loads(await ws.recv()))["kind"] == "chunk":
                pass
            ended = time.monotonic() - stopped
            again = {**chat, "content": {**chat["content"], "messages": [{"role": "user", "content": "again"}]}}
            await ws.send(json.dumps(again))  # the same id: released with the cancelled frame
            kinds = [json.loads(await ws.recv())["kind"] for _ in range(4)]
            return frame, ended, kinds

    frame, ended, kinds = asyncio.run(main())
    assert frame["kind"] == "error" and frame["id"] == "x" and frame["content"]["error"]["code"] == "cancelled"
    assert ended < 1, ended
    assert kinds == ["chunk", "chunk", "chunk", "done"], kinds  # role, "again ", finish; then the completion
    assert echo.engine.closed_early and echo.engine.served[-1] == "again"


_PROGRAM = """
import asyncio, sys
from bridge import AsyncClient

async def main(name, n):
    clients = [AsyncClient(sys.argv[3]) for _ in range(n)]  # n connections of one program
    answers = [c.chat.completions.create(model="echo", messages=[{"role": "user", "content": f"{name} {i}"}],
                                         max_tokens=2) for i, c in enumerate(clients)]
    await asyncio.gather(*answers)
    for c in clients:
        await c.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def test_fair_turns_count_programs_not_connections(bridge, provider, tmp_path):
    """A program with eight connections takes one turn, like a program with one (bridge/peers.py)."""
    echo = provider()
    bridge.call(_close_gate(echo.engine))
    env = {**os.environ, "HEARTH_BRIDGE_TOKEN_FILE": str(bridge.token_file)}

    def program(name: str, n: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", _PROGRAM, name, str(n), bridge.url], env=env, cwd=ROOT)

    def queued() -> int:
        return len(bridge.hub.queue) + sum(len(p.serving) for p in bridge.hub.providers)

    greedy = program("greedy", 8)
    _wait_for(lambda: queued() == 8)
    modest = program("modest", 1)
    _wait_for(lambda: queued() == 9)
    bridge.loop.call_soon_threadsafe(echo.engine.gate.set)
    assert greedy.wait(60) == 0 and modest.wait(60) == 0
    served = echo.engine.served
    assert len(served) == 9 and served.index("modest 0") <= 2, served


def _wait_for(condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
