"""llama.cpp's own test material, read from the pinned llama-cpp-python sdist that scripts/setup.sh keeps.

Its vendor/llama.cpp/models folder holds the tokenizer test set (`ggml-vocab-<family>.gguf`, a vocabulary
only, with `.inp` texts and the ids llama.cpp's test-tokenizer-0 expects in `.out`) and real chat templates
(`templates/*.jinja`). The files are unpacked once next to the sdist; nothing here reaches the network.
"""

from __future__ import annotations

import functools
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".venv" / "cache"
_MODELS = "vendor/llama.cpp/models/"
_SEPARATOR = "\n__ggml_vocab_test__\n"


class SdistMissing(RuntimeError):
    """The sdist is not where scripts/setup.sh puts it."""


def _pin() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(r'"llama-cpp-python==([^"]+)"', text)
    assert match, "pyproject.toml pins no llama-cpp-python"
    return match.group(1)


def sdist_path() -> Path:
    path = CACHE / f"llama_cpp_python-{_pin()}.tar.gz"
    if not path.is_file():
        raise SdistMissing(f"{path} is missing: run scripts/setup.sh, which downloads it")
    return path


@functools.cache
def models_dir() -> Path:
    """vendor/llama.cpp/models of the pinned sdist (vocabularies and templates only), unpacked once."""
    sdist = sdist_path()
    target = CACHE / f"llama.cpp-models-{_pin()}"
    done = target / ".unpacked"
    if not done.exists():
        with tarfile.open(sdist, "r:gz") as tar:
            for member in tar.getmembers():
                _, _, inner = member.name.partition("/")
                if not member.isfile() or not inner.startswith(_MODELS):
                    continue
                name = inner.removeprefix(_MODELS)
                if not (name.startswith("ggml-vocab-") or name.startswith("templates/")):
                    continue
                out = target / name
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(tar.extractfile(member).read())
        done.write_text(sdist.name)
    return target


@dataclass(frozen=True)
class VocabCase:
    """One family of llama.cpp's tokenizer test: its vocabulary GGUF and (text, expected ids) pairs."""

    family: str  # "llama-spm", "qwen2", ...
    gguf: Path
    cases: tuple[tuple[str, tuple[int, ...]], ...]


def _read_cases(inp: Path, out: Path) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The (text, ids) pairs as test-tokenizer-0 reads them: texts separated by a "__ggml_vocab_test__"
    line (the file ends with one), one line of space-separated ids per text."""
    raw = inp.read_text(encoding="utf-8")
    texts = raw.split(_SEPARATOR)
    if raw.endswith(_SEPARATOR):
        texts.pop()  # the text after the final separator is not a test
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(texts), f"{out.name}: {len(lines)} id lines for {len(texts)} texts"
    return tuple((text, tuple(int(i) for i in line.split())) for text, line in zip(texts, lines, strict=True))


def vocab_families() -> list[str]:
    """Every family with a vocabulary and expected ids, sorted."""
    return sorted(p.name.removeprefix("ggml-vocab-").removesuffix(".gguf.inp")
                  for p in models_dir().glob("ggml-vocab-*.gguf.inp"))


def vocab_case(family: str) -> VocabCase:
    d = models_dir()
    gguf = d / f"ggml-vocab-{family}.gguf"
    return VocabCase(family, gguf, _read_cases(Path(f"{gguf}.inp"), Path(f"{gguf}.out")))


def template(name: str) -> str:
    """The text of templates/<name>.jinja."""
    return (models_dir() / "templates" / f"{name}.jinja").read_text(encoding="utf-8")


def template_names() -> list[str]:
    return sorted(p.stem for p in (models_dir() / "templates").glob("*.jinja"))
