"""The bridge's core: requests from many clients, one model provider, fair turns (transports live in server.py).

A provider is anything that takes engine/host.py's input messages and answers with its output messages:
the extension's offscreen document over a websocket, or the native engine's Host in this process. The hub
gives a provider as many requests at a time as it has seats (its `ready` says; one unless its model holds
several sequences, which then decode together), so the queue and its fairness live here, not in the
provider's FIFO; it routes what comes back to each request's own event queue, and fails requests promptly
when their provider goes.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from engine.protocol import Kind, Message

from .api import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    HostDone,
    HostError,
    HostReady,
    ModelCard,
    ModelList,
    ProviderFrame,
)
from .convert import ApiError, Reply, host_chat, host_error, model_id
from .fair_queue import FairQueue

MAX_QUEUED_PER_CLIENT = 64
# A provider is pinged (a `status` its host answers at once, even mid-generation: bridge/server.py) every
# PING_INTERVAL seconds, and dropped after PROVIDER_DEADLINE seconds without a word.
PING_INTERVAL = 1.0
PROVIDER_DEADLINE = 5.0
_ids = itertools.count(1)


@dataclass(eq=False)
class Provider:
    """A model provider as the hub sees it: how to send it a message, and what it is doing."""

    name: str  # for messages: "browser extension", "native engine"
    send: Callable[[Message], None]
    native: bool = False  # the in-process engine, used only while no other provider is connected
    info: HostReady | None = None  # from its `ready` message
    serving: dict[str, Request] = field(default_factory=dict)  # the requests it is serving, by id
    heard: float = field(default_factory=time.monotonic)  # when it last sent anything (liveness)

    @property
    def seats(self) -> int:
        """Requests it serves at once."""
        return self.info.seats if self.info else 1


@dataclass(eq=False)
class Request:
    """One chat completion on its way through the hub; its events arrive in `events`, in order."""

    key: Hashable  # the client, for fair turns
    body: ChatCompletionRequest
    content: dict[str, Any]  # the host's `chat` content
    id: str = field(default_factory=lambda: f"req-{next(_ids)}")
    events: asyncio.Queue = field(default_factory=asyncio.Queue)  # (Kind.CHUNK | DONE | ERROR, payload)
    provider: Provider | None = None
    finished: bool = False


class Hub:
    """Queues requests fairly across clients and hands them to the active provider, as many as it has seats."""

    def __init__(self) -> None:
        self.providers: list[Provider] = []
        self.queue: FairQueue[Request] = FairQueue()

    # ---------------------------------------------------------------- providers

    def active(self) -> Provider | None:
        """The provider new requests go to: a connected one (the extension) before the native engine."""
        return min(self.providers, key=lambda p: p.native, default=None)

    def add_provider(self, provider: Provider) -> None:
        self.providers.append(provider)
        self._dispatch()

    def answering(self, provider: Provider) -> bool:
        """Whether the provider has spoken within the deadline (it answers pings in well under it)."""
        return provider.native or time.monotonic() - provider.heard < PROVIDER_DEADLINE

    def remove_provider(self, provider: Provider, why: str, code: str = "provider_disconnected") -> None:
        """The provider went away (or stopped answering, `code` provider_unresponsive): fail what it was
        serving, and everything queued if no provider is left."""
        if provider not in self.providers:
            return
        self.providers.remove(provider)
        for request in provider.serving.values():
            self._finish(request, ApiError(503, f"the model provider ({provider.name}) {why}",
                                           type="server_error", code=code))  # fmt: skip
        provider.serving.clear()
        if self.active() is None:
            for request in self.queue.drain():
                self._finish(request, _no_provider())
        self._dispatch()

    def on_message(self, provider: Provider, message: dict[str, Any]) -> None:
        """One message from a provider (engine/host.py's output)."""
        provider.heard = time.monotonic()
        try:
            parsed = ProviderFrame.validate_python(message)
        except ValidationError:
            return  # a message the bridge does not read (or a bad one): nothing to route
        request = provider.serving.get(parsed.id) if isinstance(parsed.id, str) else None
        if parsed.kind == Kind.READY:
            provider.info = parsed.content
            self._dispatch()  # it may have more seats than it was given
        elif request is None:
            return  # late news of a request already failed or cancelled
        elif parsed.kind == Kind.CHUNK:
            if not request.finished:  # (a cancelled request streams on until the provider sees its stop)
                request.events.put_nowait((Kind.CHUNK, parsed.content))
        elif parsed.kind in (Kind.DONE, Kind.ERROR):
            del provider.serving[request.id]
            self._finish(request, parsed.content)
            self._dispatch()

    # ---------------------------------------------------------------- requests

    def submit(self, key: Hashable, body: ChatCompletionRequest) -> Request:
        """Queue a request from client `key`; ApiError when no provider is connected or the client has too many."""
        content = host_chat(body)
        if self.active() is None:
            raise _no_provider()
        if self.queue.count(key) >= MAX_QUEUED_PER_CLIENT:
            raise ApiError(429, f"more than {MAX_QUEUED_PER_CLIENT} requests of this client are waiting",
                           type="rate_limit_error", code="too_many_requests")  # fmt: skip
        request = Request(key, body, content)
        self.queue.push(key, request)
        self._dispatch()
        return request

    def cancel(self, request: Request) -> None:
        """The client is gone or asked to stop: drop the request, or stop its generation (freeing the model).
        Either way it ends at once with the error `cancelled`; a provider's late chunks and `done` for it are
        not passed on, and that `done` is what frees the provider for the next request."""
        if request.finished:
            return
        running = request.provider is not None and request.provider.serving.get(request.id) is request
        if not self.queue.remove(request.key, request) and running:
            request.provider.send(Message(Kind.STOP, request.id))
        self._finish(request, ApiError(400, "the request was cancelled", code="cancelled"))

    def _dispatch(self) -> None:
        provider = self.active()
        while provider is not None and len(provider.serving) < provider.seats and (request := self.queue.pop()):
            request.provider = provider
            provider.serving[request.id] = request
            provider.send(Message(Kind.CHAT, request.id, request.content))

    def _finish(self, request: Request, outcome: HostDone | HostError | ApiError) -> None:
        if request.finished:
            return
        request.finished = True
        if isinstance(outcome, HostDone):
            request.events.put_nowait((Kind.DONE, outcome))
        else:
            request.events.put_nowait((Kind.ERROR, host_error(outcome) if isinstance(outcome, HostError) else outcome))

    # ---------------------------------------------------------------- what clients see

    def model_name(self, provider: Provider | None = None) -> str:
        provider = provider or self.active()
        return model_id(provider.info.model) if provider and provider.info else "hearth"

    def models(self) -> ModelList:
        return ModelList(data=[ModelCard(id=self.model_name())] if self.active() else [])

    async def replies(self, request: Request) -> AsyncIterator[ChatCompletionChunk | ChatCompletion]:
        """The request's OpenAI chunks as they stream (role first, usage last if asked), then the whole
        ChatCompletion. Raises ApiError when the request fails."""
        reply = None
        while True:
            kind, payload = await request.events.get()
            if kind == Kind.ERROR:
                raise payload
            if reply is None:
                reply = Reply(model=self.model_name(request.provider))
                yield reply.first()
            if kind == Kind.CHUNK:
                if chunk := reply.chunk(payload.text):
                    yield chunk
                continue
            yield reply.last(payload)
            if request.body.stream_options and request.body.stream_options.include_usage:
                yield reply.usage_chunk(payload)
            yield reply.completion(payload)
            return


def _no_provider() -> ApiError:
    return ApiError(503, "no model provider is connected: open the Hearth extension in the browser (it connects "
                    "by itself), or start the bridge with --native", type="server_error", code="no_provider")
