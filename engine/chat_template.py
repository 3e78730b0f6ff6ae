"""Renders a model's own Jinja chat template (GGUF `tokenizer.chat_template`) into a prompt string.

Templates are written for Hugging Face's `apply_chat_template`, so they render here in the environment it
builds (transformers' `chat_template_utils._compile_jinja_template`): sandboxed, `trim_blocks` and
`lstrip_blocks`, the loop controls `{% break %}` and `{% continue %}`, the `{% generation %}` block, the
globals `raise_exception(message)` and `strftime_now(format)` (local time), and a `tojson` filter that is
`json.dumps` with its arguments (`indent`, `separators`, `sort_keys`, `ensure_ascii`, false by default)
instead of Jinja's HTML-escaping one. They see the variables HF passes: `messages`, `add_generation_prompt`,
`bos_token`, `eos_token`, and `tools` and `documents` as None. tests/test_chat_template.py holds every
template in llama.cpp's collection to transformers' own rendering.

A system prompt the template refuses (Gemma 2 raises "System role not supported") is not an error, since the
side panel always sends one: as llama.cpp's server does, the system text is folded into the message after it,
joined by a newline, and the template renders again (a system message alone becomes a user message, where
llama.cpp drops it). If the folded conversation fails too, the first refusal is reported. Any other failure
of a template, whether it calls raise_exception or breaks on the conversation (a tool-use template given no
tools), is an InvalidRequest that quotes it.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

from .errors import InvalidRequest, NoChatTemplate

ROLES = ("system", "user", "assistant")


class _Rejected(Exception):
    """What a template's raise_exception() raises: it refuses the conversation, in its own words."""


def _raise_exception(message: str) -> None:
    raise _Rejected(message)


def _strftime_now(format: str) -> str:
    # Llama 3.x templates print today's date this way; `datetime` is looked up at call time so tests can pin it.
    return datetime.now().strftime(format)


def _tojson(value: Any, ensure_ascii: bool = False, indent=None, separators=None, sort_keys: bool = False) -> str:
    # HF's filter: Jinja's own would escape <, >, & and ' for HTML and take no json.dumps arguments.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _generation_tag():
    """HF's `{% generation %}...{% endgeneration %}`, which marks the assistant's text for training masks:
    here it renders its body, in a scope of its own as HF's does."""
    from jinja2 import nodes
    from jinja2.ext import Extension

    class Generation(Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    return Generation


@lru_cache(maxsize=8)
def _compile(template: str):
    # Sandboxed: a template comes with a downloaded model and must not reach Python internals.
    from jinja2.exceptions import TemplateSyntaxError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols, _generation_tag()])  # fmt: skip
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(template)
    except TemplateSyntaxError as e:
        raise NoChatTemplate(f"the model's chat template does not parse: {e}") from None


def validate_messages(messages: list[dict[str, Any]]) -> None:
    """Check the OpenAI-style message list before it reaches a template."""
    if not messages:
        raise InvalidRequest("messages must hold at least one message")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise InvalidRequest(f"messages[{i}].role must be one of {', '.join(ROLES)}")
        if not isinstance(message.get("content"), str):
            raise InvalidRequest(f"messages[{i}].content must be a string")


def _fold_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """`messages` with the leading system message folded into the next one, as llama.cpp does for templates
    without a system role."""
    system, rest = messages[0]["content"], messages[1:]
    if not rest:
        return [{"role": "user", "content": system}]
    return [{**rest[0], "content": f"{system}\n{rest[0]['content']}"}, *rest[1:]]


def _render(compiled, messages: list[dict[str, str]], variables: dict[str, Any]) -> str:
    try:
        return compiled.render(messages=messages, **variables)
    except _Rejected as e:
        raise InvalidRequest(f"the chat template rejected the conversation: {e}") from None
    except Exception as e:  # a template is foreign code: whatever breaks, it broke on this conversation
        raise InvalidRequest(f"the chat template failed on this conversation: {type(e).__name__}: {e}") from None


def render(
    template: str | None,
    messages: list[dict[str, Any]],
    *,
    add_generation_prompt: bool = True,
    bos_token: str = "",
    eos_token: str = "",
) -> str:
    """The prompt text for `messages`, as the model was trained to see it."""
    if not template:
        raise NoChatTemplate("this model has no chat template (tokenizer.chat_template); use a raw prompt")
    validate_messages(messages)
    compiled = _compile(template)
    messages = [{"role": m["role"], "content": m["content"]} for m in messages]
    variables = dict(add_generation_prompt=add_generation_prompt, bos_token=bos_token, eos_token=eos_token,
                     tools=None, documents=None)  # fmt: skip
    try:
        return _render(compiled, messages, variables)
    except InvalidRequest as refused:
        if messages[0]["role"] != "system":
            raise
        try:  # the template may not take a system role: fold it into the first turn
            return _render(compiled, _fold_system(messages), variables)
        except InvalidRequest:
            raise refused from None
