"""A downloaded-style model in the browser: the default model as llama.cpp's quantiser writes Q4_K_M (Q4_K, Q6_K,
Q5_0 and Q8_0 tensors), shipped with `build.py --model`, answers in the side panel with the native engine's greedy
tokens (which tests/test_engine.py holds to the float64 reference of that file)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import CHROMIUM, N_CTX, ROOT, Panel, free_port, launch

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
MAX_TOKENS = 8


def _native_greedy(path, messages: list[dict]) -> list[int]:
    from engine.engine import Engine
    from engine.sampler import SamplingOptions

    async def run():
        engine = await Engine.load(path, n_ctx=N_CTX)
        options = SamplingOptions(temperature=0, max_tokens=MAX_TOKENS)
        chunks = [chunk async for chunk in engine.chat(messages, options)]
        return [c.token_id for c in chunks if c.token_id is not None and not c.finish_reason]

    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # Playwright's loop owns the main thread
        return pool.submit(asyncio.run, run()).result()


def test_q4_k_m_file_answers_in_the_panel_as_natively(playwright, requantised, tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (scripts/setup.sh installs Debian's chromium)")
    model = requantised("Q4_K_M")
    out = tmp_path_factory.mktemp("build-q4km") / "extension"
    run = subprocess.run([sys.executable, str(ROOT / "build.py"), "--model", str(model), "--out", str(out)],
                         capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    browser = launch(playwright, out, tmp_path_factory.mktemp("chromium-q4km"))
    try:
        settings = {"n_ctx": N_CTX, "bridge_port": free_port()}  # the default port stays the bridge tests'
        browser.worker.evaluate("e => chrome.storage.local.set({engine: e})", settings)
        panel = Panel(browser)
        panel.settings(temperature=0, max_tokens=MAX_TOKENS)
        panel.ask(MESSAGES[0]["content"])
        answer = panel.wait_answer()
        conversation = panel.conversation()
        stored = conversation["messages"][-1]
        assert "stats" in stored, f"no answer: {answer}"
        system = panel.storage()["settings"]["system"]
        messages = ([{"role": "system", "content": system}] if system else []) + MESSAGES
        assert stored["stats"]["token_ids"] == _native_greedy(model, messages)
    finally:
        browser.context.close()
