"""The engine runs unchanged on Pyodide: only the seam's backends may import native or browser modules."""

from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parent.parent / "engine"
BACKENDS = {
    "wgpu": ENGINE / "gpu" / "native.py",
    "js": ENGINE / "gpu" / "browser.py",
    "pyodide": ENGINE / "gpu" / "browser.py",
}
# Test-only packages, absent on Pyodide; and pydantic, which validates in the bridge and is not shipped.
NEVER = {"numpy", "gguf", "tokenizers", "llama_cpp", "torch", "pydantic"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_backends_import_wgpu_or_js_and_nothing_imports_numpy():
    files = sorted(ENGINE.rglob("*.py"))
    assert len(files) > 10
    for path in files:
        imported = _imports(path)
        assert not imported & NEVER, f"{path.name} imports {imported & NEVER}"
        for module, home in BACKENDS.items():
            if module in imported:
                assert path == home, f"{path.relative_to(ENGINE)} imports {module}; only {home.name} may"


def test_modules_stay_small():
    for path in ENGINE.rglob("*.py"):
        n = len(path.read_text().splitlines())
        assert n <= 450, f"{path.relative_to(ENGINE)} has {n} lines: split it"
