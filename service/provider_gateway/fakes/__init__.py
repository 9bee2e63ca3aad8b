"""Fake upstream servers for tests and manual trials: record requests, serve scripted replies.

Loaded on first use: `provider-gateway serve` imports the CLI, which only names this package's
subcommand, and should not pay for aiohttp's server (about 3 MB of RSS) in every gateway process.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["FakeUpstream", "RecordedRequest", "Reply"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("provider_gateway.fakes.server"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
