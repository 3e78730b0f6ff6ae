"""The extension end to end in Chromium: chat, greedy parity with the native engine, stop, history,
summaries (short and chunked), hostile output, and where the browser sent requests.

The tests share one browser and one loaded model and run in file order (each is small on its own).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import pytest

from .conftest import ARTIFACTS, LOAD_TIMEOUT_MS, N_CTX, NETLOGS, Panel, audit, free_port, host_of, launch

GREEDY = {"temperature": 0, "max_tokens": 12}


def test_side_panel_chat_streams_an_answer(panel):
    assert panel.ready_ms > 0, "the panel never saw the model become ready"
    print(f"\npanel open -> model ready: {panel.ready_ms / 1000:.1f} s")
    panel.settings(**GREEDY)
    panel.ask("What is the capital of France?")
    seen = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # watch the answer grow, chunk by chunk
        answer = panel.last_answer()
        if answer["text"].strip() and (not seen or answer["text"] != seen[-1]):
            seen.append(answer["text"])
            if len(seen) == 2:
                panel.screenshot("panel-mid-answer.png")
        if panel.page.is_visible("body[data-state=ready]"):
            break
        time.sleep(0.1)
    answer = panel.wait_answer()
    assert len(seen) >= 2, f"the answer did not stream: {seen}"
    assert answer["text"].startswith(seen[0].strip()[:5])
    assert "Paris" in answer["text"]
    assert "tok/s" in answer["note"], answer["note"]
    print(f"browser: {answer['note']}")


def _native_greedy(messages: list[dict], max_tokens: int) -> tuple[list[int], float | None]:
    """Token ids (and decode speed) of the native engine for the same messages, in a thread of its own."""
    from engine.engine import Engine
    from engine.sampler import SamplingOptions

    async def run():
        engine = await Engine.load(n_ctx=N_CTX)
        ids, first = [], None
        async for chunk in engine.chat(messages, SamplingOptions(temperature=0, max_tokens=max_tokens)):
            first = first or time.monotonic()
            if chunk.token_id is not None and chunk.finish_reason is None:
                ids.append(chunk.token_id)
        rate = (len(ids) - 1) / (time.monotonic() - first) if len(ids) > 1 else None
        return ids, rate

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


def test_greedy_tokens_match_the_native_engine(panel):
    conversation = panel.conversation()
    user = [m for m in conversation["messages"] if m["role"] == "user"][-1]
    answer = conversation["messages"][-1]
    system = panel.storage()["settings"]["system"]
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user["content"]}]
    browser_ids = answer["stats"]["token_ids"]
    native_ids, native_rate = _native_greedy(messages, GREEDY["max_tokens"])
    print(f"\nbrowser {answer['stats']['tokens_per_s']} tok/s, native {native_rate and round(native_rate, 2)} tok/s")
    assert browser_ids and browser_ids == native_ids


def test_regenerate_redoes_the_last_answer(panel):
    before = panel.conversation()["messages"]
    panel.page.click("#regenerate")
    panel.page.locator(".message.assistant.streaming").wait_for(state="attached", timeout=10_000)
    answer = panel.wait_answer()
    after = panel.conversation()["messages"]
    assert len(after) == len(before)  # the answer was replaced, not added
    assert after[-1]["stats"]["token_ids"] == before[-1]["stats"]["token_ids"]  # greedy: the same again
    assert "Paris" in answer["text"]


def test_stop_halts_generation(panel):
    panel.settings(max_tokens=200)
    panel.ask("Write a long story about a brave dragon and a small village.")
    page = panel.page
    deadline = time.monotonic() + 120
    while not panel.last_answer()["text"].strip() and time.monotonic() < deadline:
        time.sleep(0.1)
    page.click("#stop")
    started = time.monotonic()
    answer = panel.wait_answer()
    assert time.monotonic() - started < 20
    assert "stopped" in answer["note"]
    stats = panel.conversation()["messages"][-1]["stats"]
    assert stats["stopped"] and stats["n_tokens"] < 50
    time.sleep(2)
    assert panel.last_answer()["text"] == answer["text"]  # nothing arrives after the stop
    panel.settings(max_tokens=GREEDY["max_tokens"])


def test_context_too_long_is_explained(panel):
    panel.ask("Please read this. " + "word " * (N_CTX + 50))
    answer = panel.wait_answer()
    assert "Context too long" in answer["note"]


def test_history_survives_closing_and_reopening_the_panel(panel):
    before = panel.conversation()
    panel.reopen()
    shown = panel.page.inner_text("#messages")
    assert "What is the capital of France?" in shown
    assert "Paris" in shown
    assert panel.conversation()["id"] == before["id"]
    conversations = panel.page.locator("#history option").count()
    panel.page.click("#new-chat")
    assert panel.page.locator("#messages .message").count() == 0
    assert panel.page.locator("#history option").count() == conversations + 1
    panel.page.select_option("#history", before["id"])  # and back to the earlier one
    assert "What is the capital of France?" in panel.page.inner_text("#messages")


def test_history_and_settings_survive_a_browser_restart(playwright, extension, tmp_path):
    profile = tmp_path / "profile"
    first = launch(playwright, extension, tmp_path / "first", profile=profile)
    first.worker.evaluate("e => chrome.storage.local.set({engine: e})", {"n_ctx": N_CTX, "bridge_port": free_port()})
    panel = Panel(first)
    panel.settings(temperature=0, max_tokens=6, system="Answer in one word.")
    panel.ask("Name a colour.")
    answer = panel.wait_answer()["text"]
    asked = panel.conversation()
    first.context.close()

    second = launch(playwright, extension, tmp_path / "second", profile=profile)
    try:
        page = second.open_panel()
        page.locator(".message.assistant").first.wait_for(timeout=30_000)
        shown = page.inner_text("#messages")
        assert "Name a colour." in shown and answer.strip() in shown
        assert page.input_value("#history") == asked["id"]
        assert [page.input_value(f"#{key}") for key in ("temperature", "max_tokens", "system", "n_ctx")] == [
            "0", "6", "Answer in one word.", str(N_CTX)]  # fmt: skip
    finally:
        second.context.close()


def _click_menu(browser, url: str, menu: str) -> None:
    """Fire the context menu's real listener on the tab showing `url` (a headless right-click sends none)."""
    browser.worker.evaluate(
        """async ([url, menu]) => {
            const tab = (await chrome.tabs.query({})).find((t) => t.url === url);
            chrome.contextMenus.onClicked.dispatch({ menuItemId: menu, pageUrl: url }, tab);
        }""",
        [url, menu],
    )


def _summarize(browser, panel, url: str, title: str):
    """Summarize the page at `url` from the context menu; the finished answer."""
    _click_menu(browser, url, "hearth-summarize-page")
    panel.page.locator(f".message.user:has-text('{title}') + .message.assistant").wait_for(timeout=30_000)
    return panel.wait_answer()


def test_summarize_page_streams_a_summary_of_that_page(browser, panel, site):
    tab = browser.context.new_page()
    tab.goto(site.url("article.html"))
    panel.settings(max_tokens=24)
    answer = _summarize(browser, panel, site.url("article.html"), "The Lighthouse of Varnholm")
    panel.settings(max_tokens=GREEDY["max_tokens"])
    panel.screenshot("summary-finished.png")
    tab.close()
    conversation = panel.conversation()
    request = conversation["messages"][0]["request"]
    assert "Ingrid Solberg" in request["text"] and "214 steps" in request["text"]
    for noise in ("Subscribe", "MENU-NOISE", "kayaks", "Cookie", "Coastal Gazette"):
        assert noise not in request["text"], f"{noise!r} (menus, scripts, ads) reached the summary"
    assert request["title"] == "The Lighthouse of Varnholm"
    text = answer["text"].lower()
    assert any(word in text for word in ("lighthouse", "varnholm", "ingrid", "museum", "keeper")), answer["text"]
    assert "summarised in" not in answer["note"]


def test_summarize_selection_takes_only_the_selected_text(browser, panel, site):
    tab = browser.context.new_page()
    tab.goto(site.url("article.html"))
    tab.evaluate("""() => {
        const p = document.querySelectorAll('article p')[1];
        getSelection().selectAllChildren(p);
    }""")
    _click_menu(browser, site.url("article.html"), "hearth-summarize-selection")
    panel.page.locator(".message.user:has-text('the selection on') + .message.assistant").wait_for(timeout=30_000)
    panel.page.click("#stop")  # the request is what this test is about, not the answer
    panel.wait_answer()
    tab.close()
    request = panel.conversation()["messages"][0]["request"]
    assert request["text"].startswith("Its keeper, Ingrid Solberg")
    assert "granite island" not in request["text"]  # the first paragraph was not selected


def test_long_page_is_summarised_in_parts(browser, panel, site):
    tab = browser.context.new_page()
    tab.goto(site.url("long.html"))
    answer = _summarize(browser, panel, site.url("long.html"), "Towns of the Silver River")
    panel.screenshot("summary-long-finished.png")
    tab.close()
    stats = panel.conversation()["messages"][-1]["stats"]
    assert stats["parts"] >= 2, stats
    assert f"summarised in {stats['parts']} parts" in answer["note"]
    assert answer["text"].strip()


HOSTILE = """Here is the answer **in bold**.

<img src=x onerror="window.__pwned = 'img'"> <script>window.__pwned = 'script'</script>
<iframe src="javascript:parent.__pwned = 'iframe'"></iframe> <svg onload="window.__pwned = 'svg'"></svg>
<a href="#" onclick="window.__pwned = 'a'">click me</a>

Inline <img src=y onerror="window.__pwned = 'inline'"> and [a link](javascript:window.__pwned='link').

![tracker](http://127.0.0.1:{port}/pixel.png)

```html
<script>alert(1)</script>
```
"""


def test_hostile_model_output_is_shown_as_text_and_never_runs(panel, site):
    hostile = HOSTILE.format(port=site.port)
    panel.page.evaluate(
        """async (content) => {
            const id = 'hostile';
            const conversations = (await chrome.storage.local.get('conversations')).conversations ?? {};
            conversations[id] = { id, title: 'Hostile', updated: Date.now(), messages: [
                { role: 'user', content: 'Say something nasty.' }, { role: 'assistant', content } ] };
            await chrome.storage.local.set({ conversations, currentId: id });
        }""",
        hostile,
    )
    errors = []
    panel.page.on("pageerror", lambda error: errors.append(error))
    panel.page.reload()
    panel.page.wait_for_selector("body[data-state=ready]", timeout=60_000)
    body = panel.page.locator(".message.assistant .body").last
    time.sleep(1)  # give any handler a chance to fire
    assert panel.page.evaluate("window.__pwned") is None
    assert body.locator("img, script, iframe, svg, object, embed").count() == 0
    assert body.locator("strong").inner_text() == "in bold"  # markdown still renders
    handlers = body.evaluate("el => [...el.querySelectorAll('*')].flatMap(e => [...e.attributes].map(a => a.name))")
    assert not [name for name in handlers if name.startswith("on")]
    hrefs = body.evaluate("el => [...el.querySelectorAll('a')].map(a => a.getAttribute('href'))")
    assert hrefs and not [h for h in hrefs if h and h.lower().startswith("javascript")]
    body.locator("a", has_text="a link").click()  # a link without its javascript: href does nothing
    text = body.inner_text()
    assert '<img src=x onerror="window.__pwned = \'img\'">' in text  # shown literally, as text
    assert "/pixel.png" not in site.requests  # markdown images are not fetched
    assert not errors
    panel.screenshot("hostile-output.png")


def test_changing_the_context_size_or_the_parallel_requests_reloads_the_model(panel):
    # One setting a reload (each change event starts one), and back, for whatever runs next.
    now = {"n_ctx": N_CTX, "seats": 1}
    for setting in ({"n_ctx": N_CTX + 64}, {"seats": 2}, {"n_ctx": N_CTX}, {"seats": 1}):
        now.update(setting)
        panel.settings(**setting)
        panel.page.wait_for_selector("body[data-state=ready]", timeout=LOAD_TIMEOUT_MS)
        speed = panel.page.inner_text("#speed")
        assert f"{now['n_ctx']}-token context" in speed and ("2 requests at once" in speed) == (now["seats"] == 2)
        if setting == {"seats": 2}:  # the model, its cache holding two sequences, still answers
            panel.ask("Hello")
            answer = panel.wait_answer()
            assert answer["text"].strip() and "error" not in answer["note"].lower(), answer


def test_an_f16_context_is_a_setting_that_reloads_the_model_and_still_answers(panel):
    """One setting a reload, and back. SwiftShader has no shader-f16: f16 prompts asked for stay f32 there, and
    the panel names only what runs."""
    now = {"kv_f16": False, "f16_prompts": False, "q8_prompts": False}
    for setting in ({"kv_f16": True}, {"f16_prompts": True}, {"q8_prompts": True}, {"kv_f16": False},
                    {"f16_prompts": False}, {"q8_prompts": False}):
        now.update(setting)
        panel.settings(**setting)
        panel.page.wait_for_selector("body[data-state=ready]", timeout=LOAD_TIMEOUT_MS)
        speed = panel.page.inner_text("#speed")
        assert ("f16 context" in speed) == now["kv_f16"] and "f16 prompts" not in speed, speed
        assert "8-bit prompts" not in speed, speed  # (SwiftShader's engine is the scalar variant: no tiles)
        assert {key: panel.storage()["engine"][key] for key in now} == now  # (kept for the next start)
        if now == {"kv_f16": True, "f16_prompts": True, "q8_prompts": True}:  # the model, its cache in f16, answers
            panel.ask("Hello")
            answer = panel.wait_answer()
            assert answer["text"].strip() and "error" not in answer["note"].lower(), answer


@pytest.mark.last
def test_no_request_leaves_the_extension_and_127_0_0_1(site):
    assert NETLOGS, "no browser ran"
    for netlog in NETLOGS:
        seen = audit(netlog)
        outside = [(origin, url) for origin, url in seen.by_origin if host_of(url) != "127.0.0.1"]
        assert not outside, f"the extension or a page reached outside 127.0.0.1: {outside}"
        # Nothing left the machine at all, the browser's own attempts included.
        loopback = {a for a in seen.sent_to if a.startswith("127.0.0.1:")}
        assert seen.sent_to == loopback, f"bytes went to {sorted(seen.sent_to - loopback)}"
        own = sorted({host_of(url) for url in seen.by_browser} - {"127.0.0.1"})
        print(f"\n{netlog.parent.name}: {len(seen.by_origin)} requests from pages and the extension, all to "
              f"127.0.0.1; Chromium's own attempts (no origin, refused by the local proxy): {own}")
    if site.requests:  # the log does see requests: the fixture pages fetched from 127.0.0.1 are in it
        main = audit(NETLOGS[0])
        assert any(host_of(url) == "127.0.0.1" for url in main.by_browser + [u for _, u in main.by_origin])
    assert ARTIFACTS.exists()
