"""Shared fixtures: the default model's file and parsed header."""

from __future__ import annotations

import pytest

from engine.default_model import default_model_path
from engine.gguf import open_gguf


@pytest.fixture(scope="session")
def model_path():
    return default_model_path()


@pytest.fixture(scope="session")
def model_gguf(model_path):
    return open_gguf(model_path)
