"""Without the WebGPU flags, headless Chromium offers no adapter: the panel says so plainly."""

from __future__ import annotations

from .conftest import ARTIFACTS, LOAD_TIMEOUT_MS, launch


def test_panel_explains_that_webgpu_is_unavailable(playwright, extension, tmp_path):
    browser = launch(playwright, extension, tmp_path, webgpu=False)
    try:
        page = browser.open_panel()
        page.wait_for_selector("body[data-state=error]", timeout=LOAD_TIMEOUT_MS)
        alert = page.inner_text("#alert")
        assert alert.startswith("WebGPU unavailable"), alert
        assert page.is_hidden("#load")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "panel-no-webgpu.png"))
    finally:
        browser.context.close()
