"""The request host: one queue in front of the engine for every client, with replies routed by request id.

Clients (the side panel through the offscreen document, the local bridge) each `connect` with their own
`send` and get a `Connection`; what they send goes to `Connection.receive`. A request's replies go to the
client that asked; news about the model (load progress, ready, a failed load) goes to every client. The
messages are engine/protocol.py's. Nothing here imports `js`, so the same host runs (and is tested) natively.
"""

from __future__ import annotations

import asyncio
import json
import time
import traceback
from collections.abc import Callable
from typing import Any

from .config import DEFAULT_N_CTX, DEFAULT_SEATS
from .errors import HearthError, InvalidRequest, LoadError
from .protocol import FINAL_KINDS, REQUEST_KINDS, Kind, Message, RequestId, error, progress, sampling_options
from .sampler import SamplingOptions
from .summarize import Summarizer

Send = Callable[[Message], None]


class Connection:
    """One client of the host: what it sends, and the replies to its own requests."""

    def __init__(self, host: Host, send: Send):
        self.host, self.send = host, send

    def receive(self, data: str | dict[str, Any] | Message) -> None:
        """One message from this client: JSON text, plain data as it arrived, or a Message."""
        self.host.receive(self, data)

    def close(self) -> None:
        """The client is gone: its requests stop, so the model is free for the others."""
        self.host.disconnect(self)


class Host:
    """Owns the engine once loaded and serves queued requests in order, streaming their replies.

    The engine's own sequence (Engine.generate, which reuses the cached prefix of a conversation) serves
    one request at a time. When the model holds more sequences (Model.load's n_seqs), a chat request
    that arrives while that one is busy decodes alongside it through engine/streams.py instead, together
    with every other such request (continuous batching); `seats` in `ready` says how many run at once."""

    def __init__(self, engine: Any = None):
        self.engine = engine
        self.streams = _streams_of(engine)
        self.clients: list[Connection] = []
        self.owners: dict[RequestId, Connection] = {}  # every request not yet answered in full -> its client
        self.queue: asyncio.Queue[Message] = asyncio.Queue()
        self.stopped: set[RequestId] = set()
        self.busy: RequestId | None = None  # the request the engine's own sequence serves
        self._own = asyncio.Lock()  # the engine's own sequence
        self._serving: set[asyncio.Task] = set()  # every request being served
        self.failure: str | None = None  # why the model failed to load; requests then fail with it
        # The last news about the model, for clients that ask (`status`) or connect late.
        self.news = Message(Kind.READY, None, self.describe()) if engine else progress("start", 0, 1)
        self._worker: asyncio.Task | None = None

    def connect(self, send: Send) -> Connection:
        """A new client: news about the model and the replies to its requests go to `send`."""
        connection = Connection(self, send)
        self.clients.append(connection)
        return connection

    def connect_json(self, send_text: Callable[[str], None]) -> Connection:
        """A client that speaks JSON text: the browser's runtime messages, a websocket."""
        return self.connect(lambda message: send_text(json.dumps(message.to_dict())))

    def disconnect(self, connection: Connection) -> None:
        if connection in self.clients:
            self.clients.remove(connection)
        for id, owner in list(self.owners.items()):
            if owner is connection:
                self.stopped.add(id)

    # ---------------------------------------------------------------- loading

    async def load(self, source: Any, *, n_ctx: int = DEFAULT_N_CTX, device: Any = None,
                   seats: int = DEFAULT_SEATS, kv_f16: bool = False, f16_prompts: bool = False,
                   q8_prompts: bool = False) -> bool:
        """Open the GPU, parse the GGUF held by `source` and upload it; report progress, then ready or error.
        seats: requests served at once (a sequence of n_ctx positions each in the KV cache); kv_f16: that cache
        in f16 (half its memory); f16_prompts: prompts' products in f16 where the GPU has shader-f16 (a
        preference: without it they stay f32, and `describe` says which); q8_prompts: prompts' products on x in 8
        bits where the GPU takes prompts in tiles (before f16's)."""
        from .engine import Engine
        from .gguf import parse_gguf
        from .gpu import open_device

        try:
            self.announce(progress("gpu", 0, 1))
            device = device or await open_device()
            gguf = parse_gguf(source)
            last = [0.0]

            def uploaded(done: int, total: int) -> None:
                now = time.monotonic()
                if now - last[0] > 0.1 or done == total:  # a few messages a second is plenty for a bar
                    last[0] = now
                    self.announce(progress("weights", done, total))

            f16_prompts = f16_prompts and "shader-f16" in device.info.features
            self.engine = await Engine.load(gguf=gguf, device=device, n_ctx=n_ctx, progress=uploaded, n_seqs=seats,
                                            kv_f16=kv_f16, f16_prompts=f16_prompts, q8_prompts=q8_prompts)
            self.streams = _streams_of(self.engine)
        except Exception as e:  # noqa: BLE001 - every load failure is reported to the panel, named
            if not isinstance(e, HearthError):
                traceback.print_exc()
            self.fail(e)
            return False
        self.announce(Message(Kind.READY, None, self.describe()))
        self._kick()
        return True

    def fail(self, cause: BaseException) -> None:
        """The model cannot load: say why to every client; queued and later requests fail with it."""
        news = error(None, cause)
        self.failure = news.content["message"]
        self.announce(news)
        self._kick()

    def announce(self, news: Message) -> None:
        """News about the model (id null) to every client, kept for those that ask later."""
        self.news = news
        for client in list(self.clients):
            client.send(news)

    def describe(self) -> dict[str, Any]:
        """What the panel shows about the loaded model."""
        engine = self.engine
        info = engine.model.device.info
        return {
            "model": str(engine.metadata.get("general.name", "model")),
            "n_ctx": engine.model.n_ctx,
            "adapter": f"{info.vendor} {info.device}".strip(),
            "seats": engine.model.n_seqs,
            "kv_f16": engine.model.kernels.kv_f16,
            "f16_prompts": engine.model.kernels.f16_prompts and not engine.model.kernels.q8_prompts,
            "q8_prompts": engine.model.kernels.q8_prompts and engine.model.kernels.tiles,  # (what runs)
            "tensor_cores": engine.model.kernels.prompts_on_matrices,  # (f16 prompts on subgroup matrices)
        }

    # ---------------------------------------------------------------- the kind switch

    def receive(self, client: Connection, data: str | dict[str, Any] | Message) -> None:
        """Take one message from `client` (never blocks: requests wait in the queue)."""
        try:
            data = _json(data) if isinstance(data, str) else data
            message = data if isinstance(data, Message) else Message.from_dict(data)
        except InvalidRequest as e:
            id = data.get("id") if isinstance(data, dict) else None
            return client.send(error(id if isinstance(id, str | int) else None, e))
        kind, id = message.kind, message.id
        if kind in REQUEST_KINDS:
            if id is None or id in self.owners:
                why = "a request needs an id" if id is None else f"request id {id!r} is already in use"
                return client.send(error(id, InvalidRequest(why)))
            self.owners[id] = client
            self.queue.put_nowait(message)
            self._kick()
        elif kind == Kind.STOP:
            if self.owners.get(id) is client:  # nobody stops another client's request
                self.stopped.add(id)
        elif kind in (Kind.STATUS, Kind.HELLO):  # where loading stands; HELLO: the bridge has just connected
            client.send(Message(self.news.kind, id, self.news.content))  # (the bridge's pings carry an id)
        elif id is not None:
            client.send(error(id, InvalidRequest(f"the engine does not take {kind.value!r} messages")))
        return None

    def _reply(self, message: Message) -> None:
        """A reply to the request `message.id`, sent to the client that asked (the last one frees the id)."""
        owner = self.owners.pop(message.id) if message.kind in FINAL_KINDS else self.owners.get(message.id)
        if owner is not None and owner in self.clients:
            owner.send(message)

    def _kick(self) -> None:
        """Serve the queue, unless the model is still loading (requests wait for it)."""
        if self.engine is None and self.failure is None:
            return
        if self._worker is None or self._worker.done():
            self._worker = asyncio.ensure_future(self._serve())

    async def drain(self) -> None:
        """Wait until every queued request has been served (tests)."""
        while (self._worker is not None and not self._worker.done()) or self._serving:
            if self._worker is not None and not self._worker.done():
                await asyncio.shield(self._worker)
            if self._serving:
                await asyncio.wait(list(self._serving))

    async def _serve(self) -> None:
        """Hand queued requests out in order: to the engine's own sequence once it is free, or (chat, while
        it is busy) to the streams decoding together, which take them at once."""
        while not self.queue.empty():
            request = self.queue.get_nowait()
            alongside = self.streams is not None and request.kind == Kind.CHAT and self._own.locked()
            if not alongside:
                await self._own.acquire()
            task = asyncio.ensure_future(self._serve_one(request, alongside))
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)

    async def _serve_one(self, request: Message, alongside: bool) -> None:
        id = request.id
        if not alongside:
            self.busy = id
        try:
            if id in self.stopped:  # stopped while still queued
                self._reply(Message(Kind.DONE, id, _stats([], 0.0, "stop", stopped=True)))
            elif self.engine is None:
                raise LoadError(f"the model failed to load: {self.failure}")
            elif request.kind == Kind.CHAT:
                await self._chat(id, request.content or {}, self.streams.generate if alongside else None)
            else:
                await self._summarize(id, request.content or {})
        except Exception as e:  # noqa: BLE001 - a failed request must not stop the queue
            if not isinstance(e, HearthError):
                traceback.print_exc()
            self._reply(error(id, e))
        finally:
            self.stopped.discard(id)
            self.owners.pop(id, None)
            if not alongside:
                self.busy = None
                self._own.release()

    # ---------------------------------------------------------------- requests

    async def _chat(self, id: RequestId, content: dict[str, Any], generate=None) -> None:
        options = sampling_options(content.get("options"))
        prompt = self.engine.chat_prompt(content.get("messages") or [])
        _, stats = await self.stream(id, prompt, options, generate=generate)
        self._reply(Message(Kind.DONE, id, stats))

    async def _summarize(self, id: RequestId, content: dict[str, Any]) -> None:
        options = sampling_options(content.get("options"))
        summarizer = Summarizer(self.engine, options, chunk_tokens=content.get("chunk_tokens"))
        text, title = str(content.get("text") or ""), str(content.get("title") or "")
        if not text.strip():
            raise InvalidRequest("there is no text to summarise on this page")

        async def part_summary(prompt: list[int], part: int, parts: int) -> str | None:
            self._reply(Message(Kind.PART, id, {"part": part, "parts": parts}))
            answer, stats = await self.stream(id, prompt, summarizer.part_options, chunks=False)
            return None if stats["stopped"] else answer

        final_prompt, parts = await summarizer.prompt(text, title, part_summary)
        if final_prompt is None:  # stopped between parts
            self._reply(Message(Kind.DONE, id, _stats([], 0.0, "stop", stopped=True)))
            return
        _, stats = await self.stream(id, final_prompt, options)
        stats["parts"] = parts
        self._reply(Message(Kind.DONE, id, stats))

    async def stream(self, id: RequestId, prompt: list[int], options: SamplingOptions, chunks: bool = True,
                     generate=None):
        """Generate from `prompt` (with `generate`: Engine.generate by default, or Streams.generate), sending
        a chunk per token when `chunks`; stops early when asked. Returns the text and the statistics the
        `done` message carries."""
        start = time.monotonic()
        first = None
        token_ids: list[int] = []
        text: list[str] = []
        finish, stopped = "length", False
        generation = (generate or self.engine.generate)(prompt, options)
        try:
            async for chunk in generation:
                if first is None:
                    first = time.monotonic()
                if chunk.token_id is not None and chunk.finish_reason is None:
                    token_ids.append(chunk.token_id)
                text.append(chunk.text)
                if chunks and (chunk.text or chunk.finish_reason is None):
                    self._reply(Message(Kind.CHUNK, id, {"text": chunk.text, "token_id": chunk.token_id}))
                if chunk.finish_reason:
                    finish = chunk.finish_reason
                if id in self.stopped and not chunk.finish_reason:
                    finish, stopped = "stop", True
                    break
        finally:
            await generation.aclose()
        stats = _stats(token_ids, time.monotonic() - start, finish, first and time.monotonic() - first, stopped)
        stats["prompt_tokens"] = len(prompt)
        stats["prompt_seconds"] = round((first or time.monotonic()) - start, 3)  # prefill and the first token
        return "".join(text), stats


def _streams_of(engine: Any):
    """Streams over the engine's extra sequences, if its model holds any."""
    if engine is None or engine.model.n_seqs < 2:
        return None
    from .streams import Streams

    return Streams(engine)


def _stats(token_ids: list[int], seconds: float, finish: str, decode_seconds: float | None = None,
           stopped: bool = False) -> dict:
    # Decode speed counts the tokens after the first: the first one pays for the prompt's prefill.
    rate = (len(token_ids) - 1) / decode_seconds if decode_seconds and len(token_ids) > 1 else None
    return {"finish_reason": finish, "token_ids": token_ids, "n_tokens": len(token_ids),
            "seconds": round(seconds, 3), "tokens_per_s": rate and round(rate, 2), "stopped": stopped}


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise InvalidRequest(f"a message is one JSON object: {e}") from None
