"""Who may talk to the bridge: whoever presents the token kept in a user-only file. The token is the only key.

Scripts read the token from its file. The extension cannot read files: Chrome's native messaging hands it the
token (bridge/native_host.py, a host Chrome starts only for the extension's id), or, where that host cannot be
installed, the user types the one-time pairing code the bridge prints (`Pairing`) and the bridge answers the
extension's hello with the token. An `Origin` header proves nothing (any local program can send one): it is a
second wall only, refusing web pages' origins even with the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import stat
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "extension" / "manifest.json"
PAIRING_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read off a terminal, typed into a form
PAIRING_CHARS = 8  # 31**8: about 10**12 codes, against 5 tries per code
PAIRING_SECONDS = 600
PAIRING_TRIES = 5


class TokenFileError(Exception):
    """The token file is missing or unreadable (is the bridge running?)."""


def default_token_file() -> Path:
    """`$HEARTH_BRIDGE_TOKEN_FILE`, else ~/.config/hearth/bridge-token."""
    override = os.environ.get("HEARTH_BRIDGE_TOKEN_FILE")
    return Path(override) if override else Path.home() / ".config" / "hearth" / "bridge-token"


def ensure_token(path: Path) -> str:
    """The token in `path`, made (random, mode 0600) unless a private one is already there; its folder is
    made 0700 either way (the native host's launcher lives there too)."""
    _private_folder(path.parent)
    try:
        info = path.stat()
        private = info.st_uid == os.getuid() and not info.st_mode & (stat.S_IRWXG | stat.S_IRWXO)
        token = path.read_text(encoding="ascii").strip() if private else ""
        if len(token) >= 32:
            return token
    except (OSError, UnicodeDecodeError):
        pass
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # also when the file existed with looser bits
        os.write(fd, (token + "\n").encode("ascii"))
    finally:
        os.close(fd)
    return token


def _private_folder(folder: Path) -> None:
    """`folder`, made if missing, mode 0700 whatever it had; a shared folder (/tmp) is refused, not closed."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.stat()
    if info.st_mode & (stat.S_ISVTX | stat.S_IWOTH):
        raise TokenFileError(f"{folder} is shared with other users: keep the token in a folder of its own "
                             "(--token-file)")  # fmt: skip
    try:
        os.chmod(folder, 0o700)
    except OSError as e:
        raise TokenFileError(f"cannot make {folder} private (mode 0700): {e.strerror}; keep the token in a "
                             "folder of your own (--token-file)") from None  # fmt: skip


def read_token(path: Path | None = None) -> str:
    """The token a client presents, read from the bridge's token file."""
    path = path or default_token_file()
    try:
        token = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise TokenFileError(f"cannot read the bridge token from {path} ({e}): start it with `python -m bridge`") from e
    if not token:
        raise TokenFileError(f"the bridge token file {path} is empty: restart `python -m bridge`")
    return token


def token_matches(presented: str | None, token: str) -> bool:
    """Constant-time comparison, so timing tells nothing about the token."""
    return presented is not None and hmac.compare_digest(presented.encode(), token.encode())


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header."""
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


def extension_id(manifest: Path = MANIFEST) -> str:
    """Chrome's id for the extension: sha256 of the manifest's public key (DER), first 32 hex digits
    written with the letters a-p for 0-f."""
    key = json.loads(manifest.read_text(encoding="utf-8"))["key"]
    digest = hashlib.sha256(base64.b64decode(key)).hexdigest()[:32]
    return "".join(chr(ord("a") + int(c, 16)) for c in digest)


def extension_origin(manifest: Path = MANIFEST) -> str:
    return f"chrome-extension://{extension_id(manifest)}"


# ---------------------------------------------------------------- pairing (browsers without the native host)


class Pairing:
    """The one-time pairing code: it admits one provider, who then hears the token. It is replaced once used,
    after 10 minutes, or after 5 wrong tries; `announce` gets each new code (the bridge prints it)."""

    def __init__(self, announce: Callable[[str], None] | None = None, clock: Callable[[], float] = time.monotonic):
        self.announce, self.clock = announce, clock
        self._new()

    def _new(self) -> None:
        self.code = "".join(secrets.choice(PAIRING_ALPHABET) for _ in range(PAIRING_CHARS))
        self.expires = self.clock() + PAIRING_SECONDS
        self.wrong = 0

    def renew(self) -> None:
        """A fresh code, announced."""
        self._new()
        if self.announce is not None:
            self.announce(self.shown())

    def shown(self) -> str:
        """The code as printed: two groups of four (the dash and case are optional when typed)."""
        return f"{self.code[:4]}-{self.code[4:]}"

    def redeem(self, presented: str) -> bool:
        """True once for the current code, compared in constant time; a wrong or late one counts against it."""
        typed = "".join(c for c in presented.upper() if not c.isspace() and c != "-")
        if self.clock() > self.expires:
            self.renew()
            return False
        if hmac.compare_digest(typed.encode(), self.code.encode()):
            self.renew()
            return True
        self.wrong += 1
        if self.wrong >= PAIRING_TRIES:
            self.renew()
        return False
