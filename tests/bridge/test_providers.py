"""Providers as the hub sees them: liveness (a silent provider is dropped within seconds, its requests fail
with a named error, the slot frees at once) and one provider at a time while it answers."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.asyncio.client import connect

import bridge as hearth_bridge
from bridge import AsyncClient
from bridge.api import ChatCompletionRequest
from bridge.hub import PING_INTERVAL, PROVIDER_DEADLINE, Hub, Provider
from engine.protocol import Kind

from .harness import EchoEngine, EchoProvider

WITHIN = PROVIDER_DEADLINE + PING_INTERVAL + 1.5  # the deadline, one ping's lag, and slack for a busy machine


def ask(client: AsyncClient, text: str, **options):
    return client.chat.completions.create(model="echo", messages=[{"role": "user", "content": text}], **options)


async def _silent_provider(bridge):
    """A provider with the token that registers and then never says a word (nor reads one)."""
    ws = await connect(bridge.url, additional_headers={"Authorization": f"Bearer {bridge.token}"})
    await ws.send(json.dumps({"kind": "hello", "id": None, "content": {"role": "provider"}}))
    while not any(not p.native for p in bridge.hub.providers):
        await asyncio.sleep(0.01)
    return ws


def test_a_provider_that_never_answers_is_dropped_and_its_request_fails_named(bridge, provider):
    # (the `provider` fixture has taken the echo provider away: only the silent one is there)

    async def main():
        silent = await _silent_provider(bridge)
        started = time.monotonic()
        async with AsyncClient(bridge.url) as client:
            with pytest.raises(hearth_bridge.InternalServerError) as failed:
                await ask(client, "hello?", max_tokens=4)
        await silent.close()
        return failed.value.code, time.monotonic() - started

    code, seconds = asyncio.run(main())
    assert code == "provider_unresponsive" and seconds < WITHIN, (code, seconds)
    assert not bridge.hub.providers


def test_a_provider_silent_mid_stream_is_dropped_and_another_takes_over_at_once(bridge, provider):
    echo = provider(delay=0.05)

    async def main():
        async with AsyncClient(bridge.url) as client:
            stream = await ask(client, " ".join(["word"] * 200), stream=True, max_tokens=300)
            await stream.__anext__()
            echo.task.cancel()  # its document froze: the socket stays open, nothing is read or sent
            frozen = time.monotonic()
            with pytest.raises(hearth_bridge.InternalServerError) as failed:
                async for _ in stream:
                    pass
            dropped = time.monotonic() - frozen
        fresh = EchoProvider(bridge, EchoEngine())
        await fresh.start()  # registers at once: the slot was freed
        async with AsyncClient(bridge.url) as client:
            answer = await ask(client, "back", max_tokens=2)
        await fresh.stop()
        return failed.value.code, dropped, answer.choices[0].message.content

    code, dropped, text = asyncio.run(main())
    assert code == "provider_unresponsive" and dropped < WITHIN, (code, dropped)
    assert text == "back "


def test_a_second_provider_is_refused_while_the_first_answers(bridge, echo):
    async def main():
        await asyncio.sleep(2 * PING_INTERVAL)  # the first has answered pings meanwhile
        async with connect(bridge.url, additional_headers={"Authorization": f"Bearer {bridge.token}"}) as ws:
            await ws.send(json.dumps({"kind": "hello", "id": None, "content": {"role": "provider"}}))
            refusal = json.loads(await ws.recv())
            await ws.wait_closed()
        async with AsyncClient(bridge.url) as client:  # the first still serves
            return refusal, (await ask(client, "still here", max_tokens=2)).choices[0].message.content

    refusal, text = asyncio.run(main())
    assert refusal["kind"] == "error" and refusal["content"]["error"]["code"] == "provider_taken"
    assert text == "still here "


def test_a_provider_with_seats_is_given_that_many_requests_at_once():
    """A provider whose `ready` says seats=2 (a model holding several sequences: engine/host.py) serves two
    requests at once; the third goes to it when either ends, and its replies reach their own requests."""
    hub, sent = Hub(), []
    provider = Provider(name="test", send=sent.append)
    hub.add_provider(provider)
    hub.on_message(provider, {"kind": "ready", "id": None, "content": {"model": "m", "n_ctx": 64, "seats": 2}})
    body = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}])
    first, second, third = (hub.submit(key, body) for key in "abc")
    assert [m.id for m in sent if m.kind == Kind.CHAT] == [first.id, second.id]
    hub.on_message(provider, {"kind": "chunk", "id": second.id, "content": {"text": "yes", "token_id": 1}})
    hub.on_message(provider, {"kind": "done", "id": second.id, "content": {"finish_reason": "stop", "n_tokens": 1}})
    assert [m.id for m in sent if m.kind == Kind.CHAT] == [first.id, second.id, third.id]
    assert [kind for kind, _ in _drain(second.events)] == [Kind.CHUNK, Kind.DONE] and first.events.empty()
    hub.remove_provider(provider, "went away")
    assert [kind for kind, _ in _drain(first.events)] == [Kind.ERROR] == [kind for kind, _ in _drain(third.events)]


def _drain(queue: asyncio.Queue) -> list:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items
