"""`bridge.Client` and `bridge.AsyncClient`: the OpenAI Python SDK's shape, over the bridge's websocket.

    client = bridge.Client()                       # reads the token file by itself
    answer = client.chat.completions.create(model="hearth", messages=[...], max_tokens=64)
    for chunk in client.chat.completions.create(model="hearth", messages=[...], stream=True): ...

One websocket carries all of a client's requests, told apart by id; leaving a stream early cancels its request.
Responses are bridge/api.py's models, which have the SDK's attribute names (`answer.choices[0].message.content`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import threading
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from engine.protocol import BRIDGE_PORT, Kind

from .api import STATUS_OF_TYPE, ChatCompletion, ChatCompletionChunk, ModelList, frame
from .security import read_token

DEFAULT_URL = f"ws://127.0.0.1:{BRIDGE_PORT}"


# ---------------------------------------------------------------- errors, as the SDK names them


class APIError(Exception):
    """An error the bridge reported (OpenAI's error object), or a failure to reach it."""

    status_code: int | None = None

    def __init__(self, message: str, type: str | None = None, code: str | None = None, param: str | None = None,
                 status_code: int | None = None):  # fmt: skip
        super().__init__(message)
        self.message, self.type, self.code, self.param = message, type, code, param
        self.status_code = status_code or STATUS_OF_TYPE.get(type or "")


class APIConnectionError(APIError):
    """The bridge could not be reached, or the connection broke."""


class APITimeoutError(APIConnectionError):
    """No answer within the client's timeout."""


class BadRequestError(APIError): ...


class AuthenticationError(APIError): ...


class PermissionDeniedError(APIError): ...


class NotFoundError(APIError): ...


class RateLimitError(APIError): ...


class InternalServerError(APIError): ...


_BY_TYPE = {"invalid_request_error": BadRequestError, "authentication_error": AuthenticationError,
            "permission_error": PermissionDeniedError, "not_found_error": NotFoundError,
            "rate_limit_error": RateLimitError, "server_error": InternalServerError}  # fmt: skip


def error_from(body: Any, status_code: int | None = None) -> APIError:
    """The exception for an OpenAI error object (`{"error": {...}}`)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return APIError(f"unexpected error from the bridge: {body!r}", status_code=status_code)
    cls = _BY_TYPE.get(error.get("type"), APIError)
    return cls(str(error.get("message")), error.get("type"), error.get("code"), error.get("param"), status_code)


# ---------------------------------------------------------------- the connection


class _Link:
    """One websocket to the bridge, with a reader that hands each frame to its request's queue."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws
        self.pending: dict[int, asyncio.Queue] = {}
        self.ids = itertools.count(1)
        self.broken: APIError | None = None
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                data = json.loads(message)
                queue = self.pending.get(data.get("id"))
                if queue is not None:
                    queue.put_nowait(data)
                elif data.get("kind") == Kind.ERROR and data.get("id") is None:  # about the connection itself
                    self._fail(error_from(data.get("content")))
        except (ConnectionClosed, ValueError) as e:
            self._fail(APIConnectionError(f"the connection to the bridge broke: {e}"))
        finally:
            self._fail(APIConnectionError("the bridge closed the connection"))

    def _fail(self, error: APIError) -> None:
        self.broken = self.broken or error
        for queue in self.pending.values():
            queue.put_nowait(error)

    async def open(self, kind: Kind, content: Any = None) -> tuple[int, asyncio.Queue]:
        if self.broken:
            raise self.broken
        id = next(self.ids)
        self.pending[id] = queue = asyncio.Queue()
        await self.ws.send(frame(kind, id, content))
        return id, queue

    async def next(self, queue: asyncio.Queue, timeout: float) -> dict[str, Any]:
        try:
            item = await asyncio.wait_for(queue.get(), timeout)
        except TimeoutError:
            raise APITimeoutError(f"no answer from the bridge within {timeout} s") from None
        if isinstance(item, APIError):
            raise item
        if item.get("kind") == Kind.ERROR:
            raise error_from(item.get("content"))
        return item


class AsyncClient:
    """The bridge as an OpenAI-style async client: `await client.chat.completions.create(...)`."""

    def __init__(self, url: str | None = None, *, token: str | None = None, token_file: str | Path | None = None,
                 timeout: float = 600.0):  # fmt: skip
        self.url = url or os.environ.get("HEARTH_BRIDGE_URL") or DEFAULT_URL
        self.token = token
        self.token_file = Path(token_file) if token_file else None
        self.timeout = timeout  # seconds to wait for each frame (the first token waits behind other requests)
        self.chat = _Namespace(completions=_AsyncCompletions(self))
        self.models = _AsyncModels(self)
        self._link: _Link | None = None
        self._lock = asyncio.Lock()

    async def link(self) -> _Link:
        """The open connection (made on first use, and again after it broke)."""
        async with self._lock:
            if self._link is None or self._link.broken:
                self._link = await self._connect()
            return self._link

    async def _connect(self) -> _Link:
        token = self.token or read_token(self.token_file)
        try:
            ws = await connect(self.url, additional_headers={"Authorization": f"Bearer {token}"},
                               max_size=None, open_timeout=self.timeout, compression=None)  # fmt: skip
        except InvalidStatus as e:
            try:
                body = json.loads(e.response.body)
            except ValueError:
                body = None
            raise error_from(body, e.response.status_code) from None
        except OSError as e:
            message = f"cannot reach the bridge at {self.url} ({e}): is `python -m bridge` running?"
            raise APIConnectionError(message) from e
        await ws.send(frame(Kind.HELLO, None, {"role": "client", "token": token}))
        hello = json.loads(await ws.recv())
        if hello.get("kind") == Kind.ERROR:
            await ws.close()
            raise error_from(hello.get("content"))
        return _Link(ws)

    async def close(self) -> None:
        if self._link is not None:
            await self._link.ws.close()
            self._link = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class _Namespace:
    def __init__(self, **members: Any):
        self.__dict__.update(members)


class _AsyncCompletions:
    def __init__(self, client: AsyncClient):
        self._client = client

    async def create(self, *, messages: list[Any], model: str | None = None, stream: bool = False,
                     **params: Any) -> ChatCompletion | AsyncStream:  # fmt: skip
        """A chat completion, as OpenAI's `chat.completions.create` (stream=True: an async iterator of chunks)."""
        body = {"model": model, "messages": [_plain(m) for m in messages], "stream": stream, **params}
        body = {name: value for name, value in body.items() if value is not None}
        link = await self._client.link()
        id, queue = await link.open(Kind.CHAT, body)
        stream_ = AsyncStream(link, id, queue, self._client.timeout)
        if stream:
            return stream_
        async with stream_:
            async for _ in stream_:
                pass
        return stream_.completion


class _AsyncModels:
    def __init__(self, client: AsyncClient):
        self._client = client

    async def list(self) -> ModelList:
        link = await self._client.link()
        id, queue = await link.open(Kind.MODELS)
        try:
            return ModelList.model_validate((await link.next(queue, self._client.timeout))["content"])
        finally:
            link.pending.pop(id, None)


class AsyncStream:
    """The chunks of one streamed answer; `completion` holds the whole answer (with usage) once it ends.
    Closing it early (or leaving `async with`) cancels the request on the bridge."""

    def __init__(self, link: _Link, id: int, queue: asyncio.Queue, timeout: float):
        self._link, self._id, self._queue, self._timeout = link, id, queue, timeout
        self.completion: ChatCompletion | None = None
        self._open = True

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        if not self._open:
            raise StopAsyncIteration
        try:
            item = await self._link.next(self._queue, self._timeout)
        except BaseException:
            await self.close()
            raise
        if item["kind"] == Kind.CHUNK:
            return ChatCompletionChunk.model_validate(item["content"])
        self.completion = ChatCompletion.model_validate(item["content"])
        await self.close()
        raise StopAsyncIteration

    async def close(self) -> None:
        if self._open:
            self._open = False
            self._link.pending.pop(self._id, None)
            if self.completion is None and not self._link.broken:
                try:
                    await self._link.ws.send(frame(Kind.STOP, self._id))
                except ConnectionClosed:
                    pass

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


def _plain(message: Any) -> Any:
    """A message as JSON-ready data (pydantic models, e.g. the SDK's own types, become dicts)."""
    return message.model_dump(exclude_none=True) if hasattr(message, "model_dump") else message


# ---------------------------------------------------------------- the synchronous client


class Client:
    """The bridge as an OpenAI-style client: `client.chat.completions.create(...)`, blocking.
    It runs an AsyncClient on an event loop of its own, in a background thread."""

    def __init__(self, url: str | None = None, *, token: str | None = None, token_file: str | Path | None = None,
                 timeout: float = 600.0):  # fmt: skip
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bridge-client", daemon=True)
        self._thread.start()
        self._async = AsyncClient(url, token=token, token_file=token_file, timeout=timeout)
        self.chat = _Namespace(completions=_Namespace(create=self._create))
        self.models = _Namespace(list=lambda: self._run(self._async.models.list()))

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _create(self, **params: Any) -> ChatCompletion | Stream:
        result = self._run(self._async.chat.completions.create(**params))
        return Stream(result, self._run) if isinstance(result, AsyncStream) else result

    def close(self) -> None:
        if self._thread.is_alive():
            self._run(self._async.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Stream:
    """The chunks of one streamed answer, blocking; see AsyncStream."""

    def __init__(self, stream: AsyncStream, run: Any):
        self._stream, self._run = stream, run

    @property
    def completion(self) -> ChatCompletion | None:
        return self._stream.completion

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> ChatCompletionChunk:
        try:
            return self._run(self._stream.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        self._run(self._stream.close())

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
