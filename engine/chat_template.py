"""Renders a model's own Jinja chat template (GGUF `tokenizer.chat_template`) into a prompt string."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from .errors import InvalidRequest, NoChatTemplate

ROLES = ("system", "user", "assistant")


def _raise_exception(message: str) -> None:
    # Templates call raise_exception() to reject conversations they cannot format (e.g. bad role order).
    raise InvalidRequest(f"the chat template rejected the conversation: {message}")


@lru_cache(maxsize=8)
def _compile(template: str):
    # Sandboxed: a template comes with a downloaded model and must not reach Python internals.
    from jinja2.exceptions import TemplateSyntaxError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
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
    from jinja2.exceptions import TemplateError

    try:
        return _compile(template).render(
            messages=[{"role": m["role"], "content": m["content"]} for m in messages],
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
        )
    except TemplateError as e:
        raise InvalidRequest(f"the chat template failed on this conversation: {e}") from None
