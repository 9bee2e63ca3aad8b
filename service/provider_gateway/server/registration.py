"""Services served through generic handlers only, not as grpc.aio "registered methods".

grpc.aio's server keeps one pending call request per registered method, and one more for every
other method, and it waits on all of them (asyncio.wait) again after every call that arrives:
each call adds and removes a done-callback on every pending request, 14 here (ProviderService's
9 methods, health's 3, reflection's v1alpha one, and the generic one), where with generic handlers
alone it waits on one. The generated `add_*_to_server` functions register each method both ways; the
methods answer the same either way, grpc.aio looking the handler up by its full name.
(50 streams: +4% streams/s in interleaved pairs; benchmarks/RESULTS.md, 2026-12-07.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc


@dataclass(frozen=True, slots=True)
class _Lookup:
    """What a generic handler is asked with (grpc.HandlerCallDetails' fields)."""

    method: str
    invocation_metadata: tuple[tuple[str, str], ...] = ()


class GenericOnly:
    """Stands for the server in the generated `add_*_to_server` calls: generic handlers pass on to
    the server; registered methods are dropped where a generic handler already serves them, and
    served through one otherwise, so no method is lost whatever the generated code calls."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server
        self._generic: list[grpc.GenericRpcHandler] = []

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._generic.extend(handlers)
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        unserved = {name: h for name, h in handlers.items() if not self._serves(f"/{service}/{name}")}
        if unserved:
            self.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, unserved),))

    def _serves(self, method: str) -> bool:
        lookup: Any = _Lookup(method)
        return any(handler.service(lookup) is not None for handler in self._generic)
