"""The request host behind the browser extension: one message envelope, one `kind` switch, one queue.

Every message, in and out, is `{"kind": ..., "id": ..., "content": ...}` (plain data). The offscreen
document's JavaScript hands incoming messages to `Host.receive` and posts whatever `send` is given;
nothing here imports `js`, so the same host runs (and is tested) natively.

In:  chat {messages, options} · summarize {text, title, options} · stop (id of the request) · status
Out: progress {stage, done, total} · ready {model, n_ctx, adapter} · chunk {text, token_id} ·
     part {part, parts} · done {finish_reason, token_ids, n_tokens, seconds, tokens_per_s, parts} ·
     error {type, message} (id null for load errors) · status {loaded, queued, busy}
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from .errors import HearthError, InvalidRequest
from .gpu import GpuUnavailable
from .sampler import SamplingOptions
from .summarize import Summarizer

Send = Callable[[dict[str, Any]], None]
QUEUED_KINDS = ("chat", "summarize")
_OPTION_NAMES = {f.name for f in fields(SamplingOptions)}


def envelope(kind: str, id: Any = None, content: Any = None) -> dict[str, Any]:
    """The one message shape shared by JavaScript and Python."""
    return {"kind": kind, "id": id, "content": content}


def error_content(error: BaseException) -> dict[str, str]:
    """An error as the panel shows it: the named type (ContextTooLong, GpuUnavailable, ...) and a message."""
    if isinstance(error, HearthError | GpuUnavailable):
        return {"type": type(error).__name__, "message": str(error)}
    return {"type": "InternalError", "message": f"{type(error).__name__}: {error}"}


def sampling_options(raw: dict[str, Any] | None) -> SamplingOptions:
    """SamplingOptions from a request's plain `options` object, naming any field it does not know."""
    raw = dict(raw or {})
    unknown = sorted(set(raw) - _OPTION_NAMES)
    if unknown:
        raise InvalidRequest(f"unknown sampling option(s): {', '.join(unknown)}")
    if isinstance(raw.get("stop"), str):
        raw["stop"] = (raw["stop"],)
    elif raw.get("stop") is not None:
        raw["stop"] = tuple(raw["stop"])
    options = SamplingOptions(**{k: v for k, v in raw.items() if v is not None})
    options.validate()
    return options


class Host:
    """Owns the engine once loaded and serves queued requests one at a time, streaming their chunks."""

    def __init__(self, send: Send, engine: Any = None):
        self.send = send
        self.engine = engine
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.stopped: set[Any] = set()
        self.busy: Any = None  # id of the request being served
        self.load_error: str | None = None  # why the model failed to load; requests then fail with it
        self._worker: asyncio.Task | None = None

    # ---------------------------------------------------------------- loading

    async def load(self, source: Any, *, n_ctx: int = 2048, device: Any = None) -> bool:
        """Open the GPU, parse the GGUF held by `source` and upload it; report progress, then ready or error."""
        from .engine import Engine
        from .gguf import parse_gguf
        from .gpu import open_device

        try:
            self.send(envelope("progress", None, {"stage": "gpu", "done": 0, "total": 1}))
            device = device or await open_device()
            gguf = parse_gguf(source)
            last = [0.0]

            def progress(done: int, total: int) -> None:
                now = time.monotonic()
                if now - last[0] > 0.1 or done == total:  # a few messages a second is plenty for a bar
                    last[0] = now
                    self.send(envelope("progress", None, {"stage": "weights", "done": done, "total": total}))

            self.engine = await Engine.load(gguf=gguf, device=device, n_ctx=n_ctx, progress=progress)
        except Exception as e:  # noqa: BLE001 - every load failure is reported to the panel, named
            if not isinstance(e, HearthError | GpuUnavailable):
                traceback.print_exc()
            self.load_error = error_content(e)["message"]
            self.send(envelope("error", None, error_content(e)))
            self._kick()
            return False
        self.send(envelope("ready", None, self.describe()))
        self._kick()
        return True

    def describe(self) -> dict[str, Any]:
        """What the panel shows about the loaded model."""
        engine = self.engine
        info = engine.model.device.info
        return {
            "model": str(engine.gguf.metadata.get("general.name", "model")),
            "n_ctx": engine.model.n_ctx,
            "adapter": f"{info.vendor} {info.device}".strip(),
        }

    # ---------------------------------------------------------------- the kind switch

    def receive(self, message: dict[str, Any]) -> None:
        """Take one incoming message (never blocks: requests wait in the queue)."""
        kind, id, content = message.get("kind"), message.get("id"), message.get("content")
        if kind in QUEUED_KINDS:
            self.queue.put_nowait(envelope(kind, id, content))
            self._kick()
        elif kind == "stop":
            self.stopped.add(content if content is not None else id)
        elif kind == "status":
            self.send(envelope("status", id, {"loaded": self.engine is not None, "queued": self.queue.qsize(),
                                              "busy": self.busy}))
        elif id is None:  # nobody to answer, and an id-null error would read as a failed model load
            print(f"hearth host: ignored a message of unknown kind {kind!r}")
        else:
            self.send(envelope("error", id, error_content(InvalidRequest(f"unknown message kind {kind!r}"))))

    def _kick(self) -> None:
        """Serve the queue, unless the model is still loading (requests wait for it)."""
        if self.engine is None and self.load_error is None:
            return
        if self._worker is None or self._worker.done():
            self._worker = asyncio.ensure_future(self._serve())

    async def drain(self) -> None:
        """Wait until every queued request has been served (tests)."""
        while self._worker is not None and not self._worker.done():
            await asyncio.shield(self._worker)

    async def _serve(self) -> None:
        while not self.queue.empty():
            request = self.queue.get_nowait()
            id, self.busy = request["id"], request["id"]
            try:
                if id in self.stopped:  # stopped while still queued
                    self.send(envelope("done", id, _stats([], 0.0, "stop", stopped=True)))
                elif self.engine is None:
                    raise InvalidRequest(f"the model failed to load: {self.load_error}")
                elif request["kind"] == "chat":
                    await self._chat(id, request["content"] or {})
                else:
                    await self._summarize(id, request["content"] or {})
            except Exception as e:  # noqa: BLE001 - a failed request must not stop the queue
                if not isinstance(e, HearthError):
                    traceback.print_exc()
                self.send(envelope("error", id, error_content(e)))
            finally:
                self.stopped.discard(id)
                self.busy = None

    # ---------------------------------------------------------------- requests

    async def _chat(self, id: Any, content: dict[str, Any]) -> None:
        options = sampling_options(content.get("options"))
        prompt = self.engine.chat_prompt(content.get("messages") or [])
        _, stats = await self.stream(id, prompt, options)
        self.send(envelope("done", id, stats))

    async def _summarize(self, id: Any, content: dict[str, Any]) -> None:
        options = sampling_options(content.get("options"))
        summarizer = Summarizer(self.engine, options, chunk_tokens=content.get("chunk_tokens"))
        text, title = str(content.get("text") or ""), str(content.get("title") or "")
        if not text.strip():
            raise InvalidRequest("there is no text to summarise on this page")

        async def part_summary(prompt: list[int], part: int, parts: int) -> str | None:
            self.send(envelope("part", id, {"part": part, "parts": parts}))
            answer, stats = await self.stream(id, prompt, summarizer.part_options, chunks=False)
            return None if stats["stopped"] else answer

        final_prompt, parts = await summarizer.prompt(text, title, part_summary)
        if final_prompt is None:  # stopped between parts
            self.send(envelope("done", id, _stats([], 0.0, "stop", stopped=True)))
            return
        _, stats = await self.stream(id, final_prompt, options)
        stats["parts"] = parts
        self.send(envelope("done", id, stats))

    async def stream(self, id: Any, prompt: list[int], options: SamplingOptions, chunks: bool = True):
        """Generate from `prompt`, sending a chunk per token when `chunks`; stops early when asked.
        Returns the text and the statistics the `done` message carries."""
        start = time.monotonic()
        first = None
        token_ids: list[int] = []
        text: list[str] = []
        finish, stopped = "length", False
        generation = self.engine.generate(prompt, options)
        try:
            async for chunk in generation:
                if first is None:
                    first = time.monotonic()
                if chunk.token_id is not None and chunk.finish_reason is None:
                    token_ids.append(chunk.token_id)
                text.append(chunk.text)
                if chunks and (chunk.text or chunk.finish_reason is None):
                    self.send(envelope("chunk", id, {"text": chunk.text, "token_id": chunk.token_id}))
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


def _stats(token_ids: list[int], seconds: float, finish: str, decode_seconds: float | None = None,
           stopped: bool = False) -> dict:
    # Decode speed counts the tokens after the first: the first one pays for the prompt's prefill.
    rate = (len(token_ids) - 1) / decode_seconds if decode_seconds and len(token_ids) > 1 else None
    return {"finish_reason": finish, "token_ids": token_ids, "n_tokens": len(token_ids),
            "seconds": round(seconds, 3), "tokens_per_s": rate and round(rate, 2), "stopped": stopped}


class SharedClient:
    """A second client of the same Host (the bridge, next to the side panel): its requests' replies go to
    its own `send`, load news (id null) to both, everything else still to the host's first `send`."""

    def __init__(self, host: Host, send: Send):
        self.host, self.send, self.ids = host, send, set()
        self._first = host.send
        host.send = self._route

    def _route(self, message: dict[str, Any]) -> None:
        id = message.get("id")
        if id is None:
            self._first(message)
            self.send(message)
        elif id in self.ids:
            if message.get("kind") in ("done", "error"):
                self.ids.discard(id)
            self.send(message)
        else:
            self._first(message)

    def receive(self, message: dict[str, Any]) -> None:
        """One message from this client; a `hello` (it connected) is answered with where loading stands."""
        if message.get("kind") == "hello":
            if self.host.engine is not None:
                self.send(envelope("ready", None, self.host.describe()))
            elif self.host.load_error is not None:
                self.send(envelope("error", None, {"type": "LoadError", "message": self.host.load_error}))
            return
        if message.get("kind") in QUEUED_KINDS:
            self.ids.add(message.get("id"))
        self.host.receive(message)

    def gone(self) -> None:
        """The client disconnected: stop its requests, so the model is free for the others."""
        for id in list(self.ids):
            self.host.receive(envelope("stop", id))
