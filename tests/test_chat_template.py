"""The model's own chat template, rendered with jinja2: the default model's, llama.cpp's collection of real
templates (tests/llama_sdist.py) held to transformers' own rendering, and the helpers templates call."""

from __future__ import annotations

from datetime import datetime

import pytest

from engine import chat_template
from engine.chat_template import render
from engine.errors import InvalidRequest, NoChatTemplate
from tests import llama_sdist

# ---------------------------------------------------------------- the default model's template


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


# ---------------------------------------------------------------- errors


def test_no_template_is_a_clear_error():
    with pytest.raises(NoChatTemplate, match="no chat template"):
        render(None, [{"role": "user", "content": "Hi"}])


def test_template_exceptions_become_invalid_requests():
    template = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('must start with user') }}{% endif %}"
    with pytest.raises(InvalidRequest, match="rejected the conversation: must start with user"):
        render(template, [{"role": "assistant", "content": "x"}])


def test_a_template_that_breaks_is_an_invalid_request_naming_the_failure():
    with pytest.raises(InvalidRequest, match="failed on this conversation: TypeError"):
        render("{% for t in tools %}{{ t }}{% endfor %}", [{"role": "user", "content": "x"}])


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


# ---------------------------------------------------------------- the witness: transformers' rendering

NOW = datetime(2025, 3, 9, 14, 5)  # not Llama 3.x's fallback date (26 Jul 2024), so the clock is seen to be used


class _StoppedClock(datetime):
    @classmethod
    def now(cls, tz=None):
        return NOW


@pytest.fixture(scope="module")
def stopped_clock():
    """Our strftime_now sees NOW."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(chat_template, "datetime", _StoppedClock)
        yield NOW


@pytest.fixture(scope="module")
def hf_render(stopped_clock):
    """transformers' render_jinja_template of one conversation, its clock stopped at NOW too (imported once
    per module: the import is slow)."""
    import transformers.utils.chat_template_utils as hf  # a test requirement: missing, it fails here
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hf, "datetime", _StoppedClock)

        def render_hf(template, messages, **variables):
            (text,), _ = hf.render_jinja_template([messages], chat_template=template, **variables)
            return text

        yield render_hf


def test_helpers_render_as_transformers_does(hf_render):
    template = (
        "{{ messages | tojson }}|{{ messages[0] | tojson(indent=2) }}|"
        "{{ {'b': '<é>', 'a': [1, 2]} | tojson(sort_keys=true, separators=(',', ':')) }}|"
        "{{ 'é 日本' | tojson(ensure_ascii=true) }}{{ 'é 日本' | tojson(ensure_ascii=false) }}|\n"
        "{% for m in messages %}\n"
        "    {% if m.role == 'system' %}{% continue %}{% endif %}\n"
        "    {{- m.content }};\n"
        "    {% if loop.index >= 3 %}{% break %}{% endif %}\n"
        "{% endfor %}\n"
        "{{ strftime_now('%Y-%m-%d %H:%M %b') }}|{{ tools is none }}{{ documents is none }}|"
        "{{ bos_token }}{{ eos_token }}{{ add_generation_prompt }}"
    )
    messages = [
        {"role": "system", "content": "S & <b>"},
        {"role": "user", "content": "Grüße 🙂"},
        {"role": "assistant", "content": "B"},
        {"role": "user", "content": "C"},
    ]
    variables = dict(add_generation_prompt=True, bos_token="<s>", eos_token="</s>")
    ours = render(template, messages, **variables)
    assert ours == hf_render(template, messages, **variables)
    assert '{"a":[1,2],"b":"<é>"}' in ours and '"\\u00e9 \\u65e5\\u672c""é 日本"' in ours
    assert "Grüße 🙂;\nB;\n2025-03-09 14:05 Mar|TrueTrue|<s></s>True" in ours


# Conversations every template renders (or refuses) as transformers does.
CONVERSATIONS = {
    "system and user": [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ],
    "user alone": [{"role": "user", "content": "Hello!"}],
    "turns": [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Sky colour?"},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "  Grass?  "},
    ],
    "ends with the assistant": [
        {"role": "user", "content": "Say hi."},
        {"role": "assistant", "content": "Hi!"},
    ],
    "non-ASCII": [
        {"role": "system", "content": "Réponds « poliment » — 日本語 OK."},
        {"role": "user", "content": 'Grüße 🙂 <b>&amp;</b> "quoted" \\ back\nslash'},
        {"role": "assistant", "content": "こんにちは 👋"},
        {"role": "user", "content": "Ещё раз?"},
    ],
    "two user turns": [
        {"role": "user", "content": "First."},
        {"role": "user", "content": "Second."},
    ],
    "system alone": [{"role": "system", "content": "You are a pirate."}],
}

# (template name prefix, bos_token, eos_token) as each model's vocabulary names them; others get <s> and </s>.
SPECIAL_TOKENS = (
    ("meta-llama-Llama-3", "<|begin_of_text|>", "<|eot_id|>"),
    ("NousResearch-Hermes", "<|begin_of_text|>", "<|im_end|>"),
    ("deepseek-ai", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    ("google-gemma", "<bos>", "<eos>"),
    ("Qwen", "<|endoftext|>", "<|im_end|>"),
    ("microsoft-Phi-3", "<s>", "<|endoftext|>"),
)

# The families the issue names; each must be in the pinned collection.
NAMED = (
    "meta-llama-Llama-3.1-8B-Instruct", "meta-llama-Llama-3.2-3B-Instruct", "meta-llama-Llama-3.3-70B-Instruct",
    "Qwen-Qwen2.5-7B-Instruct", "Qwen-Qwen3-0.6B", "Qwen3.5-4B", "microsoft-Phi-3.5-mini-instruct",
    "google-gemma-2-2b-it", "google-gemma-4-31B-it", "mistralai-Mistral-Nemo-Instruct-2407",
    "HuggingFaceTB-SmolLM3-3B", "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use",
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use",
)  # fmt: skip

# Tool-use templates: they iterate `tools` (or read `functions`), so without tools they fail on every conversation.
NEEDS_TOOLS = {
    "CohereForAI-c4ai-command-r-plus-tool_use",
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use",
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use",
    "fireworks-ai-llama-3-firefunction-v2",
}


def _template_names() -> list:
    return llama_sdist.template_names()  # the sdist is part of the set-up: without it collection fails, naming it


def _special_tokens(name: str) -> tuple[str, str]:
    return next(((bos, eos) for prefix, bos, eos in SPECIAL_TOKENS if name.startswith(prefix)), ("<s>", "</s>"))


def _folded(messages):
    """The fold the module docstring promises, written out: system text, a newline, the next message's text."""
    system, rest = messages[0]["content"], messages[1:]
    if not rest:
        return [{"role": "user", "content": system}]
    return [{"role": rest[0]["role"], "content": system + "\n" + rest[0]["content"]}, *rest[1:]]


def _expected(hf_render, template, messages, variables) -> str | None:
    """What transformers renders; where it raises, its render of the folded conversation when the conversation
    opens with a system message; None where that fails too (ours must then raise InvalidRequest)."""
    try:
        return hf_render(template, messages, **variables)
    except Exception:
        if messages[0]["role"] != "system":
            return None
    try:
        return hf_render(template, _folded(messages), **variables)
    except Exception:
        return None


def test_the_named_families_are_in_the_collection():
    names = llama_sdist.template_names()
    assert not set(NAMED) - set(names)
    assert NEEDS_TOOLS <= set(names)


@pytest.mark.parametrize("name", _template_names())
def test_llama_cpp_template_renders_as_transformers_does(name, hf_render):
    template = llama_sdist.template(name)
    bos_token, eos_token = _special_tokens(name)
    refused = set()
    for case, messages in CONVERSATIONS.items():
        for add_generation_prompt in (True, False):
            variables = dict(add_generation_prompt=add_generation_prompt, bos_token=bos_token, eos_token=eos_token)
            expected = _expected(hf_render, template, messages, variables)
            where = f"{name}: {case}, add_generation_prompt={add_generation_prompt}"
            if expected is None:
                refused.add(case)
                with pytest.raises(InvalidRequest, match="the chat template"):
                    render(template, messages, **variables)
                    pytest.fail(f"{where}: transformers raises, we render")
            else:
                assert render(template, messages, **variables) == expected, where
    # Only tool-use templates refuse the ordinary conversations; some refuse the odd ones.
    ordinary = set(CONVERSATIONS) - {"two user turns", "system alone"}
    assert refused >= set(CONVERSATIONS) if name in NEEDS_TOOLS else not refused & ordinary, refused


def test_gemma_2_folds_the_system_prompt_into_the_first_user_turn():
    messages = CONVERSATIONS["turns"]
    text = render(llama_sdist.template("google-gemma-2-2b-it"), messages, bos_token="<bos>")
    assert text == (
        "<bos><start_of_turn>user\nAnswer in one word.\nSky colour?<end_of_turn>\n"
        "<start_of_turn>model\nBlue.<end_of_turn>\n<start_of_turn>user\nGrass?<end_of_turn>\n<start_of_turn>model\n"
    )


def test_a_refusal_the_fold_does_not_cure_is_reported_as_the_template_said_it():
    messages = [{"role": "system", "content": "S"}, {"role": "assistant", "content": "A"}]
    with pytest.raises(InvalidRequest, match="rejected the conversation: System role not supported"):
        render(llama_sdist.template("google-gemma-2-2b-it"), messages)


def test_llama_3_prints_todays_date(stopped_clock):
    text = render(llama_sdist.template("meta-llama-Llama-3.2-3B-Instruct"), CONVERSATIONS["user alone"])
    assert "Today Date: 09 Mar 2025\n" in text
