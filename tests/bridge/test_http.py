"""The HTTP transport (bridge/http.py) over raw sockets against a real bridge: malformed heads and bodies,
size limits and deadlines, the Host wall on both transports, clients that leave mid-answer, and a fuzz of
whole requests. Every answer must be OpenAI-shaped JSON (or the 200 asked for), and nothing may log an error.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import struct
import time
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bridge.http as bridge_http
from bridge.server import MAX_FRAME_BYTES, MAX_REQUEST_BYTES

from .test_errors import VALID, assert_error

pytestmark = pytest.mark.filterwarnings("ignore:Do not use the `random` module")  # the bridge's pings, not ours
REFUSALS = {400, 401, 403, 404, 405, 408, 411, 413, 421, 431}
KEY = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 13"


@pytest.fixture(autouse=True)
def no_errors_logged():
    """The bridge's, websockets' and asyncio's loggers stay quiet at ERROR (each would be a traceback)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append
    logging.getLogger().addHandler(handler)
    yield records
    logging.getLogger().removeHandler(handler)
    assert not records, [f"{r.name}: {r.getMessage()}" for r in records]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self):
        assert self.headers.get("content-type") == "application/json", self
        return json.loads(self.body)


def fill(bridge, template: str, body: bytes = b"") -> bytes:
    """A raw request: {host}, {auth} and {length} stand for this bridge's Host, its token and the body's length."""
    text = template.format(host=f"Host: 127.0.0.1:{bridge.server.port}", auth=f"Authorization: Bearer {bridge.token}",
                           length=f"Content-Length: {len(body)}", key=KEY, port=bridge.server.port)  # fmt: skip
    return text.replace("\n", "\r\n").encode("utf-8", "surrogateescape") + b"\r\n\r\n" + body


def exchange(bridge, data: bytes, *, eof: bool = False, timeout: float = 5) -> Answer | None:
    """Send `data` (then FIN if `eof`) on a fresh connection; the answer, or None if it closed without one."""
    with socket.create_connection(("127.0.0.1", bridge.server.port), timeout=timeout) as sock:
        sock.sendall(data)
        if eof:
            sock.shutdown(socket.SHUT_WR)
        return read_answer(sock, bodiless=data.startswith(b"HEAD "))


def read_answer(sock: socket.socket, bodiless: bool = False) -> Answer | None:
    """One whole HTTP answer (interim 100s skipped), by its framing; None when the connection closes first.
    `bodiless`: the answer to a HEAD request, whose Content-Length has no body behind it."""
    buffer = b""

    def more() -> bool:
        nonlocal buffer
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            data = b""
        buffer += data
        return bool(data)

    while True:
        while b"\r\n\r\n" not in buffer:
            if not more():
                assert not buffer, f"the connection closed inside an answer's head: {buffer!r}"
                return None
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].startswith("HTTP/1.1 "), lines
        status = int(lines[0].split(" ")[1])
        headers = {name.strip().lower(): value.strip() for name, _, value in (h.partition(":") for h in lines[1:])}
        if status != 100:
            break
    if status == 101 or bodiless:
        return Answer(status, headers, b"")
    if headers.get("transfer-encoding") == "chunked":
        while not buffer.endswith(b"0\r\n\r\n") and more():
            pass
        return Answer(status, headers, _dechunk(buffer))
    length = int(headers.get("content-length", -1))  # none: the body ends with the connection (HTTP/1.0)
    while len(buffer) != length and more():
        pass
    assert length in (-1, len(buffer)), (status, headers, buffer)
    return Answer(status, headers, buffer)


def _dechunk(data: bytes) -> bytes:
    body = b""
    while True:
        size, _, data = data.partition(b"\r\n")
        if int(size, 16) == 0:
            return body
        body, data = body + data[: int(size, 16)], data[int(size, 16) + 2 :]


def refused(answer: Answer | None, status: int, code: str | None = None) -> dict:
    assert answer is not None, "no answer"
    error = assert_error(answer.status, answer.json(), status)
    if code is not None:
        assert error["code"] == code, error
    return error


CHAT = json.dumps(VALID).encode()
CASES = [
    # id, request template, body, FIN after it, status, code
    ("two origins, no token", "GET /v1/models HTTP/1.1\n{host}\nOrigin: a\nOrigin: b", b"", False, 400,
     "duplicate_header"),
    ("two authorizations", "GET /v1/models HTTP/1.1\n{host}\n{auth}\nAuthorization: Bearer x", b"", False, 400,
     "duplicate_header"),
    ("two hosts", "GET /v1/models HTTP/1.1\n{host}\n{host}\n{auth}", b"", False, 400, "duplicate_header"),
    ("two equal lengths", "POST /v1/chat/completions HTTP/1.1\n{host}\n{auth}\n{length}\n{length}", CHAT, False,
     400, "duplicate_header"),
    ("two lengths", "POST /v1/chat/completions HTTP/1.1\n{host}\n{auth}\n{length}\nContent-Length: 1", CHAT, False,
     400, "bad_http"),
    ("NUL in a header, no token", "GET /v1/models HTTP/1.1\n{host}\nX-Note: a\x00b", b"", False, 400, "bad_http"),
    ("control character in a header", "GET /v1/models HTTP/1.1\n{host}\n{auth}\nX-Note: a\x01b", b"", False, 400,
     "invalid_header"),
    ("non-ASCII digits in the length", "POST /v1/chat/completions HTTP/1.1\n{host}\n{auth}\nContent-Length: ١٢",
     b"12", False, 400, "bad_http"),
    ("5,000-digit length", "POST /v1/chat/completions HTTP/1.1\n{host}\n{auth}\nContent-Length: " + "9" * 5000,
     b"", False, 400, "bad_http"),
    ("negative length", "POST /v1/chat/completions HTTP/1.1\n{host}\n{auth}\nContent-Length: -1", b"", False, 400,
     "bad_http"),
    ("HTTP/2.0", "GET /v1/models HTTP/2.0\n{host}\n{auth}", b"", False, 400, "bad_http"),
    ("no version", "GET /v1/models\n{host}\n{auth}", b"", False, 400, "bad_http"),
    ("two spaces in the request line", "GET  /v1/models HTTP/1.1\n{host}\n{auth}", b"", False, 400, "bad_http"),
    ("a header without colon", "GET /v1/models HTTP/1.1\n{host}\n{auth}\nX-Note", b"", False, 400, "bad_http"),
    ("a space before the colon", "GET /v1/models HTTP/1.1\n{host}\n{auth}\nX-Note : a", b"", False, 400, "bad_http"),
    ("a bad method token", "G@T /v1/models HTTP/1.1\n{host}\n{auth}", b"", False, 400, "bad_http"),
    ("an unknown method", "BREW /v1/models HTTP/1.1\n{host}\n{auth}", b"", False, 405, "method_not_allowed"),
    ("gzip transfer coding", "POST /v1/chat/completions HTTP/1.1\n{host}\n{auth}\nTransfer-Encoding: gzip", b"",
     False, 400, "bad_http"),
    ("chunked body", "POST /v1/chat/completions HTTP/1.1\n{host}\n{auth}\nTransfer-Encoding: chunked",
     b"%x\r\n%s\r\n0\r\n\r\n" % (len(CHAT), CHAT), False, 411, "length_required"),
    ("no length", "POST /v1/chat/completions HTTP/1.1\n{host}\n{auth}", b"", False, 411, "length_required"),
    ("no Host", "GET /v1/models HTTP/1.1\n{auth}", b"", False, 421, "host_not_allowed"),
    ("no Host, HTTP/1.0", "GET /v1/models HTTP/1.0\n{auth}", b"", False, 421, "host_not_allowed"),
    ("body cut by FIN", "POST /v1/chat/completions HTTP/1.1\n{host}\n{auth}\nContent-Length: 100", b"{", True, 400,
     "bad_http"),
    ("websocket: two origins", "GET / HTTP/1.1\n{host}\nUpgrade: websocket\nConnection: Upgrade\n{key}\nOrigin: a\n"
     "Origin: b", b"", False, 400, "duplicate_header"),
    ("websocket: no key", "GET / HTTP/1.1\n{host}\n{auth}\nUpgrade: websocket\nConnection: Upgrade\n"
     "Sec-WebSocket-Version: 13", b"", False, 400, "bad_handshake"),
    ("websocket: bad key", "GET / HTTP/1.1\n{host}\n{auth}\nUpgrade: websocket\nConnection: Upgrade\n"
     "Sec-WebSocket-Key: short\nSec-WebSocket-Version: 13", b"", False, 400, "bad_handshake"),
    ("websocket: version 8", "GET / HTTP/1.1\n{host}\n{auth}\nUpgrade: websocket\nConnection: Upgrade\n"
     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 8", b"", False, 400, "bad_handshake"),
    ("websocket: POST", "POST / HTTP/1.1\n{host}\n{auth}\nUpgrade: websocket\nConnection: Upgrade\n{key}", b"",
     False, 405, "method_not_allowed"),
    ("websocket: a body", "GET / HTTP/1.1\n{host}\n{auth}\nUpgrade: websocket\nConnection: Upgrade\n{key}\n"
     "Content-Length: 2", b"{}", False, 400, "bad_http"),
    ("websocket: no token", "GET / HTTP/1.1\n{host}\nUpgrade: websocket\nConnection: Upgrade\n{key}\n"
     "Authorization: Bearer nope", b"", False, 401, "invalid_token"),
]  # fmt: skip


@pytest.mark.parametrize("template, body, eof, status, code", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_heads_and_bodies_get_openai_errors(bridge, echo, template, body, eof, status, code):
    refused(exchange(bridge, fill(bridge, template, body), eof=eof), status, code)


@pytest.mark.parametrize("data", [b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1", b"\x16\x03\x01\x00\xa5\x01"])
def test_a_head_cut_by_fin_gets_400(bridge, echo, data):
    refused(exchange(bridge, data, eof=True), 400, "bad_http")


def test_a_valid_request_is_served(bridge, echo):
    answer = exchange(bridge, fill(bridge, "POST /v1/chat/completions HTTP/1.1\n{host}\n{auth}\n{length}", CHAT))
    assert answer.status == 200 and answer.json()["choices"][0]["message"]["content"] == "hello there "
    assert answer.headers["connection"] == "close"


def test_a_head_over_16_kib_gets_431(bridge, echo):
    big = "X-Big: " + "x" * (bridge_http.MAX_HEAD_BYTES + 100)
    refused(exchange(bridge, fill(bridge, "GET /v1/models HTTP/1.1\n{host}\n{auth}\n" + big)), 431)
    lines = "\n".join(f"X-Line-{i}: {'y' * 100}" for i in range(200))  # many lines, sent whole in one go
    refused(exchange(bridge, fill(bridge, "GET /v1/models HTTP/1.1\n{host}\n{auth}\n" + lines)), 431)


def test_a_stalled_head_or_body_gets_408(bridge, echo, monkeypatch):
    monkeypatch.setattr(bridge_http, "HEAD_TIMEOUT", 0.3)
    started = time.monotonic()
    refused(exchange(bridge, b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1"), 408, "request_timeout")
    head = fill(bridge, "POST /v1/chat/completions HTTP/1.1\n{host}\n{auth}\nContent-Length: 100")
    refused(exchange(bridge, head + b'{"model"'), 408, "request_timeout")
    assert exchange(bridge, b"") is None  # a connection that said nothing is closed unanswered
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("length", [2 * MAX_REQUEST_BYTES, 8 * MAX_FRAME_BYTES], ids=["read away", "too large"])
def test_413_is_read_by_a_sender_that_keeps_sending(bridge, echo, length):
    head = fill(bridge, "POST /v1/chat/completions HTTP/1.1\n{host}\n{auth}\nContent-Length: " + str(length))
    with socket.create_connection(("127.0.0.1", bridge.server.port), timeout=10) as sock:
        sock.sendall(head)
        sent, chunk = 0, b"x" * 65536
        while sent < length and not select.select([sock], [], [], 0)[0]:  # send on until the answer is there
            sent += sock.send(chunk[: length - sent])
        refused(read_answer(sock), 413, "request_too_large")


def upgrade(bridge, host: str, auth: bool = True) -> bytes:
    return fill(bridge, f"GET / HTTP/1.1\nHost: {host}\n" + "{auth}\n" * auth + "Upgrade: websocket\n"
                "Connection: Upgrade\n{key}")  # fmt: skip


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1:1", "localhost", "127.0.0.1",
                                  "127.0.0.1:{port}.evil.example", "[::1]:{port}"])  # fmt: skip
def test_a_foreign_host_is_refused_before_the_token_is_looked_at(bridge, echo, host):
    host = host.format(port=bridge.server.port)
    for auth in (True, False):
        models = fill(bridge, f"GET /v1/models HTTP/1.1\nHost: {host}\n" + "{auth}" * auth)
        refused(exchange(bridge, models), 421, "host_not_allowed")
        refused(exchange(bridge, upgrade(bridge, host, auth)), 421, "host_not_allowed")


def test_this_bridge_by_name_is_served(bridge, echo):
    for host in (f"localhost:{bridge.server.port}", f"LocalHost:{bridge.server.port}"):
        answer = exchange(bridge, fill(bridge, f"GET /v1/models HTTP/1.1\nHost: {host}\n{{auth}}"))
        assert answer.status == 200 and answer.json()["data"][0]["id"] == "echo-1"
        assert exchange(bridge, upgrade(bridge, host)).status == 101


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("how", ["fin", "rst"])
def test_a_client_that_leaves_frees_the_model(bridge, provider, stream, how):
    echo = provider(delay=0.02)
    long = " ".join(f"word{i}" for i in range(300))  # 6 s if nobody stops it
    body = json.dumps({"messages": [{"role": "user", "content": long}], "max_tokens": 400, "stream": stream}).encode()
    with socket.create_connection(("127.0.0.1", bridge.server.port), timeout=5) as sock:
        sock.sendall(fill(bridge, "POST /v1/chat/completions HTTP/1.1\n{host}\n{auth}\n{length}", body))
        if stream:
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")  # the stream began
        deadline = time.monotonic() + 5
        while not echo.engine.served and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # a few words in
        if how == "rst":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            sock.shutdown(socket.SHUT_WR)
    started = time.monotonic()
    answer = exchange(bridge, fill(bridge, "POST /v1/chat/completions HTTP/1.1\n{host}\n{auth}\n{length}", CHAT))
    assert answer.json()["choices"][0]["message"]["content"] == "hello there "
    assert time.monotonic() - started < 2  # the model was freed, not busy with the abandoned answer
    assert echo.engine.closed_early == [long]


def test_an_sdk_timeout_frees_the_model(bridge, provider):
    """The official `openai` client giving up (timeout=1, no retries) closes its socket: that cancels too."""
    import openai

    echo = provider(delay=0.02)
    long = " ".join(f"word{i}" for i in range(300))
    client = openai.OpenAI(base_url=f"{bridge.http}/v1", api_key=bridge.token, timeout=1, max_retries=0)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": long}], max_tokens=400)
    started = time.monotonic()
    answer = client.with_options(timeout=10).chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hello there"}], max_tokens=8)
    assert answer.choices[0].message.content == "hello there "
    assert time.monotonic() - started < 2
    assert echo.engine.closed_early == [long]


# ---------------------------------------------------------------- a fuzz of whole requests

TOKEN_CHARS = st.characters(min_codepoint=33, max_codepoint=126)
NOISE = st.text(st.characters(max_codepoint=255, exclude_categories=["Cs"]), max_size=12)
NAMES = st.sampled_from(["Host", "Authorization", "Origin", "Content-Length", "Transfer-Encoding", "Expect",
                         "Connection", "Upgrade", "Sec-WebSocket-Key", "Sec-WebSocket-Version"])  # fmt: skip
VALUES = st.sampled_from(["{HOST}", "Bearer {TOKEN}", "{LENGTH}", "chunked", "100-continue", "Upgrade",
                          "websocket", "dGhlIHNhbXBsZSBub25jZQ==", "13", "0", "-1", "localhost:{PORT}",
                          "evil.example", ""])  # fmt: skip
PARTS = {  # what a mutation may put in place of the request line's parts and the body
    "method": st.sampled_from(["GET", "HEAD", "PUT", "OPTIONS"]) | st.text(TOKEN_CHARS, max_size=8),
    "target": st.sampled_from(["/v1/models", "/", "/v1/models?a=b", "*"]) | st.text(TOKEN_CHARS, max_size=12),
    "version": st.sampled_from(["HTTP/1.0", "HTTP/2.0", "HTTP/1.1 ", "http/1.1", "HTTP/1"]),
    "body": st.sampled_from([b"", json.dumps({**VALID, "stream": True}).encode()]) | st.binary(max_size=64),
}


@st.composite
def requests(draw) -> tuple[str, bytes, int | None]:
    """A valid request with up to three mutations: a part replaced, a header dropped, repeated or added (names
    and values the bridge reads, or noise), bare LF line ends, or the bytes cut short (then a FIN)."""
    parts = {"method": "POST", "target": "/v1/chat/completions", "version": "HTTP/1.1", "body": CHAT}
    headers = [("Host", "{HOST}"), ("Authorization", "Bearer {TOKEN}"), ("Content-Length", "{LENGTH}")]
    end, cut = "\r\n", None
    for mutation in draw(st.lists(st.sampled_from([*PARTS, "drop", "repeat", "add", "add", "lf", "cut"]),
                                  max_size=3)):  # fmt: skip
        if mutation in PARTS:
            parts[mutation] = draw(PARTS[mutation])
        elif mutation in ("drop", "repeat") and headers:
            i = draw(st.integers(0, len(headers) - 1))
            headers[i : i + 1] = [] if mutation == "drop" else [headers[i]] * 2
        elif mutation == "add":
            headers.insert(draw(st.integers(0, len(headers))), (draw(NAMES | st.text(TOKEN_CHARS, max_size=8)),
                                                                draw(VALUES | NOISE)))  # fmt: skip
        elif mutation == "lf":
            end = "\n"
        elif mutation == "cut":
            cut = draw(st.integers(1, 400))
    head = end.join([f"{parts['method']} {parts['target']} {parts['version']}", *map(": ".join, headers)])
    return head + end + end, parts["body"], cut


@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(sample=requests())
def test_fuzzed_requests_get_openai_answers(bridge, echo, monkeypatch, no_errors_logged, sample):
    monkeypatch.setattr(bridge_http, "HEAD_TIMEOUT", 0.5)  # (a body shorter than its length waits for it)
    head, body, cut = sample
    values = {"{HOST}": f"127.0.0.1:{bridge.server.port}", "{TOKEN}": bridge.token, "{LENGTH}": str(len(body)),
              "{PORT}": str(bridge.server.port)}  # fmt: skip
    for name, value in values.items():
        head = head.replace(name, value)
    data = (head.encode("latin-1") + body)[:cut]
    answer = exchange(bridge, data, eof=cut is not None)
    if answer is None:
        assert cut is not None, "no answer"  # only a client that left (FIN after a whole request) gets none
    elif answer.status == 200:
        if answer.headers["content-type"] == "text/event-stream":
            assert answer.body.endswith(b"data: [DONE]\n\n")
        elif not head.startswith("HEAD "):
            assert answer.json()["object"] in ("list", "chat.completion")
    elif answer.status != 101:  # a websocket handshake that happened to be right
        assert answer.status in REFUSALS | {505}, answer
        if not head.startswith("HEAD "):
            refused(answer, answer.status)
    assert not no_errors_logged, [r.getMessage() for r in no_errors_logged]
