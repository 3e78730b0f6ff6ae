"""The model's own chat template, rendered with jinja2."""

from __future__ import annotations

import pytest

from engine.chat_template import render
from engine.errors import InvalidRequest, NoChatTemplate


def test_smollm2_template_matches_its_documented_format(model_gguf):
    template = model_gguf.metadata["tokenizer.chat_template"]
    text = render(template, [{"role": "user", "content": "Hi"}])
    assert text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_system_prompt_replaces_the_default_and_turns_alternate(model_gguf):
    template = model_gguf.metadata["tokenizer.chat_template"]
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "A"},
        {"role": "assistant", "content": "B"},
        {"role": "user", "content": "C"},
    ]
    text = render(template, messages, add_generation_prompt=False)
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    assert "SmolLM" not in text and text.endswith("<|im_start|>user\nC<|im_end|>\n")


def test_no_template_is_a_clear_error():
    with pytest.raises(NoChatTemplate, match="no chat template"):
        render(None, [{"role": "user", "content": "Hi"}])


def test_template_exceptions_become_invalid_requests():
    template = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('must start with user') }}{% endif %}"
    with pytest.raises(InvalidRequest, match="must start with user"):
        render(template, [{"role": "assistant", "content": "x"}])


def test_templates_cannot_reach_python_internals():
    template = "{{ messages.__class__.__mro__ }}"
    with pytest.raises(InvalidRequest):
        render(template, [{"role": "user", "content": "x"}])


@pytest.mark.parametrize(
    "messages, field",
    [
        ([], "at least one"),
        ([{"role": "robot", "content": "x"}], r"messages\[0\].role"),
        ([{"role": "user", "content": 3}], r"messages\[0\].content"),
        (["hello"], r"messages\[0\].role"),
    ],
)
def test_bad_messages(messages, field):
    with pytest.raises(InvalidRequest, match=field):
        render("{{ messages }}", messages)
