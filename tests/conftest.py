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


@pytest.fixture(scope="session")
def llama_cpp(model_path):
    """llama-cpp-python, once one decode has run in a child process (tests/llama_witness.py): a build that
    would die of an illegal instruction fails the tests that use it, with the reason, instead of the run."""
    from tests.llama_witness import decode_in_child

    module = pytest.importorskip("llama_cpp")
    if (why := decode_in_child(model_path)) is not None:
        pytest.fail(why, pytrace=False)
    return module


@pytest.fixture(scope="session")
def event_loop_session():
    """One event loop for the session, so one engine (and its GPU device) serves many tests."""
    import asyncio

    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def engine(event_loop_session, model_gguf):
    """The default model loaded once on the native device (lavapipe on machines without a GPU)."""
    from engine.engine import Engine

    return event_loop_session.run_until_complete(Engine.load(gguf=model_gguf, n_ctx=1024))


def pytest_collection_modifyitems(config, items):
    """Run the browser tests last: Playwright's sync API keeps an event loop running in the main thread
    while its session fixtures live, and the native tests drive their own asyncio loops."""
    items.sort(key=lambda item: "e2e" in item.path.parts)
