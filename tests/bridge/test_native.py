"""Round trips through a real bridge to the native engine: bridge.Client over the websocket, and the official
`openai` package over the HTTP surface; the text and the usage must be what the engine itself gives."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import openai
import pytest

import bridge as hearth_bridge
from bridge.native import native_provider
from bridge.security import read_token
from engine.sampler import SamplingOptions

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
MAX_TOKENS = 6  # decode on lavapipe is ~8 tokens/s


@pytest.fixture(scope="module")
def native(bridge, engine):
    """The bridge serving the session's engine (loaded once for the whole test run)."""

    async def add():
        bridge.hub.add_provider(native_provider(bridge.hub, engine))

    bridge.call(add())
    return bridge


@pytest.fixture(scope="module")
def expected(engine, event_loop_session):
    """The engine's own greedy answer: (text, prompt tokens, completion tokens)."""

    async def run():
        chunks = [c async for c in engine.chat(MESSAGES, SamplingOptions(temperature=0, max_tokens=MAX_TOKENS))]
        tokens = [c for c in chunks if c.token_id is not None and c.finish_reason is None]
        return "".join(c.text for c in chunks), len(engine.chat_prompt(MESSAGES)), len(tokens)

    return event_loop_session.run_until_complete(run())


def test_client_round_trips(native, expected):
    text, prompt_tokens, completion_tokens = expected
    with hearth_bridge.Client(native.url) as client:  # the token comes from the token file by itself
        models = client.models.list()
        assert [m.id for m in models.data] == [native.hub.model_name()]
        answer = client.chat.completions.create(model=models.data[0].id, messages=MESSAGES, temperature=0,
                                                max_tokens=MAX_TOKENS)  # fmt: skip
        assert answer.choices[0].message.content == text
        assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (prompt_tokens, completion_tokens)
        stream = client.chat.completions.create(model="any", messages=MESSAGES, temperature=0, max_tokens=MAX_TOKENS,
                                                stream=True, stream_options={"include_usage": True})  # fmt: skip
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
        assert chunks[-1].usage.total_tokens == prompt_tokens + completion_tokens
        assert stream.completion.choices[0].message.content == text


def test_async_client_and_engine_errors(native, engine):
    async def main():
        async with hearth_bridge.AsyncClient(native.url) as client:
            long = [{"role": "user", "content": "word " * (engine.model.n_ctx + 10)}]
            with pytest.raises(hearth_bridge.BadRequestError) as too_long:
                await client.chat.completions.create(model="hearth", messages=long, max_tokens=1)
            assert too_long.value.code == "context_length_exceeded"
            answer = await client.chat.completions.create(model="hearth", messages=MESSAGES, max_tokens=2, seed=7)
            assert answer.usage.completion_tokens == 2

    asyncio.run(main())


def test_openai_package_over_http(native, expected):
    text, prompt_tokens, completion_tokens = expected
    client = openai.OpenAI(base_url=f"{native.http}/v1", api_key=read_token(native.token_file), max_retries=0)
    assert [m.id for m in client.models.list().data] == [native.hub.model_name()]
    answer = client.chat.completions.create(model="hearth", messages=MESSAGES, temperature=0, max_tokens=MAX_TOKENS)
    assert answer.choices[0].message.content == text
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (prompt_tokens, completion_tokens)
    stream = client.chat.completions.create(model="hearth", messages=MESSAGES, temperature=0, max_tokens=MAX_TOKENS,
                                            stream=True, stream_options={"include_usage": True})  # fmt: skip
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].usage.completion_tokens == completion_tokens
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="hearth", messages=MESSAGES, temperature=5)
    assert bad.value.code == "invalid_value" and bad.value.param == "temperature"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{native.http}/v1", api_key="wrong", max_retries=0).models.list()


def test_cli_says_when_the_port_is_taken(native, tmp_path):
    env = {**os.environ, "HEARTH_BRIDGE_TOKEN_FILE": str(tmp_path / "token"), "HOME": str(tmp_path)}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    run = subprocess.run([sys.executable, "-m", "bridge", "--port", str(native.server.port)], env=env, cwd=root,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 2
    assert f"port {native.server.port} on 127.0.0.1 is taken" in run.stderr


@pytest.mark.parametrize(
    "args, says",
    [
        (["--port", "0"], "--launch-browser needs it"),  # a fresh extension looks on the default port
        (["--port", "0", "--extension", "/nonexistent"], "--launch-browser needs it"),
        (["--port", "8741", "--extension", "/nonexistent"], "/nonexistent is not a built extension"),
    ],
)
def test_cli_launch_errors_are_one_line(tmp_path, args, says):
    env = {**os.environ, "HEARTH_BRIDGE_TOKEN_FILE": str(tmp_path / "token"), "HOME": str(tmp_path)}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    run = subprocess.run([sys.executable, "-m", "bridge", "--launch-browser", *args], env=env, cwd=root,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert says in run.stderr and "Traceback" not in run.stderr


def test_cli_says_when_there_is_no_gpu_adapter(tmp_path):
    """--native on a machine where wgpu finds no adapter (a backend this OS lacks, forced): one line, exit 2."""
    env = {**os.environ, "HEARTH_BRIDGE_TOKEN_FILE": str(tmp_path / "token"), "HOME": str(tmp_path),
           "WGPU_BACKEND_TYPE": "D3D12"}  # fmt: skip
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    run = subprocess.run([sys.executable, "-m", "bridge", "--native", "--port", "0"], env=env, cwd=root,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("bridge: no WebGPU adapter found")


@pytest.mark.parametrize("kv_f16", [False, True])
def test_load_engine_keeps_the_cache_precision_asked(kv_f16):
    """`--native --kv-f16` reaches the model: its KV cache is f16 pairs, half the f32 one's bytes."""
    from bridge.native import load_engine

    model = asyncio.run(load_engine(None, 64, kv_f16=kv_f16)).model
    assert model.kernels.kv_f16 is kv_f16
    for layer in model.layers:
        assert layer.key_cache.size == layer.value_cache.size == 64 * model.config.kv_dim * (2 if kv_f16 else 4)


@pytest.mark.parametrize("prompts", ["f16_prompts", "q8_prompts"])
def test_load_engine_keeps_the_prompts_precision_asked(prompts):
    """`--native --f16-prompts` / `--q8-prompts` reach the model's kernels (which take them where prompts run in
    tiles: tests/kernels/test_matmul.py)."""
    from bridge.native import load_engine

    kernels = asyncio.run(load_engine(None, 64, **{prompts: True})).model.kernels
    assert getattr(kernels, prompts) and not kernels.kv_f16
    other = "q8_prompts" if prompts == "f16_prompts" else "f16_prompts"
    assert not getattr(kernels, other)
