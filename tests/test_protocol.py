"""engine/protocol.py: the one definition of the messages, and the extension's JavaScript held to it."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import pytest

from engine.config import DEFAULT_N_CTX, DEFAULT_SEATS
from engine.errors import ERRORS, GpuUnavailable, HearthError, InvalidRequest
from engine.protocol import BRIDGE_PORT, Kind, Message, defaults, error, javascript
from engine.sampler import SamplingOptions

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [*sorted((ROOT / "extension").glob("*.js")), ROOT / "extension" / "sidepanel.html"]


def _js() -> dict[Path, str]:
    return {path: path.read_text() for path in SOURCES}


def test_the_javascript_uses_only_kinds_and_errors_the_protocol_defines():
    used_kinds, used_errors = set(), set()
    for text in _js().values():
        used_kinds |= set(re.findall(r"\bKind\.(\w+)", text))
        used_errors |= set(re.findall(r"\bErrorType\.(\w+)", text))
    assert used_kinds and used_kinds <= {kind.name for kind in Kind}, used_kinds - {kind.name for kind in Kind}
    assert used_errors and used_errors <= set(ERRORS), used_errors - set(ERRORS)


@pytest.mark.parametrize("pattern", [
    r"kind\s*(===|!==|==|:)\s*[\"'`]",  # a kind written as a literal, not Kind.X
    r"\bsend\(\s*[\"'`]",  # the panel's send("chat", ...)
    r"type\s*(===|!==|==|:)\s*[\"'`][A-Z]",  # an error name written out, not ErrorType.X
])  # fmt: skip
def test_the_javascript_writes_no_kind_or_error_name_by_hand(pattern):
    for path, text in _js().items():
        found = [line.strip() for line in text.splitlines() if re.search(pattern, line)]
        assert not found, f"{path.name}: {found}"


def test_shared_constants_are_written_once_per_language():
    """The port, the context size and the sampling defaults: Python's single copies feed protocol.js, and no
    other source spells them out."""
    python = [*ROOT.glob("engine/**/*.py"), *ROOT.glob("bridge/*.py"), *ROOT.glob("scripts/*")]
    homes = {ROOT / "engine" / "protocol.py", ROOT / "engine" / "config.py"}
    for path in [*python, *SOURCES]:
        if path in homes:
            continue
        text = path.read_text()
        assert not re.search(rf"\b{BRIDGE_PORT}\b", text), f"{path.name} spells out the bridge port"
        assert not re.search(rf"n_ctx\W[^\n]*\b{DEFAULT_N_CTX}\b", text), f"{path.name} spells out the context size"
    panel = (ROOT / "extension" / "sidepanel.js").read_text()
    assert not re.search(r"(temperature|top_p|top_k|max_tokens):\s*[\d.]", panel), "sampling defaults copied"


def test_protocol_js_carries_python_s_values():
    text = javascript()
    tables = dict(re.findall(r"export const (\w+) = Object\.freeze\((.*)\);", text))
    assert json.loads(tables["Kind"]) == {kind.name: kind.value for kind in Kind}
    assert json.loads(tables["ErrorType"]) == {name: name for name in ERRORS}
    shared = json.loads(tables["DEFAULTS"])
    assert shared["bridge_port"] == BRIDGE_PORT and shared["n_ctx"] == DEFAULT_N_CTX
    assert shared["seats"] == DEFAULT_SEATS
    assert shared["sampling"] == {f.name: json.loads(json.dumps(f.default)) for f in fields(SamplingOptions)}
    assert defaults() == shared


def test_every_error_that_crosses_is_named_and_carries_an_http_status():
    for name, cls in ERRORS.items():
        assert issubclass(cls, HearthError) and cls.__name__ == name
        assert cls.status in (400, 500, 503) and cls.code
    assert error("a", GpuUnavailable("no adapter")).content == {"type": "GpuUnavailable", "message": "no adapter"}
    crash = error(None, KeyError("x"))  # a bug is named as one, with its Python type, never a traceback
    assert crash.content["type"] == "InternalError" and "KeyError" in crash.content["message"]


@pytest.mark.parametrize(("data", "why"), [
    ([], "JSON object"),
    ({"kind": "nonsense", "id": 1}, "unknown message kind"),
    ({"kind": "chat", "id": True}, "message id"),
    ({"kind": "chat", "id": ""}, "message id"),
    ({"kind": "chat", "id": "x" * 129}, "message id"),
    ({"kind": "chat", "id": 1.5}, "message id"),
])  # fmt: skip
def test_malformed_messages_are_named(data, why):
    with pytest.raises(InvalidRequest, match=why):
        Message.from_dict(data)


def test_a_message_travels_as_plain_data_and_back():
    message = Message(Kind.CHAT, "r1", {"messages": [], "options": {}})
    data = json.loads(json.dumps(message.to_dict()))
    assert data == {"kind": "chat", "id": "r1", "content": {"messages": [], "options": {}}}
    assert Message.from_dict({**data, "target": "offscreen"}) == message  # the extension's routing field is ignored
