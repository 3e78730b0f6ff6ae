"""Pure conversions between OpenAI's chat-completion protocol and the engine host's messages (no I/O).

    request bytes --parse_request--> ChatCompletionRequest --host_chat--> {messages, options} (engine/host.py)
    host chunk/done/error --Reply--> ChatCompletionChunk / ChatCompletion / ApiError
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from engine.errors import ERRORS, InternalError, InvalidRequest
from engine.protocol import sampling_options

from .api import (
    TYPE_OF_STATUS,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    ErrorBody,
    ErrorResponse,
    HostDone,
    HostError,
    ResponseMessage,
    Usage,
)


class ApiError(Exception):
    """A failure as OpenAI reports it: HTTP status, error type, code, and the offending parameter."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None):  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param

    def response(self) -> ErrorResponse:
        """The error object sent to the client."""
        body = ErrorBody(message=self.message, type=self.type, param=self.param, code=self.code)
        return ErrorResponse(error=body)


# ---------------------------------------------------------------- requests


def parse_request(body: bytes | str) -> ChatCompletionRequest:
    """A validated request from a JSON body; ApiError names what is wrong (bad JSON included)."""
    try:
        return ChatCompletionRequest.model_validate_json(body)
    except ValidationError as e:
        raise validation_error(e) from None


def validation_error(error: ValidationError, skip: int = 0, what: str = "body") -> ApiError:
    """The first problem pydantic found, named the way OpenAI names parameters (`messages.0.role`);
    `skip` drops the leading parts of its location (a frame's kind and `content`)."""
    first = error.errors(include_url=False)[0]
    param = ".".join(str(part) for part in first["loc"][skip:]) or None
    if first["type"] == "json_invalid":
        return ApiError(400, f"the {what} is not valid JSON: {first['msg']}", code="invalid_json")
    if first["type"] == "extra_forbidden":
        message = f"unknown parameter: {param!r} is not a field this API accepts"
        code = "unknown_parameter"
    elif param == "n":
        message, code = "n must be 1: the bridge returns one choice per request", "invalid_value"
    else:
        more = error.error_count() - 1
        message = f"{param or what}: {first['msg']}" + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")
        code = "invalid_type" if first["type"].endswith("_type") else "invalid_value"
    return ApiError(400, message, param=param, code=code)


def host_chat(request: ChatCompletionRequest) -> dict[str, Any]:
    """The engine host's `chat` content: plain messages and sampling options (checked here, early)."""
    # Chat templates know system/user/assistant; OpenAI's newer "developer" role is its system role.
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                for m in request.messages]  # fmt: skip
    options = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "top_k": request.top_k,
        "min_p": request.min_p,
        "seed": request.seed,
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        "repetition_penalty": request.repetition_penalty,
        "max_tokens": request.max_completion_tokens or request.max_tokens,
        "stop": list(request.stops()) or None,
    }
    options = {name: value for name, value in options.items() if value is not None}
    try:
        sampling_options(options)
    except InvalidRequest as e:
        raise ApiError(400, str(e), code="invalid_value") from None
    return {"messages": messages, "options": options}


# ---------------------------------------------------------------- replies


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


@dataclass
class Reply:
    """Turns one request's host messages into OpenAI chunks and the final completion."""

    model: str
    id: str = field(default_factory=new_completion_id)
    created: int = field(default_factory=lambda: int(time.time()))
    text: list[str] = field(default_factory=list)

    def _chunk(self, delta: Delta, finish_reason: str | None = None, usage: Usage | None = None):
        choices = [] if usage else [ChunkChoice(delta=delta, finish_reason=finish_reason)]
        return ChatCompletionChunk(id=self.id, created=self.created, model=self.model, choices=choices, usage=usage)

    def first(self) -> ChatCompletionChunk:
        """The opening chunk: the assistant's role, no text yet (as OpenAI streams)."""
        return self._chunk(Delta(role="assistant", content=""))

    def chunk(self, text: str) -> ChatCompletionChunk | None:
        """A chunk for a host `chunk` message's text; None for a token that printed nothing yet."""
        self.text.append(text)
        return self._chunk(Delta(content=text)) if text else None

    def last(self, done: HostDone) -> ChatCompletionChunk:
        return self._chunk(Delta(), finish_reason=done.finish_reason)

    def usage_chunk(self, done: HostDone) -> ChatCompletionChunk:
        """The chunk `stream_options.include_usage` asks for: no choices, the usage."""
        return self._chunk(Delta(), usage=usage(done))

    def completion(self, done: HostDone) -> ChatCompletion:
        message = ResponseMessage(content="".join(self.text))
        choice = Choice(message=message, finish_reason=done.finish_reason)
        return ChatCompletion(id=self.id, created=self.created, model=self.model, choices=[choice], usage=usage(done))


def usage(done: HostDone) -> Usage:
    return Usage(prompt_tokens=done.prompt_tokens, completion_tokens=done.n_tokens,
                 total_tokens=done.prompt_tokens + done.n_tokens)  # fmt: skip


def host_error(error: HostError) -> ApiError:
    """A host `error` message (a name in engine/errors.py) as OpenAI reports it."""
    named = ERRORS.get(error.type, InternalError)
    return ApiError(named.status, error.message, type=TYPE_OF_STATUS[named.status], code=named.code)


def model_id(name: str) -> str:
    """An OpenAI-style model id from the GGUF's `general.name`: "SmolLM2 135M Instruct" -> smollm2-135m-instruct."""
    slug = "-".join("".join(c if c.isalnum() or c in "._" else " " for c in name.lower()).split())
    return slug or "hearth"
