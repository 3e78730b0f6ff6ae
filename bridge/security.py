"""Who may talk to the bridge: a token in a user-only file, and the extension's own origin.

Scripts prove themselves with the token (only the user can read the file); the extension cannot read
files, so its connections are recognised by their `Origin`, which web pages cannot forge. Any other
origin is a web page and is refused, token or not.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import stat
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "extension" / "manifest.json"


class TokenFileError(Exception):
    """The token file is missing or unreadable (is the bridge running?)."""


def default_token_file() -> Path:
    """`$HEARTH_BRIDGE_TOKEN_FILE`, else ~/.config/hearth/bridge-token."""
    override = os.environ.get("HEARTH_BRIDGE_TOKEN_FILE")
    return Path(override) if override else Path.home() / ".config" / "hearth" / "bridge-token"


def ensure_token(path: Path) -> str:
    """The token in `path`, made (random, mode 0600, folder 0700) unless a private one is already there."""
    try:
        info = path.stat()
        private = info.st_uid == os.getuid() and not info.st_mode & (stat.S_IRWXG | stat.S_IRWXO)
        token = path.read_text(encoding="ascii").strip() if private else ""
        if len(token) >= 32:
            return token
    except (OSError, UnicodeDecodeError):
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # also when the file existed with looser bits
        os.write(fd, (token + "\n").encode("ascii"))
    finally:
        os.close(fd)
    return token


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
