"""`python -m engine` as scripts use it: answer on stdout only, one clear error line otherwise."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from engine.errors import ERRORS
from tests.gguf_files import write_gguf


def _run(*args: str, stdin: str = "", env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], input=stdin, capture_output=True, text=True, timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_generate_answers_on_stdout_only():
    result = _run("generate", "--temperature", "0", "--max-tokens", "24", "What is the capital of France?")
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout
    assert "loading model" in result.stderr and "tok/s" in result.stderr
    assert "loading" not in result.stdout


def test_generate_takes_a_messages_file_and_a_system_prompt(tmp_path, engine, event_loop_session):
    from engine.sampler import SamplingOptions

    messages = [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Nice to meet you, Ada!"},
        {"role": "user", "content": "What is my name?"},
    ]
    path = tmp_path / "chat.json"
    path.write_text(json.dumps(messages))
    result = _run("generate", "--messages", str(path), "--system", "Answer briefly.", "--temperature", "0",
                  "--max-tokens", "16")
    assert result.returncode == 0, result.stderr

    async def expected():
        conversation = [{"role": "system", "content": "Answer briefly."}, *messages]
        options = SamplingOptions(temperature=0, max_tokens=16)
        return "".join([chunk.text async for chunk in engine.chat(conversation, options)])

    assert result.stdout == event_loop_session.run_until_complete(expected()) + "\n"


def _error_of(*args: str) -> str:
    result = _run(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    return result.stderr.strip()


def test_no_gpu_adapter_is_one_line():
    """wgpu finds no adapter (a backend this OS lacks, forced): a named error, not a traceback."""
    result = _run("generate", "hi", env={"WGPU_BACKEND_TYPE": "D3D12"})
    assert result.returncode == 2 and result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: no WebGPU adapter found")


def test_missing_model_file(tmp_path):
    assert "not found" in _error_of("generate", "--model", str(tmp_path / "none.gguf"), "hi")


def test_not_a_gguf(tmp_path):
    (tmp_path / "x.gguf").write_text("hello")
    assert "not a GGUF" in _error_of("generate", "--model", str(tmp_path / "x.gguf"), "hi")


def test_truncated_model(tmp_path, model_path):
    (tmp_path / "cut.gguf").write_bytes(model_path.read_bytes()[:40_000_000])
    assert "truncated" in _error_of("generate", "--model", str(tmp_path / "cut.gguf"), "hi")


def test_unsupported_architecture_is_named(tmp_path):
    import numpy as np

    path = write_gguf(tmp_path / "m.gguf", "mamba", {}, {"w": (np.zeros(4, np.float32), 0)})
    assert "unsupported architecture 'mamba'" in _error_of("generate", "--model", str(path), "hi")


def test_unsupported_tensor_type_is_named(tmp_path, model_gguf):
    import numpy as np

    from engine.gguf import GGML_TYPES

    dim, iq2 = 256, 16  # IQ2_XXS packs 256 weights in 66 bytes; Hearth does not run it
    assert GGML_TYPES[iq2][0] == "IQ2_XXS"
    meta = {k: v for k, v in model_gguf.metadata.items() if k.startswith(("llama.", "tokenizer."))}
    meta.update({"llama.block_count": 1, "llama.embedding_length": dim, "llama.feed_forward_length": dim,
                 "llama.attention.head_count": 1, "llama.attention.head_count_kv": 1,
                 "llama.rope.dimension_count": dim})
    n_vocab = len(meta["tokenizer.ggml.tokens"])
    tensors = {
        "token_embd.weight": (np.zeros((n_vocab, dim), np.float16), 1),
        "output_norm.weight": (np.ones(dim, np.float32), 0),
        "blk.0.attn_q.weight": (np.zeros((dim, 66), np.uint8), iq2),
    }
    path = write_gguf(tmp_path / "iq2.gguf", "llama", meta, tensors)
    err = _error_of("generate", "--model", str(path), "hi")
    assert "IQ2_XXS" in err and "blk.0.attn_q.weight" in err


def test_prompt_longer_than_the_context():
    err = _error_of("generate", "--n-ctx", "64", "--max-tokens", "4", "word " * 200)
    assert "context" in err


@pytest.mark.parametrize("flag, value", [("--temperature", "-1"), ("--top-p", "0"), ("--max-tokens", "0")])
def test_bad_sampling_options(flag, value):
    assert flag.lstrip("-").replace("-", "_") in _error_of("generate", flag, value, "hi")


def test_chat_keeps_the_conversation_and_resets():
    script = "My name is Ada.\n/reset\nWhat is the capital of France?\n"
    result = _run("chat", "--temperature", "0", "--max-tokens", "12", stdin=script)
    assert result.returncode == 0, result.stderr
    assert "loading model" in result.stderr and "/reset starts over" in result.stderr
    answers = [line for line in result.stdout.split("> ") if line.strip()]
    assert len(answers) == 2, result.stdout
    assert "Paris" in answers[1]


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_every_named_error_is_one_line_and_exit_2(name, monkeypatch, capsys):
    """Whatever named error loading raises (engine/errors.py ERRORS), the CLI prints its message on one line."""
    from engine import cli
    from engine.engine import Engine

    async def fail(*args, **kwargs):
        raise ERRORS[name](f"{name} happened")

    monkeypatch.setattr(Engine, "load", fail)
    assert cli.main(["generate", "hi"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"error: {name} happened\n"


@pytest.mark.parametrize("flag", ["--f16-prompts", "--q8-prompts"])
def test_fast_prompts_on_a_cpu_adapter_change_nothing(flag):
    """--f16-prompts / --q8-prompts reach Model.load; only GPUs' prompts are tiled, so this machine's answer is
    the same."""
    args = ("generate", "--temperature", "0", "--max-tokens", "12", "Name a colour.")
    plain, fast = _run(*args), _run(args[0], flag, *args[1:])
    assert plain.returncode == fast.returncode == 0, plain.stderr + fast.stderr
    assert fast.stdout == plain.stdout and plain.stdout.strip()


def test_f16_prompts_without_shader_f16_is_one_line(engine, monkeypatch, capsys):
    """On an adapter without shader-f16, --f16-prompts is refused by name before any upload."""
    import dataclasses

    from engine import cli
    from engine import engine as engine_module

    class WithoutF16:
        def __init__(self, device):
            self._device = device
            self.info = dataclasses.replace(device.info, features=device.info.features - {"shader-f16"})

        def __getattr__(self, name):
            return getattr(self._device, name)

    async def open_without_f16():
        return WithoutF16(engine.model.device)

    monkeypatch.setattr(engine_module, "open_device", open_without_f16)
    assert cli.main(["generate", "--f16-prompts", "hi"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: f16 prompts need a GPU with the 'shader-f16' feature")
    assert err.count("\n") == 1


def test_kv_f16_fits_a_longer_context_in_the_same_budget():
    """--kv-f16 halves the KV cache the plan counts: a budget between the two needs refuses the f32 cache in one
    line and loads (and answers) with the f16 one."""
    args = ("generate", "--temperature", "0", "--max-tokens", "8", "--n-ctx", "8192")

    def need(*extra: str) -> tuple[float, float]:  # MiB in all and of KV cache, from a refusal under 1 MiB
        result = _run(*args, "--memory-budget", "1MiB", *extra, "hi")
        assert result.returncode == 2 and result.stdout == "", result.stderr
        found = re.search(r"needs ([\d.]+) MiB \(.*, ([\d.]+) MiB of KV cache", result.stderr)
        return float(found.group(1)), float(found.group(2))

    (f32, kv32), (f16, kv16) = need(), need("--kv-f16")
    assert kv16 == pytest.approx(kv32 / 2, abs=0.1) and f16 == pytest.approx(f32 - kv16, abs=0.2)
    budget = ("--memory-budget", f"{(f32 + f16) / 2:.1f}MiB")
    refused, loaded = _run(*args, *budget, "Name a colour."), _run(*args, *budget, "--kv-f16", "Name a colour.")
    assert refused.returncode == 2 and refused.stderr.startswith("error: this model needs")
    assert refused.stderr.count("\n") == 1
    assert loaded.returncode == 0 and loaded.stdout.strip(), loaded.stderr
