"""Who gets in: the token is the only key. An Origin header, even the extension's, admits no one (any local
program can send it); a one-time pairing code admits the extension's provider once and hands it the token.
Against a real bridge, over both transports."""

from __future__ import annotations

import http.client
import json
import os
import stat
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import bridge as hearth_bridge
from bridge.security import (
    PAIRING_ALPHABET,
    PAIRING_CHARS,
    PAIRING_SECONDS,
    PAIRING_TRIES,
    Pairing,
    TokenFileError,
    ensure_token,
    extension_id,
    extension_origin,
    read_token,
)

CHAT = {"model": "echo", "messages": [{"role": "user", "content": "the secret plan"}], "max_tokens": 8}


# ---------------------------------------------------------------- the token file


def test_token_file_is_private_and_stable(tmp_path):
    path = tmp_path / "hearth" / "bridge-token"
    token = ensure_token(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert ensure_token(path) == token == read_token(path)  # a restart keeps a private token
    os.chmod(path, 0o644)
    assert ensure_token(path) != token and stat.S_IMODE(path.stat().st_mode) == 0o600  # a leaked one is replaced
    with pytest.raises(hearth_bridge.client.APIConnectionError):  # no bridge there
        hearth_bridge.Client("ws://127.0.0.1:9", token_file=path).models.list()


def test_the_token_folder_is_made_private_whatever_it_was(tmp_path):
    folder = tmp_path / "hearth"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)  # (mkdir's mode passes through the umask)
    token = ensure_token(folder / "bridge-token")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    os.chmod(folder, 0o755)  # loosened again while the token stays private: a restart closes it again
    assert ensure_token(folder / "bridge-token") == token and stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_a_shared_folder_is_refused_not_closed(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # as /tmp is
    with pytest.raises(TokenFileError, match="shared with other users"):
        ensure_token(shared / "bridge-token")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777


def test_extension_id_follows_the_pinned_key():
    assert len(extension_id()) == 32 and set(extension_id()) <= set("abcdefghijklmnop")


# ---------------------------------------------------------------- the pairing code, alone


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_pairing_code_works_once():
    announced = []
    pairing = Pairing(announced.append)
    code = pairing.code
    assert len(code) == PAIRING_CHARS and set(code) <= set(PAIRING_ALPHABET) and not announced
    assert pairing.shown() == f"{code[:4]}-{code[4:]}"
    assert pairing.redeem(f" {code[:4].lower()}-{code[4:]} ")  # as typed: case, dash and spaces do not matter
    assert pairing.code != code and announced == [pairing.shown()]  # used: a fresh one is printed
    assert not pairing.redeem(code)


def test_wrong_pairing_codes_are_counted_and_the_fifth_replaces_the_code():
    announced = []
    pairing = Pairing(announced.append)
    code = pairing.code
    for wrong in range(1, PAIRING_TRIES):
        assert not pairing.redeem("WRONG-123")
        assert pairing.wrong == wrong and pairing.code == code
    assert not pairing.redeem("")
    assert pairing.code != code and pairing.wrong == 0 and len(announced) == 1
    assert not pairing.redeem(code)


def test_a_pairing_code_expires():
    clock = Clock()
    pairing = Pairing(clock=clock)
    code = pairing.code
    clock.now = PAIRING_SECONDS + 1
    assert not pairing.redeem(code) and pairing.code != code
    assert pairing.redeem(pairing.code)  # the fresh one lives its own 10 minutes


# ---------------------------------------------------------------- a real bridge: HTTP


def request(bridge, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", bridge.server.port, timeout=10)
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers or {})
    response = conn.getresponse()
    data = json.loads(response.read())
    conn.close()
    return response.status, data


def test_a_forged_extension_origin_is_no_key_over_http(bridge, echo):
    """`curl -H 'Origin: chrome-extension://<id>' http://127.0.0.1:8741/v1/chat/completions -d ...`"""
    forged = {"Origin": extension_origin(), "Content-Type": "application/json"}
    status, body = request(bridge, "POST", "/v1/chat/completions", CHAT, forged)
    assert status == 401 and body["error"]["type"] == "authentication_error", body
    assert request(bridge, "GET", "/v1/models", headers=forged)[0] == 401
    with_token = {**forged, "Authorization": f"Bearer {bridge.token}"}  # the extension's origin may present it
    status, body = request(bridge, "POST", "/v1/chat/completions", CHAT, with_token)
    assert status == 200 and body["choices"][0]["message"]["content"] == "the secret plan ", body
    page = {"Origin": "http://127.0.0.1:8000", "Authorization": f"Bearer {bridge.token}"}  # the second wall
    assert request(bridge, "GET", "/v1/models", headers=page)[0] == 403


# ---------------------------------------------------------------- a real bridge: websockets


def refused(conn, code="invalid_token"):
    """The error frame a refused connection gets, then its close."""
    reply = json.loads(conn.recv(timeout=5))
    assert reply["kind"] == "error" and reply["content"]["error"]["type"] == "authentication_error", reply
    assert reply["content"]["error"]["code"] == code, reply
    with pytest.raises(ConnectionClosed):
        conn.recv(timeout=5)
    return reply


def test_a_forged_extension_origin_is_no_key_over_websocket(bridge, echo):
    before = list(bridge.hub.providers)
    with connect(bridge.url, origin=extension_origin()) as conn:  # as a client, straight to a request
        conn.send(json.dumps({"kind": "chat", "id": 1, "content": CHAT}))
        refused(conn)
    with connect(bridge.url, origin=extension_origin()) as conn:  # as a client, with a hello
        conn.send(json.dumps({"kind": "hello", "id": None, "content": {"role": "client"}}))
        refused(conn)
    with connect(bridge.url, origin=extension_origin()) as conn:  # as the provider
        conn.send(json.dumps({"kind": "hello", "id": None, "content": {"role": "provider"}}))
        refused(conn)
    assert bridge.hub.providers == before


def browser_providers(bridge, count, timeout=5.0):
    """The names of the hub's providers other than the native one, once there are `count` of them."""
    deadline = time.monotonic() + timeout
    while len(names := [p.name for p in bridge.hub.providers if not p.native]) != count:
        assert time.monotonic() < deadline, f"providers {names}, not {count}"
        time.sleep(0.01)
    return names


def wait_for_no_provider(bridge):
    browser_providers(bridge, 0)


@pytest.fixture()
def vacant(bridge, echo):
    """The provider slot, empty (the echo provider comes back afterwards)."""
    bridge.call(echo.stop())
    wait_for_no_provider(bridge)
    yield
    wait_for_no_provider(bridge)
    bridge.call(echo.start())


def test_a_rogue_provider_with_the_extension_origin_reads_no_prompt(bridge, vacant):
    with connect(bridge.url, origin=extension_origin()) as rogue:  # the slot is free: it would have been taken
        rogue.send(json.dumps({"kind": "hello", "id": None, "content": {"role": "provider"}}))
        heard = [rogue.recv(timeout=5)]
        with hearth_bridge.Client(bridge.url, token=bridge.token) as client:
            with pytest.raises(hearth_bridge.InternalServerError) as unserved:
                client.chat.completions.create(**CHAT)
        assert unserved.value.code == "no_provider"  # nobody took the rogue for the provider
        try:
            while True:
                heard.append(rogue.recv(timeout=1))
        except (ConnectionClosed, TimeoutError):
            pass
    assert [json.loads(m)["kind"] for m in heard] == ["error"], heard
    assert "secret" not in "".join(heard)


def test_a_provider_with_the_token_in_its_hello_registers(bridge, vacant):
    with connect(bridge.url, origin=extension_origin()) as conn:  # as the extension connects: no header
        conn.send(json.dumps({"kind": "hello", "id": None, "content": {"role": "provider", "token": bridge.token}}))
        hello = json.loads(conn.recv(timeout=5))
        assert hello["kind"] == "hello" and "token" not in hello["content"], hello
        assert browser_providers(bridge, 1) == ["browser extension"]  # (a label: the Origin vouches for nothing)


def test_the_pairing_code_admits_a_provider_once_and_hands_it_the_token(bridge, vacant):
    pairing = bridge.server.pairing
    code = pairing.shown()
    with connect(bridge.url, origin=extension_origin()) as conn:  # a wrong code first: refused, counted
        conn.send(json.dumps({"kind": "hello", "id": None, "content": {"role": "provider", "pairing_code": "AAAA"}}))
        refused(conn, "invalid_pairing_code")
    assert pairing.wrong == 1 and pairing.shown() == code
    with connect(bridge.url, origin=extension_origin()) as conn:  # a script may not pair
        conn.send(json.dumps({"kind": "hello", "id": None, "content": {"role": "client", "pairing_code": code}}))
        refused(conn, "invalid_pairing_code")
    with connect(bridge.url, origin=extension_origin()) as conn:
        conn.send(json.dumps({"kind": "hello", "id": None, "content": {"role": "provider", "pairing_code": code}}))
        hello = json.loads(conn.recv(timeout=5))
        assert hello["kind"] == "hello" and hello["content"]["token"] == bridge.token, hello
        browser_providers(bridge, 1)
    wait_for_no_provider(bridge)
    assert pairing.shown() != code  # used: the bridge printed a fresh one
    with connect(bridge.url, origin=extension_origin()) as conn:  # the same code again
        conn.send(json.dumps({"kind": "hello", "id": None, "content": {"role": "provider", "pairing_code": code}}))
        refused(conn, "invalid_pairing_code")
    assert not any(not p.native for p in bridge.hub.providers)
