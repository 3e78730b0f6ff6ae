"""A real bridge on 127.0.0.1, run on its own event loop in a thread, and an echo provider that speaks the
provider protocol over a real websocket: engine/host.py's Host over an engine that answers each conversation
with its last user message, one word per token. (The bridge tests and the browser's bridge test use them.)"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from websockets.asyncio.client import connect

from bridge.hub import Hub
from bridge.security import ensure_token, extension_origin
from bridge.server import BridgeServer
from engine.host import Host


class BridgeThread:
    """A BridgeServer on port 0 with its hub, on an event loop in a background thread."""

    def __init__(self, token_file, port: int = 0):
        self.token_file = token_file
        self.token = ensure_token(token_file)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bridge", daemon=True)
        self.thread.start()
        self.hub = self.call(_make(Hub))
        self.server = BridgeServer(self.hub, self.token, extension_origin(), port=port)
        self.call(self.server.start())
        self.url = f"ws://127.0.0.1:{self.server.port}"
        self.http = f"http://127.0.0.1:{self.server.port}"

    def call(self, coroutine: Coroutine, timeout: float = 60) -> Any:
        """Run a coroutine on the bridge's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.call(self._shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


    async def _shutdown(self) -> None:
        await self.server.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.loop.shutdown_asyncgens()


async def _make(factory):
    return factory()


@dataclass(frozen=True)
class Chunk:
    token_id: int | None
    text: str
    finish_reason: str | None = None


class EchoEngine:
    """Answers with the last user message, word by word (`delay` seconds a word, after `gate` opens).
    `served` lists the answers in the order they started; `closed_early` those stopped before their end."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.gate: asyncio.Event | None = None
        self.served: list[str] = []
        self.closed_early: list[str] = []
        info = SimpleNamespace(vendor="test", device="echo")
        kernels = SimpleNamespace(kv_f16=False, f16_prompts=False, q8_prompts=False, tiles=False,
                                  prompts_on_matrices=False)
        self.model = SimpleNamespace(n_ctx=1 << 20, n_seqs=1, device=SimpleNamespace(info=info), kernels=kernels)
        self.metadata = {"general.name": "Echo 1"}

    def chat_prompt(self, messages: list[dict]) -> list[int]:
        return list(messages[-1]["content"].encode())

    async def generate(self, prompt_ids: list[int], options):
        text = bytes(prompt_ids).decode()
        words = [w + " " for w in text.split(" ")]
        self.served.append(text)
        finished = False
        try:
            if self.gate is not None:
                await self.gate.wait()
            for i, word in enumerate(words[: options.max_tokens]):
                await asyncio.sleep(self.delay)
                yield Chunk(i, word)
            finished = True
            yield Chunk(None, "", "stop" if len(words) <= options.max_tokens else "length")
        finally:
            if not finished:
                self.closed_early.append(text)


class EchoProvider:
    """A provider over a real websocket: hello, then a Host's messages both ways (as the extension does)."""

    def __init__(self, bridge: BridgeThread, engine: EchoEngine):
        self.bridge, self.engine = bridge, engine
        self.ws = None
        self.task = None

    async def start(self) -> None:
        headers = {"Authorization": f"Bearer {self.bridge.token}"}
        self.ws = await connect(self.bridge.url, additional_headers=headers)
        await self.ws.send(json.dumps({"kind": "hello", "id": None, "content": {"role": "provider"}}))
        self.task = asyncio.create_task(self._run())
        while not any(not p.native for p in self.bridge.hub.providers):
            await asyncio.sleep(0.001)

    async def _run(self) -> None:
        # As extension/bridge_link.js does: the Host has a first client (the panel, which says nothing here),
        # and the bridge is a client of its own, greeted with `hello`.
        outbox: asyncio.Queue = asyncio.Queue()
        host = Host(engine=self.engine)
        host.connect(lambda message: None)
        link = host.connect_json(outbox.put_nowait)

        async def pump():
            while True:
                await self.ws.send(await outbox.get())

        pumping = asyncio.create_task(pump())
        try:
            async for message in self.ws:
                link.receive(message)
        finally:
            link.close()
            pumping.cancel()
            if host._worker is not None:  # the document is gone, and its engine with it
                host._worker.cancel()

    async def stop(self) -> None:
        """Vanish, as a closed offscreen document does."""
        self.ws.transport.abort()
        await asyncio.gather(self.task, return_exceptions=True)


