"""The one definition of the messages between side panel, service worker, offscreen document, host and bridge.

Every message is an envelope `{kind, id, content}` of plain JSON data. `id` names a request (any string or
integer the asker chooses); replies carry the id of their request, and news about the model (load progress,
ready, a failed load) carries id null. The extension adds `target` ("worker" | "offscreen" | "panel"), which
only its JavaScript reads.

    kind       from -> to                    content
    chat       panel|bridge -> host          {messages: [{role, content}], options: SamplingOptions fields}
    summarize  panel -> host                 {text, title, options, chunk_tokens?}
    stop       panel|bridge -> host          null (id: the request to stop; queued ones end at once)
    status     panel|bridge -> host          null; answered at once, even mid-generation, with the host's last
                                             load message under the status's id (the bridge's liveness ping)
    reload     panel -> service worker       null: start a fresh engine document (new engine settings)
    progress   host -> all                   {stage, done, total}
    ready      host -> all                   {model, n_ctx, adapter, seats}
    chunk      host -> asker                 {text, token_id}
    part       host -> asker                 {part, parts} (a long summary, part by part)
    done       host -> asker                 {finish_reason, token_ids, n_tokens, seconds, tokens_per_s, stopped,
                                              prompt_tokens, prompt_seconds, parts?}
    error      host -> asker (or all: id     {type: a name in engine/errors.py ERRORS, message}
               null, the load failed)
    hello      client|provider <-> bridge    the bridge's websocket greeting (bridge/api.py)
    models     client <-> bridge             the bridge's model list (bridge/api.py)
    token      worker -> native host         null: the bridge's token; answered {token, port} or {error}
                                             (bridge/native_host.py)
               offscreen -> worker           null: the same, answered {tokens}: the native host's, and the one
                                             pairing gave (chrome.storage), to try in turn
    pair       panel -> offscreen            {code}: present this one-time pairing code to the bridge
               offscreen -> panel            {token} under the same id once the bridge took the code (the panel
                                             keeps it); a refused code answers error

JavaScript gets the kinds, the error names and the shared defaults from `protocol.js`, which build.py writes
from `javascript()` below; tests/test_protocol.py holds the extension's sources to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from .config import DEFAULT_N_CTX, DEFAULT_SEATS
from .errors import ERRORS, InvalidRequest, named
from .sampler import SamplingOptions

BRIDGE_PORT = 8741  # where the bridge listens on 127.0.0.1 and the extension looks for it, unless set otherwise
NATIVE_HOST = "dev.hearth.bridge"  # the native-messaging host that hands the extension the bridge's token
MAX_ID_CHARS = 128

RequestId = str | int


class Kind(StrEnum):
    """Every message kind; the table in this module's docstring says who sends each and what it carries."""

    CHAT = "chat"
    SUMMARIZE = "summarize"
    STOP = "stop"
    STATUS = "status"
    RELOAD = "reload"
    PROGRESS = "progress"
    READY = "ready"
    CHUNK = "chunk"
    PART = "part"
    DONE = "done"
    ERROR = "error"
    HELLO = "hello"
    MODELS = "models"
    TOKEN = "token"
    PAIR = "pair"


REQUEST_KINDS = frozenset({Kind.CHAT, Kind.SUMMARIZE})  # queued, and answered by chunks then done or error
FINAL_KINDS = frozenset({Kind.DONE, Kind.ERROR})  # a request's last message


@dataclass(frozen=True)
class Message:
    """One envelope. `to_dict` gives the plain data that travels; `from_dict` checks data that arrived."""

    kind: Kind
    id: RequestId | None = None
    content: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "id": self.id, "content": self.content}

    @classmethod
    def from_dict(cls, data: Any) -> Message:
        """A message from received data; InvalidRequest names what is wrong with it."""
        if not isinstance(data, dict):
            raise InvalidRequest(f"a message is a JSON object {{kind, id, content}}, not {type(data).__name__}")
        try:
            kind = Kind(data.get("kind"))
        except ValueError:
            raise InvalidRequest(f"unknown message kind {data.get('kind')!r}") from None
        id = data.get("id")
        if id is not None and not _valid_id(id):
            raise InvalidRequest(f"a message id is a string of 1 to {MAX_ID_CHARS} characters or an integer")
        return cls(kind, id, data.get("content"))


def _valid_id(id: Any) -> bool:
    return (isinstance(id, int) and not isinstance(id, bool)) or (isinstance(id, str) and 0 < len(id) <= MAX_ID_CHARS)


# ---------------------------------------------------------------- builders of the host's replies


def progress(stage: str, done: int, total: int) -> Message:
    """Load news: `stage` is one of pyodide, packages, download, gpu, weights (the panel names them)."""
    return Message(Kind.PROGRESS, None, {"stage": stage, "done": done, "total": total})


def error(id: RequestId | None, cause: BaseException) -> Message:
    """An error as it crosses the protocol: its name in engine/errors.py and its message."""
    error = named(cause)
    return Message(Kind.ERROR, id, {"type": type(error).__name__, "message": str(error)})


# ---------------------------------------------------------------- what JavaScript shares


def defaults() -> dict[str, Any]:
    """The defaults the extension shows and uses: bridge port, native host, context size, requests answered
    at once and sampling options."""
    sampling = {f.name: f.default for f in fields(SamplingOptions)}
    sampling["stop"] = list(sampling["stop"])
    return {"bridge_port": BRIDGE_PORT, "native_host": NATIVE_HOST, "n_ctx": DEFAULT_N_CTX, "seats": DEFAULT_SEATS,
            "sampling": sampling}


def javascript() -> str:
    """protocol.js: this module's kinds, the error names and the shared defaults, as an ES module."""
    kinds = {kind.name: kind.value for kind in Kind}
    errors = {name: name for name in ERRORS}
    return (
        "// Written by build.py from engine/protocol.py (the one definition of Hearth's messages): do not edit.\n"
        f"export const Kind = Object.freeze({json.dumps(kinds)});\n"
        f"export const ErrorType = Object.freeze({json.dumps(errors)});\n"
        f"export const DEFAULTS = Object.freeze({json.dumps(defaults())});\n"
    )



# ---------------------------------------------------------------- contents that arrive

_OPTION_NAMES = {f.name for f in fields(SamplingOptions)}


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
