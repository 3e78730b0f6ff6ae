"""The bridge's transports: one port on 127.0.0.1, websocket frames and OpenAI's HTTP API, both onto the hub.

One `websockets` server owns the port. Its connection class hands each connection's bytes to bridge/http.py
(h11) until the request head is in and checked (Host, repeated headers): a websocket upgrade then goes on to
websockets (whose `process_request` hook checks origin and token), any other request is answered as HTTP/1.1
there: websockets' own HTTP handling takes no request body and cannot stream a response, and the OpenAI API
needs both (POST bodies, server-sent events). Every HTTP answer, websockets' refusals included, is JSON in
OpenAI's error shape.
"""

from __future__ import annotations

import asyncio
import email.utils
import errno
import itertools
import json
import logging
from collections.abc import AsyncIterator, Hashable
from functools import partial
from http import HTTPStatus
from typing import Any

from pydantic import ValidationError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import StatusLike

from engine.protocol import BRIDGE_PORT, Kind, Message

from .api import TYPE_OF_STATUS, ChatCompletion, ClientFrame, Hello, frame
from .convert import ApiError, parse_request, validation_error
from .http import HEAD_TIMEOUT, HttpConnection
from .hub import PING_INTERVAL, Hub, Provider
from .peers import client_key
from .security import Pairing, bearer, token_matches

DEFAULT_PORT = BRIDGE_PORT
MAX_REQUEST_BYTES = 1 << 20  # one frame, or one HTTP body; larger ones get `request_too_large`
MAX_FRAME_BYTES = 8 * MAX_REQUEST_BYTES  # past this websockets closes the connection (1009) unread
WELCOME = {"server": "hearth-bridge", "max_request_bytes": MAX_REQUEST_BYTES}  # the bridge's hello
log = logging.getLogger("bridge")


class PortTaken(OSError):
    """Another program (perhaps another bridge) listens on the port."""


class BridgeServer:
    """Serves the hub on 127.0.0.1:`port` (0 picks a free port; `port` then holds the real one)."""

    def __init__(self, hub: Hub, token: str, origin: str, port: int = DEFAULT_PORT, pairing: Pairing | None = None):
        self.hub, self.token, self.origin, self.port = hub, token, origin, port
        self.pairing = pairing or Pairing()  # the extension's way in where the native host cannot give it the token
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
        """Raise ApiError for a foreign origin or a wrong token; True when the right token came in the
        `Authorization` header, False when it has yet to present one. The extension's origin (or none) only
        passes the origin wall: any local program can send that header, so it admits no one by itself."""
        origin = headers.get("Origin")
        if origin is not None and origin != self.origin:
            raise ApiError(403, f"web pages may not use the Hearth bridge (origin {origin!r})",
                           type="permission_error", code="origin_not_allowed")  # fmt: skip
        presented = bearer(headers.get("Authorization"))
        if presented is not None and not token_matches(presented, self.token):
            raise ApiError(401, "wrong bridge token", type="authentication_error", code="invalid_token")
        return presented is not None

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
            try:
                welcome = self._authenticate(ws, hello)
            except ApiError as e:
                await ws.send(frame(Kind.ERROR, None, e.response()))
                return await ws.close(1008, "authentication required")
            if hello is not None and hello.role == "provider":
                await self._serve_provider(ws, welcome)  # only an authenticated connection gets this far
            else:
                await self._serve_client(ws, None if hello is not None else first)
        except (TimeoutError, ConnectionClosed):
            pass

    def _authenticate(self, ws: ServerConnection, hello: Hello | None) -> dict[str, Any]:
        """The hello for a websocket that showed the token (in its `Authorization` header or its hello), or a
        provider that redeemed the pairing code (its hello then carries the token); ApiError for anyone else."""
        if hello is not None and hello.token is not None:
            if not token_matches(hello.token, self.token):  # a wrong token is refused, whatever else
                raise ApiError(401, "wrong bridge token", type="authentication_error", code="invalid_token")
            return WELCOME
        if hello is not None and hello.pairing_code is not None:
            if hello.role != "provider":
                raise ApiError(401, "pairing codes are for the extension: scripts present the token from the "
                               "bridge's token file", type="authentication_error",
                               code="invalid_pairing_code")  # fmt: skip
            if not self.pairing.redeem(hello.pairing_code):
                raise ApiError(401, "wrong or expired pairing code: type the last one `python -m bridge` printed "
                               "(each works once, for 10 minutes)", type="authentication_error",
                               code="invalid_pairing_code")  # fmt: skip
            return {**WELCOME, "token": self.token}
        if ws.vouched:
            return WELCOME
        raise ApiError(401, "present the bridge token: an `Authorization: Bearer` header, or a first frame "
                       "{kind: hello, content: {token}} (the token is in the bridge's token file)",
                       type="authentication_error", code="invalid_token")  # fmt: skip

    async def _serve_client(self, ws: ServerConnection, first: str | bytes | None) -> None:
        live: dict[Any, tuple[Any, asyncio.Task]] = {}  # frame id -> (request, its streaming task)
        key = await asyncio.to_thread(client_key, ws, ws.remote_address, ws.local_address)  # fair turns
        send = partial(_send_frame, ws)
        await send(Kind.HELLO, None, WELCOME)
        try:
            if first is not None:
                await self._client_frame(ws, key, first, live)
            async for message in ws:
                await self._client_frame(ws, key, message, live)
        finally:
            for request, task in list(live.values()):
                self.hub.cancel(request)
                task.cancel()

    async def _client_frame(self, ws: ServerConnection, key: Hashable, message: str | bytes, live: dict) -> None:
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
            request = self.hub.submit(key, parsed.content)
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

    async def _serve_provider(self, ws: ServerConnection, welcome: dict[str, Any] = WELCOME) -> None:
        for other in [p for p in self.hub.providers if not p.native]:
            if self.hub.answering(other):
                error = ApiError(409, "another model provider is connected and answering",
                                 type="invalid_request_error", code="provider_taken")  # fmt: skip
                await ws.send(frame(Kind.ERROR, None, error.response()))
                return await ws.close(1008, "provider slot taken")
            self.hub.remove_provider(other, "stopped answering", code="provider_unresponsive")
        outbox: asyncio.Queue[Message] = asyncio.Queue()  # the hub sends synchronously; one writer keeps the order
        origin = ws.request.headers.get("Origin")
        name = "browser extension" if origin == self.origin else f"provider at {ws.remote_address[0]}"
        provider = Provider(name=name, send=outbox.put_nowait)
        outbox.put_nowait(Message(Kind.HELLO, None, welcome))  # first in line: before any request the hub sends
        writer = asyncio.create_task(_pump(ws, outbox))
        self.hub.add_provider(provider)
        watcher = asyncio.create_task(self._watch_provider(ws, provider))
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
            watcher.cancel()
            self.hub.remove_provider(provider, "disconnected")
        return None

    async def _watch_provider(self, ws: ServerConnection, provider: Provider) -> None:
        """Ping the provider with `status` (its host answers at once, even mid-generation; websocket pings
        would be answered by the browser whatever the page does) and drop it once it goes silent: its request
        fails with `provider_unresponsive`, and the slot is free for a provider that answers."""
        for n in itertools.count(1):
            await asyncio.sleep(PING_INTERVAL)
            if not self.hub.answering(provider):
                self.hub.remove_provider(provider, "stopped answering", code="provider_unresponsive")
                ws.transport.abort()  # no closing handshake with a peer that does not answer
                return
            provider.send(Message(Kind.STATUS, f"ping-{n}"))

    # ---------------------------------------------------------------- HTTP

    async def _route(self, http: HttpConnection) -> None:
        """Answer one HTTP request (its Host is checked already); ApiError is answered by `http`."""
        routes = {"/v1/chat/completions": "POST", "/v1/models": "GET"}
        if http.path not in routes:
            raise ApiError(404, f"no such endpoint: {http.path} (the bridge serves {', '.join(routes)})",
                           type="not_found_error", code="unknown_url")  # fmt: skip
        if http.method != routes[http.path]:
            raise ApiError(405, f"{http.path} takes {routes[http.path]}, not {http.method}", code="method_not_allowed")
        if not self.admit(http.headers):
            raise ApiError(401, "missing `Authorization: Bearer <token>` (the token is in the bridge's token file)",
                           type="authentication_error", code="invalid_token")  # fmt: skip
        if http.path == "/v1/models":
            return http.send_json(200, self.hub.models().model_dump_json())
        body = parse_request(await http.body())
        transport = http.transport
        key = await asyncio.to_thread(client_key, http, transport.get_extra_info("peername"),
                                      transport.get_extra_info("sockname"))  # fair turns by program
        request = self.hub.submit(key, body)
        try:
            if body.stream:
                return await http.send_events(_chunks(self.hub.replies(request)))
            async for reply in self.hub.replies(request):
                if isinstance(reply, ChatCompletion):
                    http.send_json(200, reply.model_dump_json())
        finally:
            self.hub.cancel(request)  # a no-op once it finished; when the client left (FIN or RST), frees the model


class _Connection(ServerConnection):
    """A websockets connection whose bytes go to bridge/http.py until its head shows a websocket upgrade."""

    def __init__(self, *args: Any, bridge: BridgeServer, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.bridge = bridge
        self.vouched = False
        self.http: HttpConnection | None = None  # until the head is a websocket upgrade
        self.protocol.reject = _rejection  # websockets' own refusals (a bad handshake) in OpenAI's shape too

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.http = HttpConnection(transport, self.bridge._route, port=self.bridge.port, max_body=MAX_REQUEST_BYTES,
                                   max_drain=MAX_FRAME_BYTES, drain=self.drain)  # fmt: skip

    def data_received(self, data: bytes) -> None:
        if self.http is None:
            return super().data_received(data)
        upgrade = self.http.receive(data)
        if upgrade is not None:
            self.http = None
            super().data_received(upgrade)
        return None

    def eof_received(self) -> bool | None:
        if self.http is None:
            return super().eof_received()
        self.http.receive_eof()
        return True  # the HTTP side closes the transport itself, once it has answered what it still answers

    def connection_lost(self, exc: Exception | None) -> None:
        if self.http is not None:
            self.http.lost()
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


async def _chunks(replies: AsyncIterator) -> AsyncIterator[str]:
    """A streamed request's chunks as JSON (server-sent events carry no final ChatCompletion)."""
    async for reply in replies:
        if not isinstance(reply, ChatCompletion):
            yield reply.model_dump_json()


# websockets' refusals of a handshake, by status: the codes their OpenAI-shaped bodies carry
_REJECTED = {400: "bad_handshake", 403: "origin_not_allowed", 405: "method_not_allowed", 414: "headers_too_large",
             426: "upgrade_required", 431: "headers_too_large", 500: "internal_error", 503: "shutting_down",
             505: "bad_http"}  # fmt: skip


def _rejection(status: StatusLike, text: str) -> Response:
    """What websockets would refuse a handshake with in plain text, as an OpenAI error."""
    status = int(status)
    kind = TYPE_OF_STATUS.get(status, "server_error" if status >= 500 else "invalid_request_error")
    error = ApiError(status, text.strip() or HTTPStatus(status).phrase, type=kind, code=_REJECTED.get(status))
    return _json_response(None, status, error.response().model_dump_json())


def _json_response(connection: ServerConnection | None, status: int, body: str) -> Response:
    """A handshake's JSON answer (built here: `connection.respond` now makes OpenAI errors of plain text)."""
    data = body.encode()
    headers = Headers([("Date", email.utils.formatdate(usegmt=True)), ("Connection", "close"),
                       ("Content-Length", str(len(data))), ("Content-Type", "application/json")])  # fmt: skip
    return Response(status, HTTPStatus(status).phrase, headers, data)
