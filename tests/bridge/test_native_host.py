"""The native-messaging host: Chrome's length-prefixed protocol spoken to the real program (the launcher the
bridge writes, which runs `python -m bridge.native_host`), and the manifests that tell Chrome where it is."""

from __future__ import annotations

import json
import os
import signal
import stat
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.native_host import LAUNCHER, install, profile_folder, remember_port, user_folders
from bridge.security import ROOT, ensure_token, extension_id
from engine.protocol import BRIDGE_PORT, NATIVE_HOST


def speak(command: list[str], payload: bytes, env: dict | None = None) -> tuple[dict, bytes]:
    """Run the host as Chrome does (its origin as argument), send `payload`; (the one answer, all of stdout)."""
    run = subprocess.run([*command, f"chrome-extension://{extension_id()}/"], input=payload, capture_output=True,
                         timeout=60, env=env)  # fmt: skip
    assert run.returncode == 0, run.stderr.decode()
    (length,) = struct.unpack("=I", run.stdout[:4])
    assert len(run.stdout) == 4 + length, f"more than one message on stdout: {run.stdout!r}"
    return json.loads(run.stdout[4:].decode("utf-8")), run.stdout


def message(data) -> bytes:
    body = json.dumps(data).encode()
    return struct.pack("=I", len(body)) + body


@pytest.fixture()
def installed(tmp_path):
    """A token, and the host installed for it in two profile folders: (token file, token, manifests)."""
    token_file = tmp_path / "hearth" / "bridge-token"
    token = ensure_token(token_file)
    manifests = install(token_file, [profile_folder(tmp_path / "chromium"), profile_folder(tmp_path / "chrome")])
    return token_file, token, manifests


def test_the_manifests_name_an_executable_launcher_only_the_extension_may_start(installed, tmp_path):
    token_file, _, manifests = installed
    assert manifests == [tmp_path / p / "NativeMessagingHosts" / f"{NATIVE_HOST}.json" for p in ("chromium", "chrome")]
    for manifest in manifests:
        data = json.loads(manifest.read_text())
        assert data["name"] == NATIVE_HOST and data["type"] == "stdio"
        assert data["allowed_origins"] == [f"chrome-extension://{extension_id()}/"]
        launcher = Path(data["path"])
        assert launcher.is_absolute() and launcher == token_file.parent / LAUNCHER
    assert os.access(launcher, os.X_OK) and stat.S_IMODE(launcher.stat().st_mode) == 0o700
    before = [m.read_bytes() for m in manifests] + [launcher.read_bytes()]
    install(token_file, [m.parent for m in manifests])  # at each bridge start: nothing changes
    assert [m.read_bytes() for m in manifests] + [launcher.read_bytes()] == before


def test_the_extension_may_ask_it():
    manifest = json.loads((ROOT / "extension" / "manifest.json").read_text())
    assert "nativeMessaging" in manifest["permissions"]
    worker = (ROOT / "extension" / "service_worker.js").read_text()
    assert "sendNativeMessage(DEFAULTS.native_host" in worker  # the name from engine/protocol.py, not a copy


def test_the_user_folders_are_the_default_profiles(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert user_folders() == [tmp_path / ".config" / "chromium" / "NativeMessagingHosts",
                              tmp_path / ".config" / "google-chrome" / "NativeMessagingHosts"]  # fmt: skip


def test_the_launcher_answers_the_token_over_chrome_s_protocol(installed):
    token_file, token, manifests = installed
    launcher = json.loads(manifests[0].read_text())["path"]
    bare = {"PATH": os.environ["PATH"]}  # no venv, no $HEARTH_BRIDGE_TOKEN_FILE: the launcher carries all it needs
    answer, _ = speak([launcher], message({"kind": "token"}), env=bare)
    assert answer == {"token": token, "port": BRIDGE_PORT}  # no bridge said its port yet: the default
    remember_port(token_file, 9123)
    assert speak([launcher], message({"kind": "token"}))[0] == {"token": token, "port": 9123}


@pytest.mark.parametrize(
    "payload, says",
    [
        (message({"kind": "chat"}), "answers {kind: 'token'} only"),
        (message([1, 2]), "answers {kind: 'token'} only"),
        (b"", "no message"),
        (struct.pack("=I", 1 << 30), "at most"),
        (struct.pack("=I", 10) + b"{}", "cut short"),
        (struct.pack("=I", 3) + b"\xff{}", "codec"),  # not UTF-8
        (struct.pack("=I", 3) + b"{{}", "Expecting"),  # not JSON
    ],
)
def test_a_bad_request_gets_an_error_answer(installed, payload, says):
    token_file, _, _ = installed
    command = [sys.executable, "-m", "bridge.native_host", "--token-file", str(token_file)]
    answer, _ = speak(command, payload)
    assert set(answer) == {"error"} and says in answer["error"], answer


def test_without_a_token_file_the_answer_says_to_start_the_bridge(tmp_path):
    command = [sys.executable, "-m", "bridge.native_host", "--token-file", str(tmp_path / "missing")]
    answer, _ = speak(command, message({"kind": "token"}))
    assert set(answer) == {"error"} and "python -m bridge" in answer["error"], answer


def test_the_bridge_installs_the_host_when_it_starts(tmp_path):
    """`python -m bridge` writes the launcher next to its token and the manifests under $HOME, and says where."""
    token_file = tmp_path / "hearth" / "bridge-token"
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "bridge", "--port", "0", "--token-file", str(token_file)],
                               cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        lines = []
        while not (line := process.stderr.readline()).startswith("pairing code"):
            assert line, "the bridge exited:\n" + "".join(lines)
            lines.append(line)
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    said = [line for line in lines if line.startswith(f"native messaging host {NATIVE_HOST}")]
    assert len(said) == 1, lines
    for folder in (tmp_path / ".config" / "chromium" / "NativeMessagingHosts",
                   tmp_path / ".config" / "google-chrome" / "NativeMessagingHosts"):  # fmt: skip
        assert str(folder) in said[0]
        data = json.loads((folder / f"{NATIVE_HOST}.json").read_text())
        assert data["allowed_origins"] == [f"chrome-extension://{extension_id()}/"]
        assert data["path"] == str(token_file.parent / LAUNCHER) and os.access(data["path"], os.X_OK)
    port = int((token_file.parent / "bridge-port").read_text())
    assert port > 0 and any(f"ws://127.0.0.1:{port}" in line for line in lines)
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700


def test_ctrl_c_stops_a_bridge_started_as_a_background_job(tmp_path):
    """A shell starts its background jobs (`python -m bridge &`) with SIGINT ignored, which asyncio leaves so
    unless the bridge handles it itself: it must still stop on Ctrl-C, and say it stopped cleanly (exit 0)."""
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "bridge", "--port", "0", "--token-file", str(tmp_path / "t")],
                               cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # fmt: skip
    try:
        while not (line := process.stderr.readline()).startswith("waiting for the Hearth extension"):
            assert line, "the bridge exited before it served"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        process.communicate()
