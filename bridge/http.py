"""OpenAI's HTTP API on h11: one request a connection, answered in JSON or server-sent events, then closed.

server.py's `_Connection` feeds each connection's bytes to an `HttpConnection` until the request head is in.
Both transports' heads pass the same checks here first (the Host allow-list, single headers, clean values),
so a DNS-rebinding page learns nothing, not even whether its token would do. A websocket upgrade then goes
back to websockets, written again in the canonical form its stricter parser reads (h11 also takes bare LF line
ends and folded lines); any other request is served here by the bridge's handler. Whatever this module sends
is JSON in OpenAI's error shape, or the handler's own answer.

    connection_made --> head (HEAD_TIMEOUT) --> body (HEAD_TIMEOUT) --> answer --> close
                          |                                              `--> linger: read away what the
                          `--> websocket upgrade: handed to websockets         client still sends, then close
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus

import h11
from websockets.datastructures import Headers
from websockets.http11 import MAX_LINE_LENGTH, MAX_NUM_HEADERS

from .convert import ApiError

HEAD_TIMEOUT = 10.0  # seconds for a request head, for its body, and for reading away a refused body
MAX_HEAD_BYTES = 16 << 10
SINGLE = (b"host", b"origin", b"authorization", b"content-length", b"transfer-encoding")  # each at most once
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")  # RFC 9110: no control characters (h11 lets \x01 by)
log = logging.getLogger("bridge")


class HttpConnection:
    """One connection's HTTP side: h11 fed by the asyncio protocol, one request answered by `handler`."""

    def __init__(self, transport: asyncio.Transport, handler: Callable[[HttpConnection], Awaitable[None]], *,
                 port: int, max_body: int, max_drain: int, drain: Callable[[], Awaitable[None]]):  # fmt: skip
        self.transport, self.handler, self.drain = transport, handler, drain
        self.hosts = {b"127.0.0.1:%d" % port, b"localhost:%d" % port}  # what a page on another name cannot send
        self.max_body, self.max_drain = max_body, max_drain  # a refused body is read away up to max_drain bytes
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self.loop = asyncio.get_running_loop()
        self.method, self.path, self.headers = "", "", Headers()
        self.length: int | None = None  # the body's Content-Length
        self.received = 0
        self.head = bytearray()  # the raw bytes until the head is parsed: h11 keeps no raw head
        self.body_parts = bytearray()
        self.body_ready = asyncio.Event()
        self.body_error: ApiError | None = None
        self.client_done = False  # it closed its side, or stalled: nothing more to read away
        self.lingering = False
        self.task: asyncio.Task | None = None
        self.timer: asyncio.TimerHandle | None = None
        self._arm()

    # ---------------------------------------------------------------- fed by the asyncio protocol

    def receive(self, data: bytes) -> bytes | None:
        """Take the client's bytes; returns the head (and what followed it) when it is a websocket upgrade."""
        self.received += len(data)
        if self.lingering:
            return self._read_away(data)
        if self.h11.their_state not in (h11.IDLE, h11.SEND_BODY):
            return None  # past its request: nothing more is read (one request a connection)
        if self.h11.their_state is h11.IDLE:
            self.head += data
        self.h11.receive_data(data)
        return self._parse()

    def receive_eof(self) -> None:
        """The client closed its side: inside its request that is a broken request (400); after it, the client
        has left (its request is cancelled)."""
        self.client_done = True
        if self.lingering or (self.task is not None and self.task.done()):
            self.transport.close()
        elif self.h11.their_state is h11.IDLE:
            if self.received:
                self._refuse(ApiError(400, "the connection ended inside the request head", code="bad_http"))
            else:
                self.transport.close()
        elif self.h11.their_state is h11.SEND_BODY:
            self._body_failed(ApiError(400, "the connection ended inside the request body", code="bad_http"))
        else:
            self.lost()
            self.transport.abort()

    def lost(self) -> None:
        """The connection is gone (or the client left): stop the handler, which cancels its request."""
        if self.timer is not None:
            self.timer.cancel()
        if self.task is not None and not self.task.done():
            self.task.cancel()

    # ---------------------------------------------------------------- for the handler

    async def body(self) -> bytes:
        """The request body; ApiError when it has no length (411), is too large (413), stalls (408) or breaks."""
        if "Transfer-Encoding" in self.headers or self.length is None:
            raise ApiError(411, "send the body with one Content-Length header, not chunked", code="length_required")
        if self.length > self.max_body:
            raise ApiError(413, f"a request body may hold at most {self.max_body} bytes, this one has {self.length}",
                           code="request_too_large")  # fmt: skip
        if self.h11.they_are_waiting_for_100_continue:  # curl asks so before bodies over 1 KiB
            self._send(h11.InformationalResponse(status_code=100, headers=[]))
        await self.body_ready.wait()
        if self.body_error is not None:
            raise self.body_error
        return bytes(self.body_parts)

    def send_json(self, status: int, body: str) -> None:
        """A whole JSON answer, unless one has started already."""
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        data = body.encode()
        self._respond(status, (b"content-type", b"application/json"), (b"content-length", b"%d" % len(data)))
        if self.method != "HEAD":  # h11 holds a HEAD answer to no body
            self._send(h11.Data(data=data))
        self._send(h11.EndOfMessage())

    def send_error(self, error: ApiError) -> None:
        self.send_json(error.status, error.response().model_dump_json())

    async def send_events(self, chunks: AsyncIterator[str]) -> None:
        """Server-sent events, one a chunk, then `[DONE]`; an ApiError before the first chunk goes up (an HTTP
        status), after it it is sent as an `{"error": ...}` event."""
        started = False

        def event(data: str) -> None:
            nonlocal started
            if not started:
                self._respond(200, (b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"))
                started = True
            self._send(h11.Data(data=f"data: {data}\n\n".encode()))

        try:
            async for chunk in chunks:
                event(chunk)
                await self.drain()
        except ApiError as e:
            if not started:
                raise
            event(e.response().model_dump_json())
        else:
            event("[DONE]")
        self._send(h11.EndOfMessage())

    # ---------------------------------------------------------------- the request

    def _parse(self) -> bytes | None:
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as e:
                if self.task is None:
                    return self._refuse(_protocol_error(e, self.hosts))
                return self._body_failed(ApiError(400, f"malformed request body: {e}", code="bad_http"))
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return None
            if isinstance(event, h11.Request):
                upgrade = self._on_head(event)
                if upgrade is not None or self.lingering or self.transport.is_closing():
                    return upgrade
            elif isinstance(event, h11.Data):
                if self.length is not None and self.length <= self.max_body:  # a larger one is refused unread
                    self.body_parts += event.data
            elif isinstance(event, h11.EndOfMessage):
                self.body_ready.set()
                self.timer.cancel()  # the answer may take as long as the model does
                return None

    def _on_head(self, event: h11.Request) -> bytes | None:
        """Check the head; hand a websocket upgrade back, or start the handler."""
        trailing = self.h11.trailing_data[0]
        raw, self.head = bytes(self.head[: len(self.head) - len(trailing)]), bytearray()
        self.method = event.method.decode("ascii")
        error = _check_head(event, raw, self.hosts)
        if error is None and _is_websocket(event):
            head, error = _websocket_head(event)
            if error is None:
                self.timer.cancel()
                return head + trailing
        if error is not None:
            return self._refuse(error)
        self.path = event.target.decode("ascii").split("?", 1)[0]
        self.headers = Headers([(name.decode("latin-1"), value.decode("latin-1"))
                                for name, value in event.headers.raw_items()])  # fmt: skip
        length = self.headers.get("Content-Length")  # h11 checked it: at most 20 digits
        self.length = int(length) if length is not None else None
        self._arm()  # now the body's deadline
        self.task = self.loop.create_task(self._serve())
        return None

    async def _serve(self) -> None:
        try:
            await self.handler(self)
        except ApiError as e:
            self.send_error(e)
        except Exception:  # a bug: this request fails, the bridge goes on
            log.exception("HTTP request failed: %s %s", self.method, self.path)
            self.send_error(ApiError(500, "the bridge failed on this request (its log says why)", type="server_error",
                                     code="internal_error"))  # fmt: skip
        self._finish()

    def _body_failed(self, error: ApiError) -> None:
        self.body_error = error
        self.body_ready.set()  # the handler answers with the error
        if self.task is not None and self.task.done():
            self.transport.close()

    # ---------------------------------------------------------------- answering and closing

    def _respond(self, status: int, *headers: tuple[bytes, bytes]) -> None:
        reason = HTTPStatus(status).phrase.encode()
        self._send(h11.Response(status_code=status, reason=reason, headers=[*headers, (b"connection", b"close")]))

    def _send(self, event: h11.Event) -> None:
        data = self.h11.send(event)
        if data and not self.transport.is_closing():
            self.transport.write(data)

    def _refuse(self, error: ApiError) -> None:
        self.send_error(error)
        self._finish()

    def _finish(self) -> None:
        """The answer is out: close; a client still sending has its rest read away first (closing on unread data
        sends a reset, which can destroy the answer before the client reads it)."""
        if self.transport.is_closing():
            return
        if self.client_done or self.h11.their_state in (h11.DONE, h11.MIGHT_SWITCH_PROTOCOL):
            self.transport.close()
            return
        self.lingering = True
        self.transport.write_eof()
        self._arm()
        self._read_away(b"")  # what h11 holds already (a refused GET's end, say)

    def _read_away(self, data: bytes) -> None:
        """While lingering: drop the client's bytes; close at the end of its body, or past max_drain bytes."""
        if self.received > self.max_drain:
            return self.transport.close()
        if self.h11.their_state is not h11.SEND_BODY:
            return None  # a broken head: drop bytes until the client stops or the deadline
        if data:  # (b"" would tell h11 the client closed)
            self.h11.receive_data(data)
        try:
            while (event := self.h11.next_event()) is not h11.NEED_DATA:
                if isinstance(event, h11.EndOfMessage):
                    return self.transport.close()
        except h11.RemoteProtocolError:
            self.transport.close()
        return None

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(HEAD_TIMEOUT, self._expire)

    def _expire(self) -> None:
        if self.lingering:
            return self.transport.close()
        self.client_done = True
        if self.task is not None:
            return self._body_failed(ApiError(408, f"the request body did not arrive within {HEAD_TIMEOUT:g} s",
                                              code="request_timeout"))  # fmt: skip
        if not self.received:
            return self.transport.close()  # a connection opened ahead of need (browsers do): no one to answer
        return self._refuse(ApiError(408, f"the request head did not arrive within {HEAD_TIMEOUT:g} s",
                                     code="request_timeout"))  # fmt: skip


# ---------------------------------------------------------------- checks of a head


def _check_head(event: h11.Request, raw: bytes, hosts: set[bytes]) -> ApiError | None:
    """What h11 lets by and the bridge does not serve: a huge head, another HTTP, control characters, repeated
    headers that decide who may talk, and a Host that is not this bridge."""
    if len(raw) > MAX_HEAD_BYTES:
        return _head_too_large()
    if event.http_version not in (b"1.0", b"1.1"):
        return ApiError(400, f"unsupported protocol HTTP/{event.http_version.decode()}: the bridge speaks HTTP/1.1",
                        code="bad_http")  # fmt: skip
    for name, value in event.headers.raw_items():
        if not _FIELD_VALUE.fullmatch(value):
            return ApiError(400, f"the {name.decode()} header holds control characters", code="invalid_header")
    lines = [line for line in raw.split(b"\n")[1:] if b":" in line and line[:1] not in b" \t"]  # not folded ones
    names = Counter(line.split(b":", 1)[0].strip().lower() for line in lines)
    for name in SINGLE:
        if names[name] > 1:
            return ApiError(400, f"the {name.decode()} header may appear once", code="duplicate_header")
    host = dict(event.headers).get(b"host")
    if host is None or host.lower() not in hosts:
        return _host_refused(host, hosts)
    return None


def _is_websocket(event: h11.Request) -> bool:
    def tokens(name: bytes) -> set[bytes]:
        return {t.strip().lower() for n, v in event.headers if n == name for t in v.split(b",")}

    return b"upgrade" in tokens(b"connection") and b"websocket" in tokens(b"upgrade")


def _websocket_head(event: h11.Request) -> tuple[bytes, ApiError | None]:
    """The upgrade's head as websockets reads it (one CRLF per line), or why it would not read it."""
    headers = dict(event.headers)
    if headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers:
        return b"", ApiError(400, "a websocket handshake has no body", code="bad_http")
    lines = [b"%s %s HTTP/%s" % (event.method, event.target, event.http_version),
             *(b"%s: %s" % item for item in event.headers.raw_items())]  # fmt: skip
    if len(lines) > MAX_NUM_HEADERS or max(map(len, lines)) + 2 > MAX_LINE_LENGTH:
        return b"", _head_too_large()
    return b"".join(line + b"\r\n" for line in lines) + b"\r\n", None


def _protocol_error(error: h11.RemoteProtocolError, hosts: set[bytes]) -> ApiError:
    if error.error_status_hint == 431:
        return _head_too_large()
    if str(error) == "Missing mandatory Host: header":
        return _host_refused(None, hosts)
    if str(error) == "Found multiple Host: headers":
        return ApiError(400, "the host header may appear once", code="duplicate_header")
    return ApiError(400, f"malformed HTTP request: {error}", code="bad_http")


def _head_too_large() -> ApiError:
    return ApiError(431, f"the request head is too large: at most {MAX_HEAD_BYTES} bytes (and for a websocket "
                    f"handshake {MAX_NUM_HEADERS} headers of {MAX_LINE_LENGTH} bytes)",
                    code="headers_too_large")  # fmt: skip


def _host_refused(host: bytes | None, hosts: set[bytes]) -> ApiError:
    """421: a request addressed to another name (a DNS-rebinding page's) or to none."""
    named = f"Host {host.decode('latin-1')!r}" if host is not None else "no Host header"
    served = " or ".join(sorted(h.decode() for h in hosts))
    return ApiError(421, f"the bridge serves requests addressed to {served}, not {named}", type="permission_error",
                    code="host_not_allowed")  # fmt: skip
