"""The bridge's side of the protocol, as pydantic models: OpenAI chat completions and the bridge's frames.

The bridge validates everything that reaches it: requests are strict (an unknown field, or a value of the
wrong JSON type, is an error that names it; a string is never silently read as a number). Responses and
chunks have OpenAI's shapes, so the official `openai` package parses them. The engine takes plain data
(engine/protocol.py); nothing here ships into the browser.

Frames are engine/protocol.py's envelope `{kind, id, content}`, one JSON object per websocket message:

  client -> bridge    hello {role: "client", token} · chat (id, a ChatCompletionRequest) · stop (id) · models
  bridge -> client    hello {server, max_request_bytes} · chunk (id, a ChatCompletionChunk) ·
                      done (id, the ChatCompletion, usage included) · error (id or null, an ErrorResponse) ·
                      models (id, a ModelList)
  provider -> bridge  hello {role: "provider", token | pairing_code} · then the engine host's replies
                      (progress, ready, chunk, part, done, error)
  bridge -> provider  hello (with `token` when a pairing code admitted it) · chat (id, {messages, options}) ·
                      stop (id) — the engine host's input
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model, field_validator

from engine.protocol import MAX_ID_CHARS, Kind, Message
from engine.sampler import MAX_STOPS

MAX_MESSAGES = 4096

_strict = ConfigDict(extra="forbid", strict=True)

# ---------------------------------------------------------------- requests


class TextPart(BaseModel):
    """One part of a message's content; only text parts are served."""

    model_config = _strict
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """One message of the conversation."""

    model_config = _strict
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        """The content as one string (text parts joined)."""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    model_config = _strict
    include_usage: bool = False  # a last chunk with empty choices and the usage


class ChatCompletionRequest(BaseModel):
    """POST /v1/chat/completions. Omitted sampling fields take the engine's defaults (engine/sampler.py)."""

    model_config = _strict
    model: str | None = None  # the bridge serves the one loaded model, whatever the name
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1, le=1 << 20)
    max_completion_tokens: int | None = Field(None, ge=1, le=1 << 20)  # OpenAI's newer name, wins when both
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(1 << 63), lt=1 << 64)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    n: int = Field(1, ge=1, le=1)  # one choice per request
    user: str | None = None
    # llama.cpp server's extensions
    top_k: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0, lt=1)
    repetition_penalty: float | None = Field(None, gt=0, allow_inf_nan=False)  # (no upper bound to stop inf)

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, stop: str | list[str] | None) -> str | list[str] | None:
        stops = [stop] if isinstance(stop, str) else stop or []
        if len(stops) > MAX_STOPS or "" in stops:
            raise ValueError(f"stop takes at most {MAX_STOPS} strings, none of them empty")
        return stop

    def stops(self) -> tuple[str, ...]:
        """`stop` as a tuple (a lone string is one stop)."""
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


# ---------------------------------------------------------------- responses


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    """A whole answer (a non-streamed response, and the bridge's `done` frame)."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streamed answer."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "hearth"


class ModelList(BaseModel):
    """GET /v1/models: the model the connected provider serves (empty when none is connected)."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


# ---------------------------------------------------------------- errors

ErrorType = Literal[
    "invalid_request_error", "authentication_error", "permission_error", "not_found_error",
    "rate_limit_error", "server_error",
]  # fmt: skip


class ErrorBody(BaseModel):
    message: str
    type: ErrorType
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error object: {"error": {"message", "type", "param", "code"}}."""

    error: ErrorBody


# Each HTTP status as OpenAI's error type (the engine's errors carry their status: engine/errors.py).
TYPE_OF_STATUS: dict[int, ErrorType] = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    429: "rate_limit_error", 500: "server_error", 503: "server_error",
}  # fmt: skip

# Each error type's HTTP status, for transports that carry no status (websocket frames).
STATUS_OF_TYPE: dict[str, int] = {
    "invalid_request_error": 400, "authentication_error": 401, "permission_error": 403,
    "not_found_error": 404, "rate_limit_error": 429, "server_error": 500,
}  # fmt: skip


# ---------------------------------------------------------------- frames

Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)] | int


class Hello(BaseModel):
    model_config = _strict
    role: Literal["client", "provider"] = "client"
    token: str | None = None  # unless the connection's Authorization header carried it
    pairing_code: str | None = Field(None, max_length=64)  # a provider's other way in (bridge/security.py Pairing)


class HelloFrame(BaseModel):
    model_config = _strict
    kind: Literal[Kind.HELLO]
    id: Id | None = None
    content: Hello = Hello()


class ChatFrame(BaseModel):
    model_config = _strict
    kind: Literal[Kind.CHAT]
    id: Id
    content: ChatCompletionRequest


class StopFrame(BaseModel):
    """Cancel the request `id` (its stream ends with an error of code `cancelled`)."""

    model_config = _strict
    kind: Literal[Kind.STOP]
    id: Id
    content: None = None


class ModelsFrame(BaseModel):
    model_config = _strict
    kind: Literal[Kind.MODELS]
    id: Id | None = None
    content: None = None


ClientFrame = TypeAdapter(Annotated[HelloFrame | ChatFrame | StopFrame | ModelsFrame, Field(discriminator="kind")])

# What a provider sends: engine/host.py's messages. Lenient on extra fields, so a provider a version ahead
# of the bridge still works; strict on the fields the bridge reads.
_lenient = ConfigDict(extra="ignore", strict=True)


class HostChunk(BaseModel):
    model_config = _lenient
    text: str
    token_id: int | None = None


class HostDone(BaseModel):
    model_config = _lenient
    finish_reason: Literal["stop", "length"]
    n_tokens: int = Field(ge=0)
    prompt_tokens: int = Field(0, ge=0)
    stopped: bool = False


class HostError(BaseModel):
    model_config = _lenient
    type: str
    message: str


class HostReady(BaseModel):
    model_config = _lenient
    model: str
    n_ctx: int
    adapter: str = ""
    seats: int = Field(1, ge=1)  # requests it serves at once (engine/host.py)


def _provider_frame(kind: Kind, content: Any) -> type[BaseModel]:
    fields: dict[str, Any] = {"kind": (Literal[kind], ...), "id": (Id | None, None), "content": (content, ...)}
    return create_model(f"Provider{kind.name.title()}Frame", __config__=_lenient, **fields)


ProviderFrame = TypeAdapter(
    Annotated[
        HelloFrame
        | _provider_frame(Kind.CHUNK, HostChunk)
        | _provider_frame(Kind.DONE, HostDone)
        | _provider_frame(Kind.ERROR, HostError)
        | _provider_frame(Kind.READY, HostReady)
        | _provider_frame(Kind.PROGRESS, dict[str, Any])
        | _provider_frame(Kind.PART, dict[str, Any]),
        Field(discriminator="kind"),
    ]
)


def frame(kind: Kind, id: Any = None, content: Any = None) -> str:
    """One frame as the JSON text a websocket message carries (models inside become JSON data)."""
    if isinstance(content, BaseModel):
        content = content.model_dump(mode="json")
    return json.dumps(Message(kind, id, content).to_dict())
