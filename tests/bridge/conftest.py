"""Fixtures: a real bridge on 127.0.0.1 (a free port, a temporary token file) and the echo provider."""

from __future__ import annotations

import pytest

from .harness import BridgeThread, EchoEngine, EchoProvider


@pytest.fixture(scope="module")
def token_file(tmp_path_factory):
    return tmp_path_factory.mktemp("hearth") / "bridge-token"


@pytest.fixture(scope="module")
def bridge(token_file, monkeypatch_module):
    monkeypatch_module.setenv("HEARTH_BRIDGE_TOKEN_FILE", str(token_file))
    running = BridgeThread(token_file)
    yield running
    running.close()


@pytest.fixture(scope="module")
def monkeypatch_module():
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


@pytest.fixture(scope="module")
def echo(bridge):
    """The echo provider, connected; tests that replace it put a fresh one back."""
    engine = EchoEngine()
    provider = EchoProvider(bridge, engine)
    bridge.call(provider.start())
    yield provider
    bridge.call(provider.stop())


@pytest.fixture()
def provider(bridge, echo):
    """A fresh echo provider in place of the module's, for tests that slow it down or make it vanish."""
    bridge.call(echo.stop())

    def replace(delay=0.0):
        fresh = EchoProvider(bridge, EchoEngine(delay))
        bridge.call(fresh.start())
        made.append(fresh)
        return fresh

    made: list[EchoProvider] = []
    yield replace
    for one in made:
        bridge.call(one.stop())
    bridge.call(echo.start())
