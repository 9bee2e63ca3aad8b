"""Trace context flows out: an adapter's upstream headers carry the attempt span as `traceparent`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar

import pytest
from test_observability import TRACE_ID, observed_gateway, user

from provider_gateway.config import Section
from provider_gateway.domain import ChatRequest, StreamEvent
from provider_gateway.observability import inject_trace_headers
from provider_gateway.providers import registry
from provider_gateway.providers.mock import MockProvider
from provider_gateway.v1 import provider_service_pb2 as pb


class HeaderCapturingProvider(MockProvider):
    """A mock that builds upstream headers the way the HTTP adapters do, and keeps them."""

    kind = "capture"
    sent: ClassVar[list[dict[str, str]]] = []

    @classmethod
    def build(cls, name: str, options: Section) -> HeaderCapturingProvider:
        return cls(name)

    def chat_stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        headers = {"content-type": "application/json"}
        inject_trace_headers(headers)
        self.sent.append(headers)
        return super().chat_stream(request)


async def test_upstream_request_headers_carry_the_attempt_span(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        registry.ADAPTERS, "capture", "test_tracing_propagation:HeaderCapturingProvider.build"
    )
    HeaderCapturingProvider.sent.clear()
    async with observed_gateway("[providers.up]\nkind = 'capture'") as gw:
        metadata = (("traceparent", f"00-{TRACE_ID}-00f067aa0ba902b7-01"),)
        request = pb.ChatRequest(model="up/echo", messages=[user("hi")])
        async for _ in gw.running.stub.ChatStream(request, metadata=metadata):
            pass
        attempt = next(s for s in gw.finished() if s.name == "chat echo")
    [headers] = HeaderCapturingProvider.sent
    assert headers["traceparent"] == f"00-{TRACE_ID}-{attempt.context.span_id:016x}-01"


def test_without_tracing_nothing_is_injected() -> None:
    from provider_gateway.observability import propagation

    headers: dict[str, str] = {}
    saved = propagation._inject
    propagation._inject = None
    try:
        inject_trace_headers(headers)
    finally:
        propagation._inject = saved
    assert headers == {}
