"""The bridge end to end: a Python client -> bridge -> the extension's offscreen document -> a streamed answer.

The bridge runs on the port the session's browser has in its extension settings (the panel's "Bridge port",
which the service worker passes to the offscreen document); the document finds it within its back-off
(at most 4 s). Greedy answers must be the native engine's, token for token;
a document that dies mid-answer must fail the client's stream within 2 s, and the next request succeeds
once the document is back. A page on 127.0.0.1 cannot open a websocket to the bridge.
The extension gets the token from the native-messaging host in its profile (conftest.launch), or by pairing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import pytest

import bridge as hearth_bridge
from engine.config import DEFAULT_SEATS
from tests.bridge.harness import BridgeThread

from .conftest import LOAD_TIMEOUT_MS, N_CTX, free_port, launch

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
MAX_TOKENS = 12


@pytest.fixture(scope="module")
def bridge(browser, token_file):
    """A bridge on the port set in the session browser's extension (see conftest.browser), with the token its
    native-messaging host gives the extension."""
    running = BridgeThread(token_file, port=browser.bridge_port)
    yield running
    running.close()


def wait_for_provider(bridge, timeout: float = LOAD_TIMEOUT_MS / 1000) -> None:
    """Until the extension is connected and its model loaded (its `ready` reached the bridge)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        provider = bridge.hub.active()
        if provider is not None and provider.info is not None:
            assert provider.name == "browser extension", provider.name
            return
        time.sleep(0.1)
    pytest.fail("the extension never connected to the bridge as its provider", pytrace=False)


def native_greedy(messages: list[dict], max_tokens: int) -> tuple[str, int]:
    """The native engine's greedy answer (text, tokens), in a thread of its own."""
    from engine.engine import Engine
    from engine.sampler import SamplingOptions

    async def run():
        engine = await Engine.load(n_ctx=N_CTX)
        chunks = [c async for c in engine.chat(messages, SamplingOptions(temperature=0, max_tokens=max_tokens))]
        return "".join(c.text for c in chunks), sum(c.token_id is not None and c.finish_reason is None for c in chunks)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


def test_a_script_gets_the_browser_models_greedy_answer(bridge, panel):
    wait_for_provider(bridge)
    with hearth_bridge.Client(bridge.url, token_file=bridge.token_file) as client:
        stream = client.chat.completions.create(model="hearth", messages=MESSAGES, temperature=0, max_tokens=MAX_TOKENS,
                                                stream=True)  # fmt: skip
        pieces = [chunk.choices[0].delta.content or "" for chunk in stream]
    text, n_tokens = native_greedy(MESSAGES, MAX_TOKENS)
    assert len([p for p in pieces if p]) >= 2, f"the answer did not stream: {pieces}"
    assert "".join(pieces) == text
    assert stream.completion.usage.completion_tokens == n_tokens
    print(f"\nbridge -> extension: {''.join(pieces)!r}")


def test_a_dying_document_fails_the_stream_fast_and_the_next_request_succeeds(bridge, browser, panel):
    wait_for_provider(bridge)
    with hearth_bridge.Client(bridge.url, token_file=bridge.token_file) as client:
        story = [{"role": "user", "content": "Write a long story about a dragon who learns to cook."}]
        stream = client.chat.completions.create(model="hearth", messages=story, temperature=0.7, max_tokens=200,
                                                seed=1, stream=True)  # fmt: skip
        next(stream), next(stream)  # mid-answer
        killed = time.monotonic()
        browser.worker.evaluate("chrome.offscreen.closeDocument()")
        with pytest.raises(hearth_bridge.InternalServerError) as failed:
            for _ in stream:
                pass
        seconds = time.monotonic() - killed
        assert failed.value.code == "provider_disconnected", failed.value
        assert seconds < 2, f"the client heard of it after {seconds:.1f} s"
        print(f"\noffscreen document closed mid-stream: the client's error came after {seconds:.2f} s")

        while browser.worker.evaluate("chrome.runtime.getContexts({contextTypes: ['OFFSCREEN_DOCUMENT']})"):
            time.sleep(0.05)  # wholly gone, so that the panel's request makes a new one
        panel.reopen()  # the panel asks for the document again; it loads the model and reconnects
        wait_for_provider(bridge)
        answer = client.chat.completions.create(model="hearth", messages=MESSAGES, temperature=0, max_tokens=4)
        assert answer.choices[0].message.content and answer.usage.completion_tokens >= 1


def test_the_panels_bridge_port_moves_the_extension_to_another_bridge(bridge, browser, panel, token_file):
    other = BridgeThread(token_file, port=free_port())
    try:
        panel.settings(bridge_port=other.server.port)  # reloads the model, then connects there
        panel.page.wait_for_selector("body[data-state=ready]", timeout=LOAD_TIMEOUT_MS)
        wait_for_provider(other)
        assert bridge.hub.active() is None, "the extension still serves the old port"
        with hearth_bridge.Client(other.url, token_file=other.token_file) as client:
            answer = client.chat.completions.create(model="hearth", messages=MESSAGES, temperature=0, max_tokens=4)
        assert answer.choices[0].message.content

        panel.settings(bridge_port=80)  # out of range (1024-65535): the port in use stays, nothing reloads
        kept = "p => document.querySelector('#bridge_port').value === p"
        panel.page.wait_for_function(kept, arg=str(other.server.port))
        assert panel.page.get_attribute("body", "data-state") == "ready"
        assert other.hub.active() is not None
    finally:
        panel.settings(bridge_port=bridge.server.port)  # back, for what runs next
        panel.page.wait_for_selector("body[data-state=ready]", timeout=LOAD_TIMEOUT_MS)
        other.close()
    wait_for_provider(bridge)
    engine = browser.worker.evaluate("chrome.storage.local.get('engine')")["engine"]
    assert {key: engine[key] for key in ("n_ctx", "seats", "bridge_port")} == {
        "n_ctx": N_CTX, "seats": DEFAULT_SEATS, "bridge_port": bridge.server.port}  # fmt: skip


def test_the_panel_pairs_with_a_bridge_whose_token_the_native_host_does_not_give(bridge, browser, panel, tmp_path):
    """Where the native host cannot give the token (here: a bridge with a token file of its own), the one-time
    code that bridge prints, typed into the panel's Settings, lets the extension in, and the panel keeps the token."""
    other = BridgeThread(tmp_path / "token", port=free_port())
    page = panel.page
    try:
        panel.settings(bridge_port=other.server.port)  # reloads; the token the native host gives is refused there
        page.wait_for_selector("body[data-state=ready]", timeout=LOAD_TIMEOUT_MS)
        assert other.hub.active() is None
        page.click("#settings-toggle")
        page.fill("#pairing_code", "WRONG-CODE")
        page.click("#pair")
        page.wait_for_selector("#pair-status.error", timeout=30_000)
        assert "wrong or expired pairing code" in page.inner_text("#pair-status")
        assert other.server.pairing.wrong == 1 and other.hub.active() is None

        page.fill("#pairing_code", other.server.pairing.shown().lower())  # as a user might type it
        page.click("#pair")
        page.wait_for_selector("#pair-status:not(.error):text('Paired')", timeout=30_000)
        print(f"\npanel after pairing: {page.inner_text('#pair-status')!r}")
        wait_for_provider(other)
        assert panel.storage()["bridge_token"] == other.token
        with hearth_bridge.Client(other.url, token_file=other.token_file) as client:
            answer = client.chat.completions.create(model="hearth", messages=MESSAGES, temperature=0, max_tokens=4)
        assert answer.choices[0].message.content
        panel.screenshot("bridge-paired.png")
        page.click("#settings-toggle")
    finally:
        panel.settings(bridge_port=bridge.server.port)  # back, with the native host's token again
        page.wait_for_selector("body[data-state=ready]", timeout=LOAD_TIMEOUT_MS)
        other.close()
    wait_for_provider(bridge)


def test_a_bridge_started_after_the_browser_is_found_without_the_panel(playwright, extension, tmp_path, token_file):
    late = launch(playwright, extension, tmp_path, token_file=token_file)
    try:
        port = free_port()
        late.worker.evaluate("p => chrome.storage.local.set({engine: {n_ctx: 256, bridge_port: p}})", port)
        alarm = late.worker.evaluate("chrome.alarms.get('hearth-look-for-bridge')")
        assert alarm and alarm["periodInMinutes"] == 0.5, alarm  # set at install: looks again every 30 s
        assert not late.worker.evaluate("chrome.runtime.getContexts({contextTypes: ['OFFSCREEN_DOCUMENT']})")
        bridge = BridgeThread(token_file, port=port)  # after the browser; no page is ever opened
        try:
            late.worker.evaluate("chrome.alarms.onAlarm.dispatch({name: 'hearth-look-for-bridge', scheduledTime: 0})")
            wait_for_provider(bridge)  # the alarm's probe found it, the engine loaded and connected
        finally:
            bridge.close()
    finally:
        late.context.close()


def test_a_page_on_127_0_0_1_cannot_open_the_bridge(bridge, browser, site):
    page = browser.context.new_page()
    page.goto(site.url("article.html"))
    outcome = page.evaluate(
        """url => new Promise(resolve => {
            const ws = new WebSocket(url);
            ws.onopen = () => resolve("open");
            ws.onerror = () => resolve("refused");
            setTimeout(() => resolve("timeout"), 5000);
        })""",
        bridge.url,
    )
    page.close()
    assert outcome == "refused"
    assert bridge.hub.active() is None or bridge.hub.active().name == "browser extension"
