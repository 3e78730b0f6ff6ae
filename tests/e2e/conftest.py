"""Browser tests of the extension: Debian's Chromium, headless, WebGPU on SwiftShader, the built extension.

One browser and one loaded model serve the whole session (loading takes ~10 s and SwiftShader is slow:
prompts stay short and answers small). The engine runs with a 256-token context so that a short
fixture page is "longer than the context" and goes through the chunked summary.
The bridge's token reaches the extension as it does for users: the browsers' profiles carry the bridge's
native-messaging host (bridge/native_host.py), which reads the session's token file; the bridges the tests
start use that file.
Screenshots go to artifacts/ (gitignored).
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bridge.native_host import install, profile_folder
from bridge.security import ensure_token
from engine.protocol import BRIDGE_PORT

ROOT = Path(__file__).resolve().parents[2]
PAGES = Path(__file__).resolve().parent / "pages"
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
N_CTX = 256
# Checked on this machine kind (shared/DESIGN.md): quiet, no first-run UI, no background traffic.
FLAGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--disable-quic"]
WEBGPU = ["--enable-unsafe-webgpu", "--enable-unsafe-swiftshader"]
# Chromium's own services (sign-in's ListAccounts, the updater, spelling dictionaries) still try Google with
# the flags above. A proxy on a closed local port keeps them on this machine (no DNS either: the proxy would
# resolve); 127.0.0.1 bypasses proxies, so the fixture site is reached directly. The audit tells the browser's
# own attempts apart from the requests pages and the extension make (those carry an origin).
OFFLINE = ["--proxy-server=http://127.0.0.1:9"]
LOAD_TIMEOUT_MS = 240_000
ANSWER_TIMEOUT_MS = 240_000


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: browser tests of the extension (Chromium + Playwright)")
    config.addinivalue_line("markers", "last: runs after every other test (it audits the whole session)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.e2e)
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)  # stable: others keep their order


# ---------------------------------------------------------------- the extension and a local site


@pytest.fixture(scope="session")
def extension(tmp_path_factory) -> Path:
    """The extension, built by build.py (pinned inputs come from the download cache after the first run)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (scripts/setup.sh installs Debian's chromium)")
    out = tmp_path_factory.mktemp("build") / "extension"
    run = subprocess.run([sys.executable, str(ROOT / "build.py"), "--out", str(out)], capture_output=True, text=True)
    if run.returncode:
        pytest.fail(f"build.py failed:\n{run.stderr[-3000:]}", pytrace=False)
    return out


@dataclass
class Site:
    """Fixture pages served on 127.0.0.1; `requests` lists every path asked for."""

    port: int
    requests: list[str] = field(default_factory=list)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="session")
def site():
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    handler = functools.partial(Handler, directory=str(PAGES))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Site(server.server_address[1], requests)
    server.shutdown()


# ---------------------------------------------------------------- browsers


@dataclass
class Browser:
    """A Chromium with the extension loaded, and its network log."""

    context: object
    extension_id: str
    worker: object
    netlog: Path
    bridge_port: int = BRIDGE_PORT  # the extension's setting, unless a test changes it

    def url(self, page: str) -> str:
        return f"chrome-extension://{self.extension_id}/{page}"

    def open_panel(self):
        """The side panel, opened as an extension page (sidePanel.open needs a real user gesture)."""
        page = self.context.new_page()
        page.goto(self.url("sidepanel.html"))
        return page


@pytest.fixture(scope="session")
def token_file(tmp_path_factory) -> Path:
    """The session's bridge token, which the browsers' native-messaging host hands to the extension."""
    path = tmp_path_factory.mktemp("hearth") / "bridge-token"
    ensure_token(path)
    return path


@pytest.fixture(scope="session")
def playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


NETLOGS: list[Path] = []  # every browser's network log, for the audit at the end


def launch(playwright, extension: Path, tmp: Path, webgpu: bool = True, profile: Path | None = None,
           token_file: Path | None = None) -> Browser:
    """Chromium with only our extension, a profile (fresh unless given) and a network log in `tmp`; with
    `token_file`, the profile has the bridge's native-messaging host, which gives the extension that token."""
    tmp.mkdir(parents=True, exist_ok=True)  # Chromium writes no log into a missing folder
    profile = profile or tmp / "profile"
    if token_file is not None:
        install(token_file, [profile_folder(profile)])  # where Chromium looks with --user-data-dir
    netlog = tmp / "netlog.json"
    NETLOGS.append(netlog)
    args = FLAGS + OFFLINE + (WEBGPU if webgpu else []) + [
        f"--disable-extensions-except={extension}", f"--load-extension={extension}", f"--log-net-log={netlog}"]
    context = playwright.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, headless=True, args=args,
        viewport={"width": 480, "height": 720},
    )
    worker = context.service_workers[0] if context.service_workers else context.wait_for_event("serviceworker")
    return Browser(context, worker.url.split("/")[2], worker, netlog)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def browser(playwright, extension, tmp_path_factory, token_file):
    b = launch(playwright, extension, tmp_path_factory.mktemp("chromium"), token_file=token_file)
    # A small context before the engine starts (the worker passes it to the offscreen document), and a bridge
    # port of the session's own, so the browser tests leave the default port to `python -m bridge`.
    b.bridge_port = free_port()
    b.worker.evaluate("e => chrome.storage.local.set({engine: e})", {"n_ctx": N_CTX, "bridge_port": b.bridge_port})
    yield b
    b.context.close()


class Panel:
    """The session's side panel page (tests may close and reopen it)."""

    def __init__(self, browser: Browser):
        self.browser = browser
        self.page = browser.open_panel()
        self.page.wait_for_selector("body:not([data-state=loading])", timeout=LOAD_TIMEOUT_MS)
        self.ready_ms = int(self.page.evaluate("document.body.dataset.readyMs || -1"))

    def reopen(self):
        self.page.close()
        self.page = self.browser.open_panel()
        self.page.wait_for_selector("body[data-state=ready]", timeout=LOAD_TIMEOUT_MS)

    def settings(self, **values):
        """Set sampling settings through the panel's own inputs."""
        page = self.page
        if page.is_hidden("#settings"):
            page.click("#settings-toggle")
        for name, value in values.items():
            if isinstance(value, bool):  # a checkbox
                page.set_checked(f"#{name}", value)  # (fires its change event)
            else:
                page.fill(f"#{name}", str(value))
                page.dispatch_event(f"#{name}", "change")
        page.click("#settings-toggle")

    def ask(self, text: str):
        answers = self.page.locator(".message.assistant")
        n = answers.count()
        self.page.fill("#prompt", text)
        self.page.click("#send")
        answers.nth(n).wait_for(state="attached", timeout=10_000)  # (a quick error may end it at once)

    def wait_answer(self):
        self.page.wait_for_selector("body[data-state=ready]", timeout=ANSWER_TIMEOUT_MS)
        return self.last_answer()

    def last_answer(self) -> dict:
        return self.page.evaluate("""() => {
            const el = [...document.querySelectorAll('.message.assistant')].at(-1);
            return el && {text: el.querySelector('.body').innerText, note: el.querySelector('.note').innerText};
        }""")

    def storage(self) -> dict:
        return self.page.evaluate("chrome.storage.local.get(null)")

    def conversation(self) -> dict:
        stored = self.storage()
        return stored["conversations"][stored["currentId"]]

    def screenshot(self, name: str):
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / name))


@pytest.fixture(scope="session")
def panel(browser):
    return Panel(browser)


# ---------------------------------------------------------------- the network audit


def read_netlog(path: Path) -> list[tuple[str, dict, int]]:
    """(event type name, params, source id) of every event in a Chromium network log.

    A running browser has not closed the JSON yet: its events are complete lines, so the list is closed here."""
    text = path.read_text(errors="replace")
    try:
        log = json.loads(text)
    except json.JSONDecodeError:
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    names = {number: name for name, number in log["constants"]["logEventTypes"].items()}
    return [(names.get(e["type"], str(e["type"])), e.get("params") or {}, e["source"]["id"]) for e in log["events"]]


@dataclass
class NetworkAudit:
    """What a browser asked of the network: requests made by pages and the extension (they carry an origin),
    requests the browser made for itself (no origin: sign-in, updates, dictionaries), and the remote
    addresses that sockets sent bytes to."""

    by_origin: list[tuple[str, str]] = field(default_factory=list)  # (initiator, url)
    by_browser: list[str] = field(default_factory=list)  # urls
    sent_to: set[str] = field(default_factory=set)  # "ip:port" that received bytes


def audit(path: Path) -> NetworkAudit:
    result = NetworkAudit()
    address: dict[int, str] = {}
    sending: set[int] = set()
    for kind, params, source in read_netlog(path):
        if kind == "URL_REQUEST_START_JOB" and "url" in params:
            initiator = params.get("initiator")
            if initiator in (None, "not an origin"):
                result.by_browser.append(params["url"])
            else:
                result.by_origin.append((initiator, params["url"]))
        elif kind in ("TCP_CONNECT", "TCP_CONNECT_ATTEMPT", "UDP_CONNECT", "SOCKET_CONNECT"):
            if params.get("remote_address") or params.get("address"):
                address[source] = params.get("remote_address") or params["address"]
        elif kind in ("SOCKET_BYTES_SENT", "UDP_BYTES_SENT"):
            sending.add(source)
    result.sent_to = {address.get(source, "unknown") for source in sending}
    return result


def host_of(url: str) -> str:
    m = re.match(r"[a-z-]+://(\[[^\]]+\]|[^/:?#]+)", url)
    return m.group(1) if m else ""
