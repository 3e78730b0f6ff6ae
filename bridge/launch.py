"""`python -m bridge --launch-browser`: build the extension if needed and start Chromium with it.

A fresh profile, the WebGPU flags the browser tests use (shared/DESIGN.md), headless where there is no
display. Chromium opens the extension's panel as its first tab, which makes the service worker start the
offscreen document: that loads the model and connects to the bridge as its provider.
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


async def launch_browser(headless: bool = False) -> Browser:
    """Chromium with only the Hearth extension, on a throwaway profile."""
    executable = next(filter(None, map(shutil.which, CHROMIUM)), None)
    if executable is None:
        raise FileNotFoundError(f"no Chromium found (looked for {', '.join(CHROMIUM)}): apt-get install chromium")
    extension = await asyncio.to_thread(build_if_needed)  # the bridge keeps answering meanwhile
    profile = Path(tempfile.mkdtemp(prefix="hearth-chromium-"))
    headless = headless or not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    args = [executable, *FLAGS, f"--user-data-dir={profile}", f"--disable-extensions-except={extension}",
            f"--load-extension={extension}"]  # fmt: skip
    if headless:
        args.append("--headless=new")
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    args.append(f"chrome-extension://{extension_id()}/sidepanel.html")
    process = await asyncio.create_subprocess_exec(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"Chromium started ({'headless' if headless else 'with a window'}); the extension loads the model "
          "and connects by itself", file=sys.stderr)  # fmt: skip
    return Browser(process, profile)
