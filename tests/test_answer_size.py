"""Answers larger than the server may send ([server] max_message_bytes): a unary answer over it is
refused RESOURCE_EXHAUSTED by the edge, with what to do instead, and logged, counted and traced as
what the client got (server/answer_size.py); an Embed whose answer could not fit is refused before
any provider works on it (server/bounds.py embed_answer_bytes).
"""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest
from rpc_util import chat, collect_until_error, text_of
from test_event_batches import unbatched
from test_metrics_prometheus import points
from test_observability import captured_logs, next_span, observed_gateway, user

from provider_gateway.observability import logs
from provider_gateway.v1 import provider_service_pb2 as pb

LIMIT = 65536
# The mock echoes the prompt's words, its own two among them: 12 words are 4 of these, about 96 kB.
SMALL_SERVER = f"""
[server]
max_message_bytes = {LIMIT}
[providers.mock]
kind = "mock"
[providers.mock.models.wide]
embeddings = true
embedding_dimensions = 9000
"""
LONG_WORD = "a" * 24000


def access_lines(text: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if line["logger"] == logs.ACCESS_LOGGER]


async def test_a_chat_answer_over_the_send_limit_is_refused_and_recorded_as_refused() -> None:
    with captured_logs() as output:
        async with observed_gateway(SMALL_SERVER) as gw:
            request = pb.ChatRequest(model="mock/echo", messages=[user(LONG_WORD)])
            with pytest.raises(grpc.aio.AioRpcError) as refused:  # the client itself takes 4 MiB
                await gw.running.stub.Chat(request, timeout=10)
            span = await next_span(gw, lambda s: s.name.endswith("/Chat"))
            counted = points(gw.reader.get_metrics_data(), "provider_gateway.requests")
            await asyncio.sleep(0.05)  # anything grpc would log after the call
    details = refused.value.details() or ""
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"over [server] max_message_bytes {LIMIT}" in details
    assert "ChatStream" in details
    assert "Sent message larger than max" not in output.getvalue()  # grpc core never had to refuse it
    chat = [line for line in access_lines(output.getvalue()) if line["rpc"] == "Chat"]
    assert [line["status"] for line in chat] == ["RESOURCE_EXHAUSTED"]
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    statuses = {p.attributes["status"] for p in counted if p.attributes["rpc"] == "Chat"}  # type: ignore[attr-defined]
    assert statuses == {"RESOURCE_EXHAUSTED"}


async def test_an_embed_answer_of_unknown_width_over_the_limit_says_to_send_fewer_inputs() -> None:
    """No `dimensions` asked: the model's width (9000 here) is known only from its answer."""
    async with observed_gateway(SMALL_SERVER) as gw:
        request = pb.EmbedRequest(model="mock/wide", inputs=["a", "b"])
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await gw.running.stub.Embed(request, timeout=10)
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "fewer inputs" in (refused.value.details() or "")


@pytest.mark.parametrize(("dimensions", "answered"), [(7675, True), (7676, False)])
async def test_an_embed_is_refused_before_any_work_when_its_answer_could_not_be_sent(
    dimensions: int, answered: bool
) -> None:
    """2 inputs x 7675 dimensions is the widest answer that fits 64 KiB with room for its framing."""
    with captured_logs() as output:
        async with observed_gateway(SMALL_SERVER) as gw:
            request = pb.EmbedRequest(model="mock/wide", inputs=["a", "b"], dimensions=dimensions)
            try:
                answer = await gw.running.stub.Embed(request, timeout=10)
                code, details = grpc.StatusCode.OK, ""
            except grpc.aio.AioRpcError as exc:
                code, details = exc.code(), exc.details() or ""
            await asyncio.sleep(0.05)
    (line,) = access_lines(output.getvalue())
    if answered:
        assert code is grpc.StatusCode.OK
        assert [len(e.values) for e in answer.embeddings] == [dimensions] * 2
        assert answer.ByteSize() <= LIMIT
    else:
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert f"2 inputs x {dimensions} dimensions" in details
        assert f"[server] max_message_bytes {LIMIT}" in details
        assert line["attempts"] == 0  # no provider was asked
    assert line["status"] == code.name


async def test_the_documented_embed_caps_together_are_refused_at_the_default_limit() -> None:
    """256 inputs x 8192 dimensions is exactly 8 MiB of floats: with the vectors' framing the
    answer would not fit the default 8 MiB, so it is refused up front rather than lost after."""
    async with observed_gateway('[providers.mock]\nkind = "mock"\n') as gw:
        request = pb.EmbedRequest(model="mock/embed", inputs=["x"] * 256, dimensions=8192)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await gw.running.stub.Embed(request, timeout=30)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "256 inputs x 8192 dimensions" in (refused.value.details() or "")


# A stream's messages: its deltas are split to fit the limit, but its finish (sent with the status,
# server/last_message.py) may not fit when many attempts' errors fill it, nor a cached answer's
# replay batched for a client asking for batch_events.
FAULT = "x" * 300
TIGHT_SERVER = f"""
[server]
max_message_bytes = 1024
[providers.mock]
kind = "mock"
{"".join(f'[providers.mock.models.bad{i}]\nfault = "error_before_first_token"\nfault_message = "{FAULT}"\n' for i in (1, 2, 3))}
[providers.mock.models.long]
tokens = 400
[cache]
enabled = true
"""


async def streamed(call: object) -> tuple[str, grpc.StatusCode, str, str]:
    """The text, status, details and cache header of a ChatStream call read to its end."""
    messages, error = await collect_until_error(call)
    events = unbatched(messages)
    metadata = dict(await call.initial_metadata())  # type: ignore[attr-defined]
    code = error.code() if error is not None else grpc.StatusCode.OK
    return (
        text_of(events),
        code,
        (error.details() or "") if error else "",
        str(metadata.get("x-gateway-cache")),
    )


async def test_a_stream_finish_over_the_send_limit_is_refused_recorded_and_never_cached() -> None:
    with captured_logs() as output:
        async with observed_gateway(TIGHT_SERVER) as gw:
            request = chat("mock/bad1", fallbacks=["mock/bad2", "mock/bad3", "mock/echo"])
            first = await streamed(gw.running.stub.ChatStream(request, timeout=10))
            again = await streamed(gw.running.stub.ChatStream(request, timeout=10))
            await asyncio.sleep(0.05)  # anything grpc would log after the call
    for _, code, details, _ in (first, again):
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "a ChatStream message is" in details
        assert "over [server] max_message_bytes 1024; raise it" in details
    assert (first[3], again[3]) == ("miss", "miss")  # an answer the client never got is not kept
    assert "Sent message larger than max" not in output.getvalue()
    streams = [line["status"] for line in access_lines(output.getvalue()) if line["rpc"] == "ChatStream"]
    assert streams == ["RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"]


async def test_a_cached_stream_replayed_in_batches_fits_the_send_limit() -> None:
    async with observed_gateway(TIGHT_SERVER) as gw:
        options = pb.StreamOptions(batch_events=True)
        request = chat("mock/long", stream_options=options)
        miss = await streamed(gw.running.stub.ChatStream(request, timeout=10))
        hit = await streamed(gw.running.stub.ChatStream(request, timeout=10))
    assert miss[1:] == (grpc.StatusCode.OK, "", "miss")
    assert hit[1:] == (grpc.StatusCode.OK, "", "hit")
    assert len(miss[0]) > 1024
    assert hit[0] == miss[0]
