"""The native-messaging host that hands the extension the bridge's token, and its installation.

The extension cannot read the token file. Chrome's native messaging lets it ask a local program instead:
`chrome.runtime.sendNativeMessage("dev.hearth.bridge", {kind: "token"})` starts the program a host manifest
names, and Chrome starts it only for the extension ids in the manifest's `allowed_origins`. The protocol, on
the program's stdin and stdout: each message is a 4-byte length in native byte order, then that many bytes of
UTF-8 JSON. Here one request gets one answer, `{token, port}` or `{error}`, and the program exits; stdout
carries nothing else (Chrome would read it as a broken message).

`python -m bridge` installs it at each start (`install`): a launcher next to the token file (it runs this
module with the bridge's Python, for that token file) and a manifest naming it, in the folders where Chromium
and Chrome look for a user's hosts, `<profile>/NativeMessagingHosts/` (for the default profiles
~/.config/chromium and ~/.config/google-chrome, and for the profile `--launch-browser` makes).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import struct
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

from engine.protocol import BRIDGE_PORT, NATIVE_HOST, Kind

from .security import ROOT, TokenFileError, default_token_file, extension_origin, read_token

LAUNCHER = "native-host"  # next to the token file
PORT_FILE = "bridge-port"  # next to the token file: the port of the bridge that last started with it
USER_PROFILES = (".config/chromium", ".config/google-chrome")  # the browsers' default profiles, under $HOME
MAX_REQUEST_BYTES = 1 << 10  # a request is {kind: "token"}; Chrome could send up to 4 GiB
_LENGTH = struct.Struct("=I")  # native byte order, as Chrome writes it


# ---------------------------------------------------------------- the protocol


def read_message(stream: BinaryIO) -> Any:
    """One message from `stream`; ValueError when it is missing, too long or not JSON."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise ValueError("no message on stdin")
    (length,) = _LENGTH.unpack(head)
    if length > MAX_REQUEST_BYTES:
        raise ValueError(f"a request of {length} bytes (at most {MAX_REQUEST_BYTES})")
    body = stream.read(length)
    if len(body) < length:
        raise ValueError(f"a request cut short ({len(body)} of {length} bytes)")
    return json.loads(body.decode("utf-8"))  # ValueError when it is not UTF-8 JSON


def write_message(stream: BinaryIO, message: Any) -> None:
    """`message` as one length-prefixed JSON message on `stream`."""
    body = json.dumps(message).encode("utf-8")
    stream.write(_LENGTH.pack(len(body)) + body)
    stream.flush()


def answer(request: Any, token_file: Path) -> dict[str, Any]:
    """The answer to one request: `{token, port}` for `{kind: "token"}`, else `{error}`."""
    if not isinstance(request, dict) or request.get("kind") != Kind.TOKEN:
        return {"error": f"this host answers {{kind: {Kind.TOKEN.value!r}}} only"}
    try:
        return {"token": read_token(token_file), "port": read_port(token_file)}
    except TokenFileError as e:
        return {"error": str(e)}


def read_port(token_file: Path) -> int:
    """The port of the bridge that last started with `token_file` (BRIDGE_PORT when none said)."""
    try:
        port = int((token_file.parent / PORT_FILE).read_text(encoding="ascii"))
    except (OSError, ValueError):
        return BRIDGE_PORT
    return port if 0 < port < 1 << 16 else BRIDGE_PORT


def remember_port(token_file: Path, port: int) -> None:
    """Tell the native host which port the bridge serves (written by the bridge once it listens)."""
    _write(token_file.parent / PORT_FILE, f"{port}\n", 0o600)


# ---------------------------------------------------------------- installation


def user_folders() -> list[Path]:
    """Where Chromium and Chrome look for this user's hosts when they run on their default profile."""
    return [profile_folder(Path.home() / profile) for profile in USER_PROFILES]


def profile_folder(profile: Path) -> Path:
    """Where a browser started with `--user-data-dir=profile` looks for a user's hosts (and only there)."""
    return profile / "NativeMessagingHosts"


def install(token_file: Path, folders: Iterable[Path]) -> list[Path]:
    """The launcher next to `token_file` and a host manifest naming it in each of `folders` (made if missing);
    the manifests' paths. Writing them again changes nothing."""
    launcher = token_file.parent / LAUNCHER
    python, root, token = (shlex.quote(str(p)) for p in (sys.executable, ROOT, token_file.absolute()))
    _write(launcher, "#!/bin/sh\n# Written by `python -m bridge` (bridge/native_host.py): Chrome runs this for the "
                     f"Hearth extension.\ncd {root} && exec {python} -m bridge.native_host --token-file {token} "
                     '"$@"\n', 0o700)  # fmt: skip
    manifest = json.dumps(host_manifest(launcher), indent=2) + "\n"
    written = []
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        _write(folder / f"{NATIVE_HOST}.json", manifest, 0o644)
        written.append(folder / f"{NATIVE_HOST}.json")
    return written


def host_manifest(launcher: Path) -> dict[str, Any]:
    """Chrome's host manifest: this name, the launcher (an absolute path), only the extension may start it."""
    return {"name": NATIVE_HOST, "description": "Hearth: the local bridge's token for the Hearth extension",
            "path": str(launcher.absolute()), "type": "stdio",
            "allowed_origins": [f"{extension_origin()}/"]}  # fmt: skip


def _write(path: Path, text: str, mode: int) -> None:
    """`text` into `path` with `mode`, replaced whole (a browser reading it never sees half a file)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(partial, path)


# ---------------------------------------------------------------- the program Chrome starts


def main(argv: list[str] | None = None) -> int:
    """Answer one request from stdin on stdout; every failure is an `{error}` answer, and the exit status 0."""
    parser = argparse.ArgumentParser(prog="python -m bridge.native_host", description=__doc__.splitlines()[0])
    parser.add_argument("--token-file", type=Path, default=None, help="the bridge's token file")
    args, _ = parser.parse_known_args(argv)  # Chrome adds the caller's origin (and on Windows a window handle)
    token_file = args.token_file or default_token_file()
    try:
        reply = answer(read_message(sys.stdin.buffer), token_file)
    except ValueError as e:
        reply = {"error": str(e)}
    try:
        write_message(sys.stdout.buffer, reply)
    except BrokenPipeError:  # the browser went away first
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
