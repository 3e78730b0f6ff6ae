"""build.py: reproducible output, pinned checksums, clear errors, and a pure markupsafe wheel that imports."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import build
from engine.protocol import javascript

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def built_twice(tmp_path_factory):
    """Two builds of the same inputs into different folders (downloads come from the cache after the first)."""
    outs = []
    for name in ("a", "b"):
        out = tmp_path_factory.mktemp(name) / "extension"
        run = subprocess.run([sys.executable, str(ROOT / "build.py"), "--out", str(out)], capture_output=True,
                             text=True)
        assert run.returncode == 0, run.stderr
        outs.append((out, run.stderr))
    return outs


def test_the_same_inputs_give_the_same_bytes(built_twice):
    (a, _), (b, _) = built_twice
    assert build.tree_hash(a) == build.tree_hash(b)


def test_the_extension_holds_what_the_offscreen_document_loads(built_twice):
    out, log = built_twice[0]
    manifest = json.loads((out / "build.json").read_text())
    for name in manifest["wheels"]:
        assert (out / "wheels" / name).is_file()
    assert {name.split("-")[0].lower() for name in manifest["wheels"]} == _packages_the_engine_needs()
    assert (out / "protocol.js").read_text() == javascript()
    assert (out / manifest["model"]).stat().st_size > 50 << 20
    for name in ("manifest.json", "protocol.js", "service_worker.js", "offscreen.js", "replay.js", "sidepanel.js",
                 "pyodide/pyodide.mjs", "pyodide/pyodide.asm.wasm", "pyodide/python_stdlib.zip", "vendor/marked.esm.js",
                 "vendor/purify.es.mjs"):
        assert (out / name).is_file(), name
    names = zipfile.ZipFile(out / manifest["engine"]).namelist()
    assert "engine/host.py" in names and "engine/gpu/browser.py" in names
    assert any(n.startswith("shaders/") and n.endswith(".wgsl") for n in names)
    assert not [n for n in names if "__pycache__" in n]
    # One progress line per step on stderr.
    assert [line for line in log.splitlines() if line.startswith("build: [")][-1].startswith("build: [6/6]")


def _packages_the_engine_needs() -> set[str]:
    """The third-party packages engine/ imports, with what they require: the only wheels the browser needs."""
    from importlib.metadata import requires

    from tests.test_layout import ENGINE, _imports

    ours = {"engine", "wgpu", "js", "pyodide"}  # the engine itself, and the GPU seam's two backends
    imported = set().union(*(_imports(path) for path in ENGINE.rglob("*.py"))) - set(sys.stdlib_module_names) - ours
    needed = set(imported)
    for package in imported:
        needed |= {r.split(">")[0].split("=")[0].split(";")[0].strip().lower() for r in requires(package) or []
                   if "extra ==" not in r}  # fmt: skip
    return needed


def test_every_icon_the_manifest_names_is_an_rgba_png_of_its_size(built_twice):
    out = built_twice[0][0]
    manifest = json.loads((out / "manifest.json").read_text())
    icons = list(manifest["icons"].items()) + list(manifest["action"]["default_icon"].items())
    assert {size for size, _ in icons} >= {"16", "32", "48", "128"}
    for size, path in icons:
        data = (out / path).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
        width, height, bit_depth, color_type = struct.unpack(">IIBB", data[16:26])
        assert (width, height) == (int(size), int(size)), path
        assert (bit_depth, color_type) == (8, 6), f"{path}: want 8-bit RGBA (colour type 6), got {color_type}"


def test_markupsafe_wheel_is_pure_and_imports(built_twice, tmp_path):
    wheel = built_twice[0][0] / "wheels" / "markupsafe-3.0.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert not [n for n in names if n.endswith((".c", ".so"))]
        record = z.read("markupsafe-3.0.3.dist-info/RECORD").decode()
        assert "Tag: py3-none-any" in z.read("markupsafe-3.0.3.dist-info/WHEEL").decode()
        z.extractall(tmp_path)
    for line in record.splitlines():  # RECORD's hashes are the files' own
        name, digest, _ = line.split(",")
        if digest:
            data = (tmp_path / name).read_bytes()
            expected = "sha256=" + build.base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert digest == expected, name
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import markupsafe; print(markupsafe.escape('<b>'), "
    code += "markupsafe.__file__)"
    run = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True)
    escaped, path = run.stdout.split()
    assert escaped == "&lt;b&gt;" and path.startswith(str(tmp_path)), run.stderr


def _pin(tmp_path, data: bytes, sha256: str) -> build.Pin:
    source = tmp_path / "input.tgz"
    source.write_bytes(data)
    return build.Pin("input.tgz", source.as_uri(), sha256, "npm")


def test_checksum_mismatch_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(build, "PINS", (_pin(tmp_path, b"tampered", "0" * 64),))
    assert build.main(["--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert "build: error: checksum mismatch for input.tgz" in err and "Traceback" not in err
    assert not (tmp_path / "cache" / "input.tgz").exists()  # a bad download never enters the cache


def test_unreachable_input_is_a_clear_error(tmp_path, monkeypatch, capsys):
    pin = build.Pin("missing.tgz", (tmp_path / "nowhere.tgz").as_uri(), "0" * 64, "npm")
    monkeypatch.setattr(build, "PINS", (pin,))
    assert build.main(["--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")]) == 2
    assert "build: error: cannot fetch missing.tgz" in capsys.readouterr().err


def test_cached_input_is_checked_again(tmp_path, monkeypatch):
    data = b"good bytes"
    pin = _pin(tmp_path, data, hashlib.sha256(data).hexdigest())
    cache = tmp_path / "cache"
    assert build.fetch(pin, cache).read_bytes() == data
    (cache / "input.tgz").write_bytes(b"corrupted")  # the cache was damaged: fetch again
    assert build.fetch(pin, cache).read_bytes() == data


def test_refuses_to_replace_a_folder_that_is_not_a_build(tmp_path, capsys):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    with pytest.raises(build.BuildError, match="refusing"):
        build._clean(out)
    assert (out / "thesis.tex").exists()
