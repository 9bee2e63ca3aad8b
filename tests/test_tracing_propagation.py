"""Trace context flows out: the upstream HTTP request carries the attempt span as `traceparent`."""

from __future__ import annotations

from test_observability import TRACE_ID, observed_gateway, user

from provider_gateway.fakes import FakeUpstream, kinds
from provider_gateway.observability import inject_trace_headers, propagation
from provider_gateway.v1 import provider_service_pb2 as pb


async def test_upstream_request_headers_carry_the_attempt_span(monkeypatch) -> None:
    monkeypatch.setenv("PROPAGATION_TEST_OPENAI_KEY", "sk-test-propagation-0123456789")
    async with FakeUpstream() as fake:
        kinds.openai(fake)
        config = f'[providers.up]\nkind = "openai"\nbase_url = "{fake.url}/v1"\napi_key_env = "PROPAGATION_TEST_OPENAI_KEY"\n'
        async with observed_gateway(config) as gw:
            metadata = (("traceparent", f"00-{TRACE_ID}-00f067aa0ba902b7-01"),)
            request = pb.ChatRequest(model="up/gpt-4o", messages=[user("hi")])
            events = [e async for e in gw.running.stub.ChatStream(request, metadata=metadata)]
            assert events[-1].finish.provider == "up"
            attempt = next(s for s in gw.finished() if s.name == "chat gpt-4o")
            stats = gw.running.server.telemetry.gauges.connections()
    sent = fake.last("/v1/chat/completions").headers
    assert sent["traceparent"] == f"00-{TRACE_ID}-{attempt.context.span_id:016x}-01"
    assert attempt.attributes["gen_ai.provider.name"] == "openai"
    assert attempt.attributes["gen_ai.usage.output_tokens"] > 0
    # Every request to the fake (the start-up health probe, the chat) went over one pooled connection.
    assert stats == {fake.url: (1, len(fake.requests) - 1)}


def test_without_tracing_nothing_is_injected(monkeypatch) -> None:
    monkeypatch.setattr(propagation, "_inject", None)
    headers: dict[str, str] = {}
    inject_trace_headers(headers)
    assert headers == {}


async def test_a_callers_tracestate_and_baggage_do_not_reach_the_vendor(monkeypatch) -> None:
    """`tracestate` and `baggage` are a client's free text (tenant or user ids): the vendor gets
    the gateway's `traceparent` in the caller's trace, and neither of them."""
    monkeypatch.setenv("PROPAGATION_TEST_OPENAI_KEY", "sk-test-propagation-0123456789")
    async with FakeUpstream() as fake:
        kinds.openai(fake)
        config = f'[providers.up]\nkind = "openai"\nbase_url = "{fake.url}/v1"\napi_key_env = "PROPAGATION_TEST_OPENAI_KEY"\n'
        async with observed_gateway(config) as gw:
            metadata = (
                ("traceparent", f"00-{TRACE_ID}-00f067aa0ba902b7-01"),
                ("tracestate", "tenant=acme-internal,userid=alice"),
                ("baggage", "secret=hunter2"),
            )
            request = pb.ChatRequest(model="up/gpt-4o", messages=[user("hi")])
            await gw.running.stub.Chat(request, metadata=metadata, timeout=10)
    sent = fake.last("/v1/chat/completions").headers
    assert sent["traceparent"].startswith(f"00-{TRACE_ID}-")  # still the caller's trace
    assert "tracestate" not in sent
    assert "baggage" not in sent
