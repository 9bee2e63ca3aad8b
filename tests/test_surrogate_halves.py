"""Half of a UTF-16 surrogate pair escaped in an upstream's JSON (`"\\ud83d"`, the other half in
the next event): what a server in a UTF-16 language sends when it cuts a string inside an emoji.
The official SDKs read it (Python's json module keeps the half); protobuf cannot carry a lone half.
The gateway reads it too (wire/json_text.py) and makes it well-formed at the edge
(server/well_formed.py): halves it has together become their character, as the SDK's joined text
shows once encoded, and a half alone becomes U+FFFD. The call succeeds either way."""

from __future__ import annotations

import asyncio
import json

import grpc
import openai
import pytest
from conftest import run_gateway
from rpc_util import collect_until_error
from test_event_batches import OPENAI
from test_partial_usage import MODEL, anthropic_config, claude_start, frame
from vendor_cases import WAIT_S, chat_request, summarise

from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway.wire.json_text import well_formed_text

HALVES = ("\\ud83d", "\\ude00")  # as escaped on the wire: 😀 cut in two
EMOJI = "\U0001f600"


def openai_frame(content: str | None = None, finish: str | None = None) -> bytes:
    """A Chat Completions chunk; `content` is put in as written (escapes stay escapes)."""
    delta = "{}" if content is None else '{"content": "' + content + '"}'
    reason = "null" if finish is None else f'"{finish}"'
    choice = '{"index":0,"delta":' + delta + ',"finish_reason":' + reason + "}"
    return b'data: {"id":"c","model":"m","choices":[' + choice.encode() + b"]}\n\n"


FRAMES = [
    openai_frame(f"hi {HALVES[0]}"),
    openai_frame(f"{HALVES[1]} there"),
    openai_frame(finish="stop") + b"data: [DONE]\n\n",
]


async def sdk_text(fake: FakeUpstream) -> str:
    """What the openai SDK's stream gives for the same bytes, encoded as a client would show it."""
    fake.script("/v1/chat/completions", Reply(chunks=[b"".join(FRAMES)], content_type="text/event-stream"))
    client = openai.AsyncOpenAI(base_url=f"{fake.url}/v1", api_key="k", max_retries=0)
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    await client.close()
    return well_formed_text(text)


async def test_halves_read_together_become_their_character_as_the_sdk_reads_them(monkeypatch) -> None:
    monkeypatch.setenv("PG_X_KEY", "k")
    async with FakeUpstream() as fake:
        expected = await sdk_text(fake)
        fake.script(
            "/v1/chat/completions", Reply(chunks=[b"".join(FRAMES)], content_type="text/event-stream")
        )
        async with run_gateway(OPENAI.format(url=fake.url)) as gateway:
            events, error = await collect_until_error(
                gateway.stub.ChatStream(chat_request("o/m"), timeout=WAIT_S)
            )
    assert error is None
    assert expected == f"hi {EMOJI} there"
    assert summarise(events).text == expected


async def test_the_text_before_a_trailing_half_goes_at_once(monkeypatch) -> None:
    """Only the half waits for what follows it: the text before it is sent while the upstream is
    still silent."""
    monkeypatch.setenv("PG_X_KEY", "k")
    async with FakeUpstream() as fake:
        fake.script(
            "/v1/chat/completions", Reply(chunks=[FRAMES[0]], content_type="text/event-stream", then="hang")
        )
        async with run_gateway(OPENAI.format(url=fake.url)) as gateway:
            call = gateway.stub.ChatStream(chat_request("o/m"), timeout=WAIT_S)
            first = await asyncio.wait_for(call.read(), WAIT_S)
            call.cancel()
    assert first.text_delta.text == "hi "


COALESCING_OFF = "[server]\ncoalesce_deltas = false\n"


async def read_in_two(
    fake: FakeUpstream, frames: list[bytes], config: str
) -> tuple[pb.StreamEvent, list[pb.StreamEvent], grpc.aio.AioRpcError | None]:
    """The first message alone (the later frames wait for it), then the rest of the stream."""
    gate = asyncio.Event()
    fake.script("/v1/chat/completions", Reply(chunks=frames, content_type="text/event-stream", gate=gate))
    rest: list[pb.StreamEvent] = []
    error = None
    async with run_gateway(config) as gateway:
        call = gateway.stub.ChatStream(chat_request("o/m"), timeout=WAIT_S)
        first = await asyncio.wait_for(call.read(), WAIT_S)
        gate.set()
        try:
            while (message := await call.read()) is not grpc.aio.EOF:
                rest.append(message)
        except grpc.aio.AioRpcError as exc:
            error = exc
    return first, rest, error


@pytest.mark.parametrize("extra", ["", COALESCING_OFF], ids=["coalescing", "one-by-one"])
async def test_halves_in_separate_reads_become_their_character(monkeypatch, extra: str) -> None:
    """The first half waits for the text that follows it; together they are the emoji, as a
    UTF-16 client (JavaScript, the JVM, .NET) joining the SDK's deltas shows it."""
    monkeypatch.setenv("PG_X_KEY", "k")
    async with FakeUpstream() as fake:
        expected = await sdk_text(fake)
        first, rest, error = await read_in_two(fake, FRAMES, OPENAI.format(url=fake.url) + extra)
    assert error is None
    assert first.text_delta.text == "hi "
    assert first.text_delta.text + summarise(rest).text == expected == f"hi {EMOJI} there"
    assert rest[-1].HasField("finish")


@pytest.mark.parametrize("extra", ["", COALESCING_OFF], ids=["coalescing", "one-by-one"])
async def test_a_half_with_nothing_after_it_is_sent_before_the_finish(monkeypatch, extra: str) -> None:
    monkeypatch.setenv("PG_X_KEY", "k")
    async with FakeUpstream() as fake:
        first, rest, error = await read_in_two(
            fake, [FRAMES[0], FRAMES[2]], OPENAI.format(url=fake.url) + extra
        )
    assert error is None
    assert first.text_delta.text == "hi "
    assert [e.text_delta.text for e in rest if e.HasField("text_delta")] == ["\ufffd"]
    assert rest[-1].HasField("finish")


def reasoning_frame(text: str | None = None, content: str | None = None) -> bytes:
    """A chunk with DeepSeek's `reasoning_content` (or `content`), put in as written."""
    field, value = ("reasoning_content", text) if text is not None else ("content", content)
    choice = '{"index":0,"delta":{"' + field + '": "' + str(value) + '"},"finish_reason":null}'
    return b'data: {"id":"c","model":"m","choices":[' + choice.encode() + b"]}\n\n"


async def test_reasoning_halves_in_separate_reads_become_their_character(monkeypatch) -> None:
    monkeypatch.setenv("PG_X_KEY", "k")
    frames = [
        reasoning_frame(f"hm {HALVES[0]}"),
        reasoning_frame(f"{HALVES[1]} ok") + reasoning_frame(content="done"),
        FRAMES[2],
    ]
    async with FakeUpstream() as fake:
        first, rest, error = await read_in_two(fake, frames, OPENAI.format(url=fake.url))
    assert error is None
    assert first.reasoning_delta.text == "hm "
    reasoning = first.reasoning_delta.text + "".join(e.reasoning_delta.text for e in rest)
    assert reasoning == f"hm {EMOJI} ok"
    assert summarise(rest).text == "done"


async def test_a_half_before_a_cut_is_sent_before_the_error(monkeypatch) -> None:
    """A stream cut after a trailing half: the half (U+FFFD) comes before the error that ends it."""
    monkeypatch.setenv("PG_X_KEY", "k")
    async with FakeUpstream() as fake:
        fake.script(
            "/v1/chat/completions", Reply(chunks=[FRAMES[0]], content_type="text/event-stream", then="cut")
        )
        async with run_gateway(OPENAI.format(url=fake.url) + "[routing]\nretries = 0\n") as gateway:
            events, error = await collect_until_error(
                gateway.stub.ChatStream(chat_request("o/m"), timeout=WAIT_S)
            )
    assert error is not None
    assert error.code() == grpc.StatusCode.UNAVAILABLE, (error.code(), error.details())
    assert summarise(events).text == "hi \ufffd"


async def test_a_unary_answer_with_a_lone_half_is_answered(monkeypatch) -> None:
    monkeypatch.setenv("PG_X_KEY", "k")
    body = (
        '{"id":"c","object":"chat.completion","model":"m","choices":[{"index":0,"message":'
        '{"role":"assistant","content":"ok \\ud83d"},"finish_reason":"stop"}],'
        '"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}'
    )
    async with FakeUpstream() as fake:
        fake.script("/v1/chat/completions", Reply(body=body.encode(), content_type="application/json"))
        async with run_gateway(OPENAI.format(url=fake.url)) as gateway:
            answer = await gateway.stub.Chat(chat_request("o/m"), timeout=WAIT_S)
    assert answer.text == "ok \ufffd"
    assert answer.usage.output_tokens == 2


async def test_anthropic_text_with_a_lone_half_streams_to_its_end(monkeypatch) -> None:
    monkeypatch.setenv("PG_X_KEY", "k")
    text = [
        frame("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        frame("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "A"}}),
    ]
    lone = b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "\\ud83d!"}}\n\n'
    end = [
        frame("content_block_stop", {"index": 0}),
        frame("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}}),
        frame("message_stop", {}),
    ]
    async with FakeUpstream() as fake:
        chunks = [b"".join([claude_start(), *text, lone, *end])]
        fake.script("/v1/messages", Reply(chunks=chunks, content_type="text/event-stream"))
        async with run_gateway(anthropic_config(fake.url, "[routing]\nretries = 0\n")) as gateway:
            events, error = await collect_until_error(
                gateway.stub.ChatStream(chat_request(f"a/{MODEL}"), timeout=WAIT_S)
            )
    assert error is None
    assert summarise(events).text == "A\ufffd!"


@pytest.mark.parametrize("document", [b'{"a": "\\ud83d"}', b'["\\ude00"]'])
def test_the_json_reader_keeps_lone_halves_as_the_sdks_json_does(document: bytes) -> None:
    from provider_gateway.wire import json_text

    assert json_text.loads(document) == json.loads(document)


def test_the_json_reader_still_refuses_what_is_not_json_and_nesting_beyond_orjsons_bound() -> None:
    import orjson

    from provider_gateway.wire import json_text

    for bad in (b'{"a": ', b"[" * 2000 + b'"\\ud83d"' + b"]" * 2000):
        with pytest.raises(orjson.JSONDecodeError):
            json_text.loads(bad)


# Where upstream text holding a half reaches more than a delta: errors, tool calls, listings, logs.

TOOL_STOP = (
    b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n'
    b"data: [DONE]\n\n"
)


def call_frame(arguments: str, first: bool) -> bytes:
    head = (
        '"id":"call_1","type":"function","function":{"name":"f","arguments":"'
        if first
        else '"function":{"arguments":"'
    )
    call = '{"index":0,' + head + arguments + '"}}'
    return (
        b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"tool_calls":['
        + call.encode()
        + b"]}}]}\n\n"
    )


async def test_tool_arguments_cut_inside_an_emoji_end_whole_and_complete(monkeypatch) -> None:
    monkeypatch.setenv("PG_X_KEY", "k")
    frames = [call_frame('{\\"s\\":\\"\\ud83d', True), call_frame('\\ude00\\"}', False), TOOL_STOP]
    async with FakeUpstream() as fake:
        fake.script(
            "/v1/chat/completions", Reply(chunks=[b"".join(frames)], content_type="text/event-stream")
        )
        async with run_gateway(OPENAI.format(url=fake.url)) as gateway:
            events, error = await collect_until_error(
                gateway.stub.ChatStream(chat_request("o/m"), timeout=WAIT_S)
            )
    assert error is None
    (end,) = [e.tool_call_end.call for e in events if e.HasField("tool_call_end")]
    assert json.loads(end.arguments_json) == {"s": EMOJI}
    assert not end.incomplete


async def test_an_upstream_error_holding_a_half_still_ends_the_call_with_its_status(monkeypatch) -> None:
    """grpc cannot send a status message holding a lone half: without mending, no status at all
    was sent and the client waited for its deadline."""
    monkeypatch.setenv("PG_X_KEY", "k")
    first = b'{"model":"m","created_at":"x","message":{"role":"assistant","content":"A"},"done":false}\n'
    bad = b'{"error":"model crashed \\ud83d"}\n'
    err = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"busy \\ud83d"}}\n\n'
    async with FakeUpstream() as fake:
        fake.script("/api/chat", Reply(chunks=[first + bad], content_type="application/x-ndjson"))
        fake.script("/v1/messages", Reply(chunks=[claude_start() + err], content_type="text/event-stream"))
        ollama = f'[providers.l]\nkind = "ollama"\nbase_url = "{fake.url}"\n'
        async with run_gateway(anthropic_config(fake.url, ollama + "[routing]\nretries = 0\n")) as gateway:
            for model in ("l/m", f"a/{MODEL}"):
                _, error = await collect_until_error(
                    gateway.stub.ChatStream(chat_request(model), timeout=WAIT_S)
                )
                assert error is not None
                assert error.code() == grpc.StatusCode.UNAVAILABLE, (model, error.code(), error.details())
                assert "\ufffd" in error.details()


async def test_an_error_inside_an_openai_stream_holding_a_half_keeps_its_kind(monkeypatch) -> None:
    monkeypatch.setenv("PG_X_KEY", "k")
    chunk = b'data: {"error":{"code":400,"message":"context too long \\ud83d"}}\n\n'
    async with FakeUpstream() as fake:
        fake.script("/v1/chat/completions", Reply(chunks=[chunk], content_type="text/event-stream"))
        async with run_gateway(OPENAI.format(url=fake.url) + "[routing]\nretries = 0\n") as gateway:
            _, error = await collect_until_error(gateway.stub.ChatStream(chat_request("o/m"), timeout=WAIT_S))
    assert error is not None
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())


async def test_a_model_list_holding_a_half_is_listed_and_spoils_no_other_provider(monkeypatch) -> None:
    monkeypatch.setenv("PG_X_KEY", "k")
    bad = b'{"object":"list","data":[{"id":"m\\ud83d","object":"model","owned_by":"x"}]}'
    good = b'{"object":"list","data":[{"id":"fine","object":"model","owned_by":"x"}]}'
    async with FakeUpstream() as fake, FakeUpstream() as other:
        fake.on("GET", "/v1/models", lambda recorded: Reply(body=bad))
        other.on("GET", "/v1/models", lambda recorded: Reply(body=good))
        config = OPENAI.format(url=fake.url) + OPENAI.format(url=other.url).replace(
            "providers.o]", "providers.p]"
        )
        async with run_gateway(config) as gateway:
            listed = await gateway.stub.ListModels(pb.ListModelsRequest(), timeout=WAIT_S)
    models = {(m.provider, m.id) for m in listed.models}
    assert ("p", "fine") in models
    assert ("o", "m\ufffd") in models


async def test_reading_a_half_does_not_let_nan_through(monkeypatch) -> None:
    """orjson refuses NaN; a document read again for its half must not be read more leniently."""
    monkeypatch.setenv("PG_X_KEY", "k")
    body = (
        '{"id":"c","object":"chat.completion","model":"m","choices":[{"index":0,"message":'
        '{"role":"assistant","content":"ok \\ud83d"},"finish_reason":"stop"}],'
        '"usage":{"prompt_tokens":3,"completion_tokens":NaN,"total_tokens":5}}'
    )
    async with FakeUpstream() as fake:
        fake.script("/v1/chat/completions", Reply(body=body.encode()))
        async with run_gateway(OPENAI.format(url=fake.url) + "[routing]\nretries = 0\n") as gateway:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await gateway.stub.Chat(chat_request("o/m"), timeout=WAIT_S)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("document", [b'["\xed\xa0\xbd"]', '["a"]'.encode("utf-16"), b'["\\ud83d", NaN]'])
def test_the_json_reader_refuses_invalid_utf8_other_encodings_and_constants(document: bytes) -> None:
    import orjson

    from provider_gateway.wire import json_text

    with pytest.raises(orjson.JSONDecodeError):
        json_text.loads(document)


def test_a_log_line_holding_a_half_is_written() -> None:
    import io
    import logging

    from provider_gateway.observability import logs

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    record = logging.LogRecord(
        "provider_gateway.rpc", logging.WARNING, __file__, 1, "busy \ud83d", None, None
    )
    handler.emit(record)
    assert json.loads(stream.getvalue())["msg"] == "busy \ufffd"


def test_a_finish_carrying_a_usage_that_holds_a_half_is_sent() -> None:
    """With `usage_in_finish` the raw usage is first encoded in the finish: mended there too."""
    from provider_gateway import domain as d
    from provider_gateway.server.convert import StreamMessages

    messages = StreamMessages(pb.StreamOptions(usage_in_finish=True))
    usage = d.Usage(3, 2, raw={"note": "half \ud83d"})
    assert messages.to_proto(d.UsageEvent(usage)) is None
    finish = messages.to_proto(
        d.Finish(d.FinishReason.STOP, "stop", "p", "m\ud83d", d.Timing(1, 2, 3, 4), ())
    )
    assert finish is not None
    assert finish.finish.model == "m\ufffd"
    assert finish.finish.usage.raw["note"] == "half \ufffd"
