"""`provider-gateway fake-upstream <kind> --port N`: run a fake vendor API to try the gateway by hand."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import Any

# The kinds `fakes.kinds.KINDS` serves, named here so that building the parser imports no server.
KIND_NAMES = ("azure", "mistral", "ollama", "openai")


def add_command(commands: Any) -> None:
    """Register the subcommand on the main parser's subparsers."""
    fake = commands.add_parser("fake-upstream", help="run a fake vendor API on 127.0.0.1 for manual trials")
    fake.add_argument("kind", choices=KIND_NAMES, help="which vendor's wire format to fake")
    fake.add_argument("--port", type=int, default=0, help="port to listen on (0 = any free port)")
    fake.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    fake.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from provider_gateway.fakes import kinds

    async def serve() -> None:
        fake = kinds.build(args.kind)
        url = await fake.start(args.host, args.port)
        print(f"fake {args.kind} upstream listening on {url} (Ctrl-C to stop)", flush=True)
        print(_provider_hint(args.kind, url + kinds.BASE_PATHS.get(args.kind, "")), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await fake.stop()
            print(f"served {len(fake.requests)} requests", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


def _provider_hint(kind: str, base_url: str) -> str:
    """A provider table that works against this fake, as the operator would paste it."""
    lines = [
        "point a provider at it, e.g.",
        f"[providers.{kind}]",
        f'kind = "{kind}"',
        f'base_url = "{base_url}"',
    ]
    if kind != "ollama":  # the fake checks that a key is present, not which one
        lines += [
            'api_key_env = "FAKE_UPSTREAM_KEY"',
            "and start the gateway with FAKE_UPSTREAM_KEY=any-value in its environment",
        ]
    return "\n".join(lines)
