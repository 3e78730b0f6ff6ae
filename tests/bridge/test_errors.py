"""Bad requests over both transports get OpenAI-shaped errors, and the bridge keeps serving.

A table of malformed HTTP requests (as llama.cpp's server tests have), then property tests with
hypothesis: arbitrary bodies, arbitrary JSON, mutated requests, arbitrary frames and tokens. The
provider is the echo provider, so no case costs GPU time.
"""

from __future__ import annotations

import http.client
import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from bridge.api import ChatCompletionRequest
from bridge.security import extension_origin
from bridge.server import MAX_FRAME_BYTES, MAX_REQUEST_BYTES

VALID = {"model": "echo", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 4}
ERROR_TYPES = {"invalid_request_error", "authentication_error", "permission_error", "not_found_error",
               "rate_limit_error", "server_error"}  # fmt: skip
# The bridge's keepalive pings draw from `random` on its own thread: not the strategies' doing.
pytestmark = pytest.mark.filterwarnings("ignore:Do not use the `random` module")
FAST = settings(deadline=None, suppress_health_check=list(HealthCheck), max_examples=400)


def post(bridge, path, body, headers=None, method="POST", auth=True):
    """One HTTP request; returns (status, decoded JSON body)."""
    conn = http.client.HTTPConnection("127.0.0.1", bridge.server.port, timeout=10)
    all_headers = {"Authorization": f"Bearer {bridge.token}"} if auth else {}
    all_headers.update(headers or {})
    if not isinstance(body, bytes | str | None):
        body = json.dumps(body)
    conn.request(method, path, body=body, headers=all_headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data)


def assert_error(status, body, expected_status=None, expected_type=None):
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["type"] in ERROR_TYPES and error["message"], error
    if expected_status is not None:
        assert status == expected_status, body
    if expected_type is not None:
        assert error["type"] == expected_type, body
    return error


def assert_serving(bridge):
    status, body = post(bridge, "/v1/chat/completions", VALID)
    assert status == 200 and body["choices"][0]["message"]["content"] == "hello there ", body


def with_(**changes):
    return {**VALID, **changes}


CASES = [
    ("not json", "{'messages': ", 400, "invalid_json", None),
    ("json array", [1, 2], 400, "invalid_type", None),
    ("no messages", {"model": "echo"}, 400, "invalid_value", "messages"),
    ("empty messages", with_(messages=[]), 400, "invalid_value", "messages"),
    ("unknown field", with_(tools=[]), 400, "unknown_parameter", "tools"),
    ("string temperature", with_(temperature="0.5"), 400, "invalid_type", "temperature"),
    ("temperature too high", with_(temperature=3), 400, "invalid_value", "temperature"),
    ("float max_tokens", with_(max_tokens=4.0), 400, "invalid_type", "max_tokens"),
    ("zero max_tokens", with_(max_tokens=0), 400, "invalid_value", "max_tokens"),
    ("string stream", with_(stream="yes"), 400, "invalid_type", "stream"),
    ("n=2", with_(n=2), 400, "invalid_value", "n"),
    ("bad role", with_(messages=[{"role": "robot", "content": "x"}]), 400, "invalid_value", "messages.0.role"),
    ("unknown message field", with_(messages=[{"role": "user", "content": "x", "tool_calls": []}]), 400,
     "unknown_parameter", "messages.0.tool_calls"),
    ("five stops", with_(stop=["a", "b", "c", "d", "e"]), 400, "invalid_value", "stop"),
    ("empty stop", with_(stop=""), 400, "invalid_value", "stop"),
    ("seed as string", with_(seed="7"), 400, "invalid_type", "seed"),
    ("top_p zero", with_(top_p=0), 400, "invalid_value", "top_p"),
    ("image part", with_(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]), 400,
     None, None),
]  # fmt: skip


@pytest.mark.parametrize("name, body, status, code, param", CASES, ids=[c[0] for c in CASES])
def test_malformed_requests_get_openai_errors(bridge, echo, name, body, status, code, param):
    got_status, got = post(bridge, "/v1/chat/completions", body)
    error = assert_error(got_status, got, status, "invalid_request_error")
    if code:
        assert error["code"] == code, error
    if param:
        assert error["param"] == param, error
    assert_serving(bridge)


def test_http_surface_errors(bridge, echo):
    assert_error(*post(bridge, "/v1/nothing", VALID), 404, "not_found_error")
    assert_error(*post(bridge, "/v1/chat/completions", None, method="GET"), 405)
    assert_error(*post(bridge, "/v1/chat/completions", VALID, auth=False), 401, "authentication_error")
    assert_error(*post(bridge, "/v1/models", None, method="GET", auth=False), 401, "authentication_error")
    wrong = {"Authorization": "Bearer " + "x" * 43}
    assert_error(*post(bridge, "/v1/chat/completions", VALID, headers=wrong), 401, "authentication_error")
    page = {"Origin": "http://127.0.0.1:8000"}
    assert_error(*post(bridge, "/v1/chat/completions", VALID, headers=page), 403, "permission_error")
    big = json.dumps(with_(user="x" * MAX_REQUEST_BYTES))
    error = assert_error(*post(bridge, "/v1/chat/completions", big), 413)
    assert error["code"] == "request_too_large"
    # the extension's own origin passes the origin wall, and still needs the token (any program can send it)
    extension = {"Origin": extension_origin()}
    assert_error(*post(bridge, "/v1/models", None, method="GET", auth=False, headers=extension), 401)
    status, models = post(bridge, "/v1/models", None, method="GET", headers=extension)
    assert status == 200 and models["data"][0]["id"] == "echo-1"
    assert_serving(bridge)


def test_a_slow_or_broken_http_client_does_not_hurt(bridge, echo):
    import socket

    for raw in (b"GET /v1/models HTTP/1.1\r\n", b"\x16\x03\x01\x00\xa5\x01", b"POST / HTTP/9\r\n\r\n", b"\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", bridge.server.port), timeout=5) as s:
            s.sendall(raw)
    assert_serving(bridge)


# ---------------------------------------------------------------- property tests: HTTP


@FAST
@given(body=st.binary(max_size=300))
def test_any_bytes_as_body(bridge, echo, body):
    status, got = post(bridge, "/v1/chat/completions", body)
    assert_error(status, got, 400, "invalid_request_error")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


@FAST
@given(body=JSON)
def test_any_json_as_body(bridge, echo, body):
    status, got = post(bridge, "/v1/chat/completions", json.dumps(body))
    assert_error(status, got, 400, "invalid_request_error")


FIELDS = sorted(ChatCompletionRequest.model_fields)


@FAST
@given(field=st.sampled_from(FIELDS) | st.text(min_size=1, max_size=12), value=JSON)
@example(field="repetition_penalty", value=float("inf"))  # once answered with no param
@example(field="temperature", value=float("-inf"))
def test_any_value_in_any_field(bridge, echo, field, value):
    body = {**VALID, field: value}
    if field == "stream":
        body.pop("stream")  # a stream answers in events, tested elsewhere
    status, got = post(bridge, "/v1/chat/completions", body)
    if status == 200:  # the value happened to be valid
        assert got["object"] == "chat.completion" and got["usage"]["total_tokens"] > 0
    else:
        error = assert_error(status, got, 400, "invalid_request_error")
        assert error["param"] == field or error["param"].startswith(field + "."), (field, error)


@FAST
@given(token=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=60))
def test_any_wrong_token(bridge, echo, token):
    status, got = post(bridge, "/v1/models", None, method="GET", headers={"Authorization": f"Bearer {token}"})
    assert_error(status, got, 401, "authentication_error")


@FAST
@given(origin=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=60))
def test_any_foreign_origin(bridge, echo, origin):
    status, got = post(bridge, "/v1/models", None, method="GET", headers={"Origin": origin})
    if origin == extension_origin():
        assert status == 200
    else:
        assert_error(status, got, 403, "permission_error")


# ---------------------------------------------------------------- websocket frames


@pytest.fixture(scope="module")
def ws(bridge, echo):
    """One authenticated client connection, shared by the frame property tests."""
    with connect(bridge.url, additional_headers={"Authorization": f"Bearer {bridge.token}"}) as conn:
        conn.send(json.dumps({"kind": "hello", "id": None, "content": {"role": "client"}}))
        assert json.loads(conn.recv(timeout=5))["kind"] == "hello"
        yield conn


def answer(ws, message):
    """Send a frame; read until its final answer (error, done, models or hello)."""
    ws.send(message)
    while True:
        reply = json.loads(ws.recv(timeout=10))
        if reply["kind"] in ("error", "done", "models", "hello"):
            return reply


@FAST
@given(message=st.binary(max_size=200) | st.text(max_size=200))
def test_any_frame(ws, message):
    reply = answer(ws, message)
    assert reply["kind"] == "error"
    assert_error(None, reply["content"], None, "invalid_request_error")


@FAST
@given(kind=st.sampled_from(["chat", "stop", "models", "hello", "chunk", "done"]) | st.text(max_size=8),
       id=JSON, content=JSON)  # fmt: skip
def test_any_envelope(ws, kind, id, content):
    frame = json.dumps({"kind": kind, "id": id, "content": content})
    if kind == "stop" and content is None:
        return  # a well-formed stop is answered by nothing (it stops what is streaming)
    reply = answer(ws, frame)
    if reply["kind"] == "error":
        assert_error(None, reply["content"], None, "invalid_request_error")
    assert answer(ws, json.dumps({"kind": "models", "id": "check"}))["kind"] == "models"


@FAST
@given(field=st.sampled_from(FIELDS), value=JSON)
def test_any_chat_frame(ws, field, value):
    content = {**VALID, field: value}
    reply = answer(ws, json.dumps({"kind": "chat", "id": "c", "content": content}))
    if reply["kind"] == "error":
        error = assert_error(None, reply["content"], None, "invalid_request_error")
        assert error["param"] == field or error["param"].startswith(field + "."), (field, error)
    else:
        assert reply["kind"] == "done" and reply["content"]["object"] == "chat.completion"


def test_frame_limits(bridge, ws):
    big = json.dumps({"kind": "chat", "id": "big", "content": {**VALID, "user": "x" * MAX_REQUEST_BYTES}})
    reply = answer(ws, big)
    assert reply["id"] == "big" and reply["content"]["error"]["code"] == "request_too_large"
    with connect(bridge.url, additional_headers={"Authorization": f"Bearer {bridge.token}"}) as conn:
        conn.send(json.dumps({"kind": "hello", "content": {}}))
        conn.recv(timeout=5)
        conn.send("x" * (MAX_FRAME_BYTES + 1))
        with pytest.raises(ConnectionClosed) as closed:
            conn.recv(timeout=5)
        assert closed.value.rcvd.code == 1009  # message too big: websockets closes without reading it
    assert answer(ws, json.dumps({"kind": "models", "id": 1}))["content"]["data"][0]["id"] == "echo-1"


def test_websocket_authentication(bridge, echo):
    with connect(bridge.url) as conn:  # no header, a hello without token
        conn.send(json.dumps({"kind": "chat", "id": 1, "content": VALID}))
        reply = json.loads(conn.recv(timeout=5))
        assert reply["kind"] == "error" and reply["content"]["error"]["type"] == "authentication_error"
        with pytest.raises(ConnectionClosed):
            conn.recv(timeout=5)
    with connect(bridge.url) as conn:  # a wrong token in the hello
        conn.send(json.dumps({"kind": "hello", "content": {"token": "nope"}}))
        assert json.loads(conn.recv(timeout=5))["content"]["error"]["code"] == "invalid_token"
    with connect(bridge.url) as conn:  # the right token in the hello
        conn.send(json.dumps({"kind": "hello", "content": {"token": bridge.token}}))
        assert json.loads(conn.recv(timeout=5))["kind"] == "hello"
        reply = answer(conn, json.dumps({"kind": "chat", "id": 1, "content": VALID}))
        assert reply["content"]["choices"][0]["message"]["content"] == "hello there "
    for headers, status in (({"Origin": "http://127.0.0.1:8000"}, 403), ({"Authorization": "Bearer nope"}, 401)):
        with pytest.raises(InvalidStatus) as refused:
            connect(bridge.url, additional_headers=headers)
        assert refused.value.response.status_code == status
        assert_error(status, json.loads(refused.value.response.body), status)


def test_a_second_provider_is_refused(bridge, echo):
    with connect(bridge.url, additional_headers={"Authorization": f"Bearer {bridge.token}"}) as conn:
        conn.send(json.dumps({"kind": "hello", "content": {"role": "provider"}}))
        assert json.loads(conn.recv(timeout=5))["content"]["error"]["code"] == "provider_taken"
    assert_serving(bridge)
