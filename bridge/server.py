"""The bridge's transports: one port on 127.0.0.1, websocket frames and OpenAI's HTTP API, both onto the hub.

One `websockets` server owns the port. Its connection class looks at each connection's request head first:
a websocket upgrade goes on to websockets (whose `process_request` hook checks origin and token), any other
request is answered as HTTP/1.1 here: websockets' own HTTP handling takes no request body and cannot stream
a response, and the OpenAI API needs both (POST bodies, server-sent events).
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
from functools import partial
from http import HTTPStatus
from typing import Any

from pydantic import ValidationError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from engine.protocol import BRIDGE_PORT, Kind, Message

from .api import ChatCompletion, ClientFrame, Hello, frame
from .convert import ApiError, parse_request, validation_error
from .hub import Hub, Provider
from .security import bearer, token_matches

DEFAULT_PORT = BRIDGE_PORT
MAX_REQUEST_BYTES = 1 << 20  # one frame, or one HTTP body; larger ones get `request_too_large`
MAX_FRAME_BYTES = 8 * MAX_REQUEST_BYTES  # past this websockets closes the connection (1009) unread
MAX_HEAD_BYTES = 16 << 10
HEAD_TIMEOUT = 10.0  # seconds for a request head, a body, or a websocket's hello
WELCOME = {"server": "hearth-bridge", "max_request_bytes": MAX_REQUEST_BYTES}  # the bridge's hello
log = logging.getLogger("bridge")


class PortTaken(OSError):
    """Another program (perhaps another bridge) listens on the port."""


class BridgeServer:
    """Serves the hub on 127.0.0.1:`port` (0 picks a free port; `port` then holds the real one)."""

    def __init__(self, hub: Hub, token: str, origin: str, port: int = DEFAULT_PORT):
        self.hub, self.token, self.origin, self.port = hub, token, origin, port
        self._server: Server | None = None

    async def start(self) -> None:
        try:
            self._server = await serve(
                self._websocket, "127.0.0.1", self.port, process_request=self._handshake,
                create_connection=partial(_Connection, bridge=self), open_timeout=None,
                max_size=MAX_FRAME_BYTES, compression=None, ping_interval=10, ping_timeout=10,
            )  # fmt: skip
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise PortTaken(e.errno, f"port {self.port} on 127.0.0.1 is taken (another bridge?): "
                                         "stop it or choose another with --port") from None  # fmt: skip
            raise
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # ---------------------------------------------------------------- who may talk

    def admit(self, headers: Headers) -> bool:
        """Raise ApiError for a foreign origin or a wrong token; True when the connection is vouched for
        (the extension's origin, or the right token), False when it has yet to present a token."""
        origin = headers.get("Origin")
        if origin is not None and origin != self.origin:
            raise ApiError(403, f"web pages may not use the Hearth bridge (origin {origin!r})",
                           type="permission_error", code="origin_not_allowed")  # fmt: skip
        presented = bearer(headers.get("Authorization"))
        if presented is not None and not token_matches(presented, self.token):
            raise ApiError(401, "wrong bridge token", type="authentication_error", code="invalid_token")
        return origin == self.origin or presented is not None

    def _handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        try:
            connection.vouched = self.admit(request.headers)
        except ApiError as e:
            return _json_response(connection, e.status, e.response().model_dump_json())
        return None

    # ---------------------------------------------------------------- websocket sessions

    async def _websocket(self, ws: ServerConnection) -> None:
        try:
            first = await asyncio.wait_for(ws.recv(), HEAD_TIMEOUT)
            hello = _hello(first)
            if hello is not None and hello.token is not None:
                ws.vouched = token_matches(hello.token, self.token)  # a wrong token is refused, whatever else
            if not ws.vouched:
                error = ApiError(401, "present the bridge token: an `Authorization: Bearer` header, or a first frame "
                                 "{kind: hello, content: {token}} (the token is in the bridge's token file)",
                                 type="authentication_error", code="invalid_token")  # fmt: skip
                await ws.send(frame(Kind.ERROR, None, error.response()))
                await ws.close(1008, "authentication required")
            elif hello is not None and hello.role == "provider":
                await self._serve_provider(ws)
            else:
                await self._serve_client(ws, None if hello is not None else first)
        except (TimeoutError, ConnectionClosed):
            pass

    async def _serve_client(self, ws: ServerConnection, first: str | bytes | None) -> None:
        live: dict[Any, tuple[Any, asyncio.Task]] = {}  # frame id -> (request, its streaming task)
        send = partial(_send_frame, ws)
        await send(Kind.HELLO, None, WELCOME)
        try:
            if first is not None:
                await self._client_frame(ws, first, live)
            async for message in ws:
                await self._client_frame(ws, message, live)
        finally:
            for request, task in list(live.values()):
                self.hub.cancel(request)
                task.cancel()

    async def _client_frame(self, ws: ServerConnection, message: str | bytes, live: dict) -> None:
        send = partial(_send_frame, ws)
        if len(message) > MAX_REQUEST_BYTES:
            error = ApiError(413, f"a frame may hold at most {MAX_REQUEST_BYTES} bytes, this one has {len(message)}",
                             code="request_too_large")  # fmt: skip
            return await send(Kind.ERROR, _frame_id(message), error.response())
        try:
            parsed = ClientFrame.validate_json(message)
        except ValidationError as e:
            loc = e.errors()[0]["loc"]
            skip = 2 if loc[:2] == ("chat", "content") else min(len(loc), 1)
            return await send(Kind.ERROR, _frame_id(message), validation_error(e, skip, "frame").response())
        if parsed.kind == Kind.HELLO:
            return await send(Kind.HELLO, parsed.id, WELCOME)
        if parsed.kind == Kind.MODELS:
            return await send(Kind.MODELS, parsed.id, self.hub.models())
        if parsed.kind == Kind.STOP:
            if parsed.id in live:
                self.hub.cancel(live[parsed.id][0])
            return None
        if parsed.id in live:
            error = ApiError(400, f"request id {parsed.id!r} is already streaming", param="id", code="duplicate_id")
            return await send(Kind.ERROR, parsed.id, error.response())
        try:
            request = self.hub.submit(ws, parsed.content)
        except ApiError as e:
            return await send(Kind.ERROR, parsed.id, e.response())
        live[parsed.id] = (request, asyncio.create_task(self._stream_frames(ws, parsed.id, request, live)))
        return None

    async def _stream_frames(self, ws: ServerConnection, id: Any, request, live: dict) -> None:
        send = partial(_send_frame, ws)
        try:
            async for reply in self.hub.replies(request):
                if isinstance(reply, ChatCompletion):
                    await send(Kind.DONE, id, reply)
                elif request.body.stream:
                    await send(Kind.CHUNK, id, reply)
        except ApiError as e:
            await send(Kind.ERROR, id, e.response())
        except ConnectionClosed:
            pass
        finally:
            live.pop(id, None)
            self.hub.cancel(request)  # a no-op once it finished

    async def _serve_provider(self, ws: ServerConnection) -> None:
        if any(not p.native for p in self.hub.providers):
            error = ApiError(409, "another model provider is already connected", type="invalid_request_error",
                             code="provider_taken")  # fmt: skip
            await ws.send(frame(Kind.ERROR, None, error.response()))
            return await ws.close(1008, "provider slot taken")
        outbox: asyncio.Queue[Message] = asyncio.Queue()  # the hub sends synchronously; one writer keeps the order
        origin = ws.request.headers.get("Origin")
        name = "browser extension" if origin == self.origin else f"provider at {ws.remote_address[0]}"
        provider = Provider(name=name, send=outbox.put_nowait)
        writer = asyncio.create_task(_pump(ws, outbox))
        await ws.send(frame(Kind.HELLO, None, WELCOME))
        self.hub.add_provider(provider)
        try:
            async for message in ws:
                try:
                    data = json.loads(message)
                except (ValueError, RecursionError):
                    continue
                if isinstance(data, dict):
                    self.hub.on_message(provider, data)
        finally:
            writer.cancel()
            self.hub.remove_provider(provider, "disconnected")
        return None

    # ---------------------------------------------------------------- HTTP

    async def serve_http(self, conn: _Connection) -> None:
        """Answer one HTTP request on `conn`, then close it."""
        try:
            head = await asyncio.wait_for(conn.http.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            method, path, headers = _parse_head(head)
            await self._route(conn, method, path.split("?", 1)[0], headers)
        except ApiError as e:
            _write_json(conn, e.status, e.response().model_dump_json())
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        except Exception:  # a bug: this connection fails, the bridge goes on
            log.exception("HTTP request failed")
        finally:
            conn.transport.close()

    async def _route(self, conn: _Connection, method: str, path: str, headers: Headers) -> None:
        routes = {"/v1/chat/completions": "POST", "/v1/models": "GET"}
        if path not in routes:
            raise ApiError(404, f"no such endpoint: {path} (the bridge serves {', '.join(routes)})",
                           type="not_found_error", code="unknown_url")  # fmt: skip
        if method != routes[path]:
            raise ApiError(405, f"{path} takes {routes[path]}, not {method}", code="method_not_allowed")
        if not self.admit(headers):
            raise ApiError(401, "missing `Authorization: Bearer <token>` (the token is in the bridge's token file)",
                           type="authentication_error", code="invalid_token")  # fmt: skip
        if path == "/v1/models":
            return _write_json(conn, 200, self.hub.models().model_dump_json())
        body = parse_request(await _read_body(conn, headers))
        request = self.hub.submit(conn, body)
        conn.connection_lost_waiter.add_done_callback(lambda _: self.hub.cancel(request))
        replies = self.hub.replies(request)
        if not body.stream:
            async for reply in replies:
                if isinstance(reply, ChatCompletion):
                    _write_json(conn, 200, reply.model_dump_json())
            return None
        return await _write_events(conn, replies)


class _Connection(ServerConnection):
    """A websockets connection that first reads the request head, and answers plain HTTP itself."""

    def __init__(self, *args: Any, bridge: BridgeServer, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.bridge = bridge
        self.vouched = False
        self.head: bytearray | None = bytearray()  # until the head is complete
        self.http: asyncio.StreamReader | None = None  # for a plain HTTP request
        self.http_task: asyncio.Task | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._timer = self.loop.call_later(HEAD_TIMEOUT, transport.close)

    def data_received(self, data: bytes) -> None:
        if self.http is not None:
            return self.http.feed_data(data)
        if self.head is None:
            return super().data_received(data)
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > MAX_HEAD_BYTES:
                self.transport.close()
            return None
        head, self.head = bytes(self.head), None
        self._timer.cancel()
        if _is_upgrade(head[:end]):
            return super().data_received(head)
        self.http = asyncio.StreamReader(limit=MAX_HEAD_BYTES)
        self.http.set_transport(self.transport)  # it pauses reading while unread data piles up
        self.http.feed_data(head)
        self.http_task = self.loop.create_task(self.bridge.serve_http(self))
        return None

    def eof_received(self) -> bool | None:
        if self.http is not None:
            self.http.feed_eof()
            return True  # the client may half-close after its body; the answer still goes out
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.http is not None:
            self.http.feed_eof()
        super().connection_lost(exc)


# ---------------------------------------------------------------- helpers of the transports


def _hello(message: str | bytes) -> Hello | None:
    """The content of a hello frame, or None when `message` is something else."""
    try:
        parsed = ClientFrame.validate_json(message) if len(message) <= MAX_REQUEST_BYTES else None
    except ValidationError:
        return None
    return parsed.content if parsed is not None and parsed.kind == Kind.HELLO else None


def _frame_id(message: str | bytes) -> Any:
    """The `id` of a frame that failed validation, when it has a usable one (so the client can match the error)."""
    try:
        data = json.loads(message)  # at most MAX_FRAME_BYTES: websockets refuses larger frames
    except (ValueError, RecursionError):
        return None
    id = data.get("id") if isinstance(data, dict) else None
    return id if isinstance(id, str | int) and not isinstance(id, bool) and len(str(id)) <= 128 else None


async def _send_frame(ws: ServerConnection, kind: Kind, id: Any, content: Any) -> None:
    await ws.send(frame(kind, id, content))


async def _pump(ws: ServerConnection, outbox: asyncio.Queue) -> None:
    while True:
        await ws.send(json.dumps((await outbox.get()).to_dict()))


def _is_upgrade(head: bytes) -> bool:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False


def _parse_head(head: bytes) -> tuple[str, str, Headers]:
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, path, version = lines[0].split(" ")
        headers = Headers()
        for line in filter(None, lines[1:]):
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise ValueError(line)
            headers[name] = value.strip()
    except ValueError:
        raise ApiError(400, "malformed HTTP request head", code="bad_http") from None
    if not version.startswith("HTTP/1."):
        raise ApiError(400, f"unsupported protocol {version!r}", code="bad_http")
    return method, path, headers


async def _read_body(conn: _Connection, headers: Headers) -> bytes:
    if "Transfer-Encoding" in headers:
        raise ApiError(411, "send the body with a Content-Length, not chunked", code="length_required")
    length = headers.get_all("Content-Length")
    if len(set(length)) != 1 or not length[0].isdigit():
        raise ApiError(411, "a request body needs one valid Content-Length header", code="length_required")
    if int(length[0]) > MAX_REQUEST_BYTES:
        if int(length[0]) <= MAX_FRAME_BYTES:  # read it away, so the client is listening when the answer comes
            await asyncio.wait_for(conn.http.readexactly(int(length[0])), HEAD_TIMEOUT)
        raise ApiError(413, f"a request body may hold at most {MAX_REQUEST_BYTES} bytes, this one has {length[0]}",
                       code="request_too_large")  # fmt: skip
    if headers.get("Expect", "").lower() == "100-continue":  # curl asks so before bodies over 1 KiB
        conn.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    return await asyncio.wait_for(conn.http.readexactly(int(length[0])), HEAD_TIMEOUT)


def _write_head(conn: _Connection, status: int, content_type: str, extra: str) -> None:
    reason = HTTPStatus(status).phrase
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nConnection: close\r\n{extra}\r\n"
    conn.transport.write(head.encode("latin-1"))


def _write_json(conn: _Connection, status: int, body: str) -> None:
    data = body.encode()
    _write_head(conn, status, "application/json", f"Content-Length: {len(data)}\r\n")
    conn.transport.write(data)


async def _write_events(conn: _Connection, replies) -> None:
    """Server-sent events, one chunk each, then `[DONE]`; an error after the start is an `{"error": ...}` event."""

    def event(data: str) -> None:
        payload = f"data: {data}\n\n".encode()
        conn.transport.write(b"%x\r\n%s\r\n" % (len(payload), payload))  # HTTP/1.1 chunked encoding

    started = False
    try:
        async for reply in replies:
            if isinstance(reply, ChatCompletion):
                break
            if not started:
                _write_head(conn, 200, "text/event-stream", "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n")
                started = True
            event(reply.model_dump_json())
            await conn.drain()
        event("[DONE]")
    except ApiError as e:
        if not started:
            raise
        event(e.response().model_dump_json())
    conn.transport.write(b"0\r\n\r\n")


def _json_response(connection: ServerConnection, status: int, body: str) -> Response:
    response = connection.respond(status, body)
    response.headers["Content-Type"] = "application/json"
    return response

