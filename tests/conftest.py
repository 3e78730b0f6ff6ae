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


# The default model as llama.cpp's quantiser rewrites it (ftype ids from llama.h): the K-quant mixes combine
# Q2_K..Q6_K, and the 576-wide rows (not whole superblocks of 256) fall back to Q4_0..Q8_0; IQ4_XS's to IQ4_NL.
LLAMA_FTYPES = {"Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18, "Q3_K_M": 12, "Q2_K": 10, "Q5_0": 8, "Q5_1": 9, "IQ4_XS": 30}


@pytest.fixture(scope="session")
def requantised(llama_cpp, model_path, tmp_path_factory):
    """requantised(name) -> the default model rewritten by llama.cpp in that mix, made once a session."""
    from tests.test_reference import quantize

    folder, made = tmp_path_factory.mktemp("requantised"), {}

    def get(name: str):
        if name not in made:
            made[name] = folder / f"{name}.gguf"
            quantize(llama_cpp, model_path, made[name], LLAMA_FTYPES[name])
        return made[name]

    return get
