"""The native provider: engine/host.py's Host over the native engine, in the bridge's own process.

The same Host runs in the extension's offscreen document, so both providers answer with the same
messages; here they go straight to the hub instead of over a websocket.
"""

from __future__ import annotations

from typing import Any

from engine.host import Host
from engine.protocol import Kind, Message

from .hub import Hub, Provider


def native_provider(hub: Hub, engine: Any) -> Provider:
    """A provider serving `engine` (loaded) through a Host; add it with `hub.add_provider`."""
    provider = Provider(name="native engine", send=lambda message: connection.receive(message), native=True)
    connection = Host(engine=engine).connect(lambda message: hub.on_message(provider, message.to_dict()))
    connection.receive(Message(Kind.STATUS))  # the host answers with `ready`: the hub learns the model's name
    return provider


async def load_engine(path: str | None, n_ctx: int, progress=None, parallel: int = 1, kv_f16: bool = False,
                      f16_prompts: bool = False, q8_prompts: bool = False) -> Any:
    """The native engine, loaded once (the default model when `path` is None), serving `parallel` requests at
    once (a sequence of n_ctx positions each in its KV cache, f16 with kv_f16); f16_prompts and q8_prompts as
    Model.load's."""
    from engine.engine import Engine

    return await Engine.load(path, n_ctx=n_ctx, progress=progress, n_seqs=parallel, kv_f16=kv_f16,
                             f16_prompts=f16_prompts, q8_prompts=q8_prompts)
