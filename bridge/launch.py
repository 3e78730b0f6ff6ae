"""`python -m bridge --launch-browser`: build the extension if needed and start Chromium with it.

A fresh profile, the WebGPU flags the browser tests use (shared/DESIGN.md), headless where there is no
display. The extension's service worker finds the bridge already listening when it is installed and starts the
offscreen document, which loads the model and connects to the bridge as its provider, with the token that the
native-messaging host installed in the profile gives it (bridge/native_host.py). The chat page is not a
start URL: Chromium opens start URLs before it registers a command-line extension, and blocks them
(ERR_BLOCKED_BY_CLIENT); with a window, `open_chat` opens it once the extension has connected.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .native_host import install, profile_folder
from .security import ROOT, extension_id

EXTENSION = ROOT / "dist" / "extension"
SOURCES = ("extension", "engine", "shaders", "build.py")  # what the built extension is made of
CHROMIUM = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-quic", "--enable-unsafe-webgpu", "--enable-unsafe-swiftshader"]  # fmt: skip


@dataclass
class Browser:
    process: asyncio.subprocess.Process
    profile: Path
    executable: str
    headless: bool

    async def open_chat(self) -> None:
        """The chat page in a tab of the running browser (a second invocation on the same profile hands its
        URL to the first); nothing headless, where no one would see it."""
        if self.headless or self.process.returncode is not None:
            return
        opener = await asyncio.create_subprocess_exec(
            self.executable, f"--user-data-dir={self.profile}", f"chrome-extension://{extension_id()}/sidepanel.html",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        await opener.wait()

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


def build_if_needed(out: Path = EXTENSION) -> Path:
    """dist/extension, rebuilt by build.py when missing or older than its sources."""
    built = out / "manifest.json"
    newest = max(p.stat().st_mtime for name in SOURCES for p in _files(ROOT / name))
    if not built.exists() or built.stat().st_mtime < newest:
        print("building the extension (build.py)...", file=sys.stderr)
        subprocess.run([sys.executable, str(ROOT / "build.py"), "--out", str(out)], check=True)
    return out


def _files(path: Path):
    return [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]


async def launch_browser(token_file: Path, headless: bool = False, extension: Path | None = None) -> Browser:
    """Chromium with only the Hearth extension (`extension`, else dist/extension built when stale), on a
    throwaway profile whose native-messaging host gives the extension the token in `token_file`."""
    executable = next(filter(None, map(shutil.which, CHROMIUM)), None)
    if executable is None:
        raise FileNotFoundError(f"no Chromium found (looked for {', '.join(CHROMIUM)}): apt-get install chromium")
    if extension is None:
        extension = await asyncio.to_thread(build_if_needed)  # the bridge keeps answering meanwhile
    elif not (extension / "manifest.json").is_file():
        raise FileNotFoundError(f"{extension} is not a built extension (no manifest.json): run build.py --out DIR")
    profile = Path(tempfile.mkdtemp(prefix="hearth-chromium-"))
    install(token_file, [profile_folder(profile)])  # a --user-data-dir browser reads only its profile's hosts
    headless = headless or not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    args = [executable, *FLAGS, f"--user-data-dir={profile}", f"--disable-extensions-except={extension}",
            f"--load-extension={extension}"]  # fmt: skip
    if headless:
        args.append("--headless=new")
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    process = await asyncio.create_subprocess_exec(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"Chromium started ({'headless' if headless else 'with a window'}); the extension loads the model "
          "and connects by itself", file=sys.stderr)  # fmt: skip
    return Browser(process, profile, executable, headless)
