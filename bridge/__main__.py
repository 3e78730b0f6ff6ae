"""`python -m bridge [--port N] [--native] [--launch-browser [--headless]]`: serve the model on 127.0.0.1."""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from engine.config import DEFAULT_N_CTX
from engine.errors import HearthError
from engine.protocol import NATIVE_HOST

from .hub import Hub, Provider
from .native_host import install, remember_port, user_folders
from .security import Pairing, TokenFileError, default_token_file, ensure_token, extension_origin
from .server import DEFAULT_PORT, BridgeServer, PortTaken

if TYPE_CHECKING:
    from .launch import Browser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bridge", description=__doc__.splitlines()[0].split(": ")[-1])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT})")
    parser.add_argument("--native", action="store_true",
                        help="serve from the native engine while no browser provider is connected")  # fmt: skip
    parser.add_argument("--model", type=Path, help="GGUF for --native (default: SmolLM2-135M-Instruct Q4_1)")
    parser.add_argument("--n-ctx", type=int, default=DEFAULT_N_CTX, help="context size for --native (tokens)")
    parser.add_argument("--kv-f16", action="store_true",
                        help="for --native: the KV cache in f16 (half its memory, a longer --n-ctx; less exact)")
    parser.add_argument("--f16-prompts", action="store_true",
                        help="for --native: prompts' products in f16 (GPUs with shader-f16): faster, less exact")
    parser.add_argument("--q8-prompts", action="store_true",
                        help="for --native: prompts' products on x in 8 bits, as llama.cpp's (GPUs): fastest, "
                             "less exact still")  # fmt: skip
    parser.add_argument("--parallel", type=_at_least_one, default=1, metavar="N",
                        help="for --native: requests decoded together (each keeps its own context of --n-ctx "
                             "tokens in memory; default 1)")  # fmt: skip
    parser.add_argument("--token-file", type=Path, default=None,
                        help="where the client token is kept (default: $HEARTH_BRIDGE_TOKEN_FILE or "
                             "~/.config/hearth/bridge-token)")  # fmt: skip
    parser.add_argument("--launch-browser", action="store_true",
                        help="build the extension if needed and start Chromium with it (a fresh profile)")  # fmt: skip
    parser.add_argument("--headless", action="store_true",
                        help="with --launch-browser: no window (the default where there is no display)")  # fmt: skip
    parser.add_argument("--extension", type=Path, metavar="DIR",
                        help="with --launch-browser: this built extension instead of dist/extension")  # fmt: skip
    parser.add_argument("--ask", metavar="TEXT",
                        help="once the model is ready, ask TEXT through the bridge (greedy) and print the answer "
                             "as it streams; then keep serving")  # fmt: skip
    return parser


def _at_least_one(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return n


async def _serve(args: argparse.Namespace) -> int:
    # SIGTERM stops it as Ctrl-C does; SIGINT is handled here too, since a shell starts its background jobs
    # with SIGINT ignored and asyncio then leaves it so: `python -m bridge &` could not be stopped with it.
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, asyncio.current_task().cancel)
    if args.launch_browser and args.port != DEFAULT_PORT:
        print(f"bridge: a freshly installed extension connects to port {DEFAULT_PORT}: --launch-browser needs it",
              file=sys.stderr)  # fmt: skip
        return 2
    token_file = args.token_file or default_token_file()
    hub = Hub()
    pairing = Pairing(lambda code: print(f"new pairing code: {code} (the last one was used, expired or guessed "
                                         "wrong 5 times)", file=sys.stderr))  # fmt: skip
    server = BridgeServer(hub, ensure_token(token_file), extension_origin(), args.port, pairing)
    await server.start()
    print(f"Hearth bridge on ws://127.0.0.1:{server.port} (OpenAI API: http://127.0.0.1:{server.port}/v1)",
          file=sys.stderr)  # fmt: skip
    print(f"token file: {token_file}", file=sys.stderr)
    _offer_the_token(token_file, server)
    browser = None
    try:
        if args.native:
            from .native import load_engine, native_provider

            print("loading the native engine...", file=sys.stderr)
            engine = await load_engine(args.model, args.n_ctx, parallel=args.parallel, kv_f16=args.kv_f16,
                                       f16_prompts=args.f16_prompts, q8_prompts=args.q8_prompts)
            hub.add_provider(native_provider(hub, engine))
            print(f"native engine ready: {hub.model_name()}", file=sys.stderr)
        if args.launch_browser:
            from .launch import launch_browser

            browser = await launch_browser(token_file, headless=args.headless, extension=args.extension)
            asyncio.create_task(_open_chat_when_ready(hub, browser))
        elif server.port != DEFAULT_PORT:
            print(f"waiting for the Hearth extension: set its panel's Settings > Bridge port to {server.port}",
                  file=sys.stderr)  # fmt: skip
        else:
            print("waiting for the Hearth extension to connect (Ctrl-C to stop)", file=sys.stderr)
        if args.ask:
            await _ask(hub, server, args.ask, browser)
        await asyncio.Future()  # serve until interrupted
    finally:
        if browser is not None:
            await browser.stop()
        await server.close()
    return 0


def _offer_the_token(token_file: Path, server: BridgeServer) -> None:
    """The extension's two ways to the token: the native-messaging host, installed for this user's default
    browser profiles, and the pairing code, for browsers that host cannot reach."""
    try:
        remember_port(token_file, server.port)
        folders = [manifest.parent for manifest in install(token_file, user_folders())]
        print(f"native messaging host {NATIVE_HOST} (gives the extension the token): {', '.join(map(str, folders))}",
              file=sys.stderr)  # fmt: skip
    except OSError as e:
        print(f"bridge: cannot install the native messaging host ({e}): pair the extension instead", file=sys.stderr)
    print(f"pairing code (panel > Settings > Pair with bridge, where the native host is missing): "
          f"{server.pairing.shown()}", file=sys.stderr)  # fmt: skip


async def _ready_provider(hub: Hub, browser: Browser | None) -> Provider | None:
    """The provider once it has said which model it serves; None if the launched browser exits first."""
    while (provider := hub.active()) is None or provider.info is None:
        if browser is not None and browser.process.returncode is not None:
            print(f"bridge: Chromium exited (status {browser.process.returncode}) before the extension connected",
                  file=sys.stderr)  # fmt: skip
            return None
        await asyncio.sleep(0.2)
    return provider


async def _open_chat_when_ready(hub: Hub, browser: Browser) -> None:
    if await _ready_provider(hub, browser) is not None:
        await browser.open_chat()


async def _ask(hub: Hub, server: BridgeServer, text: str, browser: Browser | None) -> None:
    """One sample request through the bridge's own websocket, as any script would send it."""
    from .client import APIError, AsyncClient

    print("waiting for the model (the extension loads it once)...", file=sys.stderr)
    if (provider := await _ready_provider(hub, browser)) is None:
        return
    print(f"asking {provider.name}: {text}", file=sys.stderr)
    messages = [{"role": "user", "content": text}]
    try:
        async with AsyncClient(f"ws://127.0.0.1:{server.port}", token=server.token) as client:
            stream = await client.chat.completions.create(model=hub.model_name(), messages=messages, temperature=0,
                                                          max_tokens=128, stream=True)  # fmt: skip
            async for chunk in stream:
                print(chunk.choices[0].delta.content or "", end="", flush=True)
        print(flush=True)
    except APIError as e:
        print(f"\nbridge: the sample request failed: {e}", file=sys.stderr)
    print("serving until Ctrl-C", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_serve(args))
    except PortTaken as e:
        print(f"bridge: {e.strerror}", file=sys.stderr)
        return 2
    except TokenFileError as e:  # the token's folder cannot be made private
        print(f"bridge: {e}", file=sys.stderr)
        return 2
    except HearthError as e:  # --native: no GPU adapter, a model that cannot load, ...
        print(f"bridge: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:  # --launch-browser: no Chromium, or no built extension
        print(f"bridge: {e}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError:  # build.py said why on stderr
        print("bridge: building the extension failed (see above)", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 0


if __name__ == "__main__":
    sys.exit(main())
