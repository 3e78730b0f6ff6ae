"""`python -m bridge --launch-browser --headless --ask TEXT`: the README's main job in one command.

The bridge starts, launches Chromium with the built extension on a throwaway profile, the extension finds the
bridge by itself (no page is opened) and gets its token from the native-messaging host the bridge installed in
that profile (an Origin header lets no one in), the sample question is answered through the bridge and printed
as it streams, and the bridge keeps serving other scripts until it is stopped, taking its browser down with it.
It needs the default port free (the session's browser tests use a port of their own).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import bridge as hearth_bridge
from bridge.server import DEFAULT_PORT

from .conftest import LOAD_TIMEOUT_MS, ROOT
from .test_bridge_e2e import native_greedy

QUESTION = "What is the capital of France?"
ASK_MAX_TOKENS = 128  # what bridge/__main__.py's --ask asks for


class Lines:
    """A stream's lines, read in a thread so that waiting on them can time out."""

    def __init__(self, stream):
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream):
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.seen):
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no {text!r} within {timeout:.0f} s; stderr so far:\n{''.join(self.seen)}", pytrace=False)
            if line is None:
                pytest.fail(f"the bridge exited before {text!r}; stderr:\n{''.join(self.seen)}", pytrace=False)
            self.seen.append(line)


def launched_browsers() -> list[int]:
    """Chromium processes on a profile made by bridge/launch.py."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if any(arg.startswith(b"--user-data-dir=") and b"hearth-chromium-" in arg for arg in cmdline):
            pids.append(int(entry.name))
    return pids


def test_one_command_serves_the_browser_model_until_stopped(extension, tmp_path):
    token_file = tmp_path / "token"
    command = [sys.executable, "-m", "bridge", "--launch-browser", "--headless", "--extension", str(extension),
               "--token-file", str(token_file), "--ask", QUESTION]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HOME": str(tmp_path)}  # its user-level host manifests go here
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env)  # fmt: skip
    stderr = Lines(process.stderr)
    try:
        stderr.wait_for(f"ws://127.0.0.1:{DEFAULT_PORT}", 30)
        stderr.wait_for(f"token file: {token_file}", 5)
        stderr.wait_for("native messaging host", 5)
        stderr.wait_for("pairing code", 5)
        stderr.wait_for("asking browser extension", LOAD_TIMEOUT_MS / 1000)
        stderr.wait_for("serving until Ctrl-C", LOAD_TIMEOUT_MS / 1000)
        assert launched_browsers(), "no Chromium on a hearth-chromium- profile is running"

        # Another script, with nothing but the token file the bridge printed.
        with hearth_bridge.Client(token_file=token_file) as client:
            models = [m.id for m in client.models.list().data]
            stream = client.chat.completions.create(model=models[0], messages=[{"role": "user", "content": "Hi"}],
                                                    temperature=0, max_tokens=4, stream=True)  # fmt: skip
            chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks).strip()
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            out, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0, "".join(stderr.seen)

    # What it printed as it streamed is the native engine's greedy answer to the same question.
    expected, _ = native_greedy([{"role": "user", "content": QUESTION}], ASK_MAX_TOKENS)
    assert out.strip() == expected.strip()
    deadline = time.monotonic() + 10
    while launched_browsers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not launched_browsers(), "the bridge left its Chromium running"
