"""A JSON schema on a Claude model without native structured outputs (before 4.5) is emulated with a
forced tool, as Anthropic documents JSON output through tools: the tool's input comes back as the
client's text, streamed and unary, on Anthropic and on Claude on Vertex, and Finish says
`response_format` was emulated (issue 17.2). What the emulation cannot combine is refused."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anthropic
import grpc
import pydantic
import pytest
from conftest import RunningGateway, run_gateway
from google.protobuf import struct_pb2
from rpc_util import rpc_error
from vendor_cases import chat_error, chat_request, weather_tool

from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.fakes.anthropic import (
    FakeAnthropic,
    structured_answer,
    structured_frames,
    structured_message,
)
from provider_gateway.fakes.vendor_base import sse
from provider_gateway.fakes.vertex import FakeVertex
from provider_gateway.v1 import provider_service_pb2 as pb

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
}
EXPECTED = {"city": "Paris", "days": 1}  # the fakes' instance of SCHEMA
OLD_CLAUDE = "anthropic/claude-3-5-haiku-20241022"
OLD_CLAUDE_ON_VERTEX = "vertex/claude-3-5-haiku@20241022"


def schema_request(model: str, strict: bool = False, **fields: Any) -> pb.ChatRequest:
    struct = struct_pb2.Struct()
    struct.update(SCHEMA)
    fmt = pb.ResponseFormat(
        type=pb.ResponseFormat.TYPE_JSON_SCHEMA, schema_name="forecast", json_schema=struct, strict=strict
    )
    return chat_request(model, response_format=fmt, **fields)


@pytest.fixture(scope="module")
async def setup() -> AsyncIterator[tuple[RunningGateway, FakeAnthropic, FakeVertex]]:
    async with AsyncExitStack() as stack:
        anthropic = await stack.enter_async_context(FakeAnthropic())
        vertex = await stack.enter_async_context(FakeVertex())
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PG_FO_ANTHROPIC", anthropic.api_key)
            patch.setenv("PG_FO_VERTEX", vertex.vertex_token)
            config = f"""
[providers.anthropic]
base_url = "{anthropic.base_url}"
api_key_env = "PG_FO_ANTHROPIC"
[providers.vertex]
kind = "vertex"
project = "p"
location = "us-east5"
base_url = "{vertex.base_url}"
access_token_env = "PG_FO_VERTEX"
"""
            gateway = await stack.enter_async_context(run_gateway(config))
            yield gateway, anthropic, vertex
        assert anthropic.problems == []
        assert vertex.problems == []


def forced_tool_of(body: dict[str, Any]) -> dict[str, Any]:
    assert body["tool_choice"] == {"type": "tool", "name": "forecast", "disable_parallel_tool_use": True}
    assert "output_config" not in body  # this model has no native structured outputs
    (tool,) = body["tools"]
    assert tool["name"] == "forecast"
    return dict(tool["input_schema"])


@pytest.mark.parametrize("model", [OLD_CLAUDE, OLD_CLAUDE_ON_VERTEX])
async def test_stream_answers_the_forced_tools_input_as_text(setup: Any, model: str) -> None:
    gateway, anthropic, vertex = setup
    events = [e async for e in gateway.stub.ChatStream(schema_request(model), timeout=20)]
    kinds = {e.WhichOneof("event") for e in events}
    assert not kinds & {"tool_call_start", "tool_call_delta", "tool_call_end"}  # no call to run
    assert json.loads("".join(e.text_delta.text for e in events)) == EXPECTED
    finish = events[-1].finish
    assert (finish.reason, list(finish.emulated)) == (pb.FINISH_REASON_STOP, ["response_format"])
    fake = anthropic if model == OLD_CLAUDE else vertex
    assert forced_tool_of(fake.calls[-1].body) == SCHEMA


@pytest.mark.parametrize("model", ["claude-sonnet-4-20250514", "claude-opus-4-20250514"])
async def test_claude_4_before_4_5_is_emulated_by_its_dated_id(setup: Any, model: str) -> None:
    """Claude Sonnet 4 and Opus 4 (ids `claude-<family>-4-<date>`) have no structured outputs:
    the API refuses `output_config.format` from them, so the schema goes through the forced tool.
    The `4-` of those ids is followed by the date's digits, not by a minor version of 4.5+."""
    gateway, anthropic, _ = setup
    response = await gateway.stub.Chat(schema_request(f"anthropic/{model}"), timeout=20)
    assert json.loads(response.text) == EXPECTED
    assert list(response.finish.emulated) == ["response_format"]
    assert forced_tool_of(anthropic.calls[-1].body) == SCHEMA


@pytest.mark.parametrize("model", ["anthropic/claude-3-5-haiku-cut", "vertex/claude-3-5-haiku-cut"])
async def test_a_forced_tool_answer_cut_short_is_an_error(setup: Any, model: str) -> None:
    gateway, _, _ = setup
    error, seen = await chat_error(gateway.stub, schema_request(model))
    assert error.code() == grpc.StatusCode.UNAVAILABLE  # never a clean end of half a JSON document
    assert "".join(e.text_delta.text for e in seen) == json.dumps(EXPECTED)[:5]
    assert not any(e.HasField("finish") for e in seen)


@pytest.mark.parametrize("model", [OLD_CLAUDE, OLD_CLAUDE_ON_VERTEX])
async def test_unary_answers_the_forced_tools_input_as_text(setup: Any, model: str) -> None:
    gateway, anthropic, vertex = setup
    response = await gateway.stub.Chat(schema_request(model), timeout=20)
    assert json.loads(response.text) == EXPECTED
    assert list(response.tool_calls) == []
    assert list(response.finish.emulated) == ["response_format"]
    assert response.finish.reason == pb.FINISH_REASON_STOP
    fake = anthropic if model == OLD_CLAUDE else vertex
    sent = fake.calls[-1].body
    assert sent["stream"] is True  # read from the stream: see the max_tokens cut below
    assert forced_tool_of(sent) == SCHEMA


@pytest.mark.parametrize("model", ["anthropic/claude-sonnet-4-5", "vertex/claude-sonnet-4-5@20250929"])
async def test_native_structured_output_is_not_flagged(setup: Any, model: str) -> None:
    gateway, anthropic, vertex = setup
    response = await gateway.stub.Chat(schema_request(model, strict=True), timeout=20)
    assert json.loads(response.text) == EXPECTED
    assert list(response.finish.emulated) == []
    sent = (anthropic if model.startswith("anthropic/") else vertex).calls[-1].body
    assert sent["output_config"]["format"]["type"] == "json_schema"
    assert "tool_choice" not in sent


@pytest.mark.parametrize("model", [OLD_CLAUDE, OLD_CLAUDE_ON_VERTEX])
@pytest.mark.parametrize("rpc", ["Chat", "ChatStream"])
async def test_strict_is_refused_on_the_forced_tool(setup: Any, model: str, rpc: str) -> None:
    """A forced tool steers Claude but does not constrain it, and Anthropic documents strict tool
    use only for the models that have structured outputs: `strict` is refused, never dropped."""
    gateway, anthropic, vertex = setup
    fake = anthropic if model == OLD_CLAUDE else vertex
    before = len(fake.calls)
    request = schema_request(model, strict=True)
    if rpc == "Chat":
        error = await rpc_error(gateway.stub.Chat(request, timeout=20))
    else:
        error, _ = await chat_error(gateway.stub, request)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = error.details() or ""
    provider, name = model.split("/", 1)
    assert details.startswith(f"{provider}: response_format.strict: Anthropic model {name!r}"), details
    assert len(fake.calls) == before  # nothing was sent


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"tools": [weather_tool()]}, "tools"),
        ({"reasoning": pb.ReasoningOptions(enabled=True), "max_tokens": 4096}, "reasoning"),
    ],
)
async def test_what_the_forced_tool_cannot_combine_with_is_refused(
    setup: Any, fields: dict[str, Any], field: str
) -> None:
    gateway, anthropic, _ = setup
    before = len(anthropic.calls)
    error, _ = await chat_error(
        gateway.stub, schema_request("anthropic/claude-3-7-sonnet-20250219", **fields)
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = error.details() or ""
    assert f"{field}: Anthropic model 'claude-3-7-sonnet-20250219'" in details
    assert len(anthropic.calls) == before  # nothing was sent


def test_the_fakes_forced_tool_answer_reads_as_the_sdk_reads_it() -> None:
    """The Anthropic SDK (the oracle) reads the fake's answer to a forced tool as one tool_use
    block whose input is the schema's instance, unary and streamed, so what the gateway turns into
    text is what Claude sends."""
    forced = {
        "tool_choice": {"type": "tool", "name": "forecast"},
        "tools": [{"name": "forecast", "input_schema": SCHEMA}],
    }
    block = structured_answer(forced)
    assert block is not None
    message = anthropic.types.Message.model_validate(structured_message(block, "claude-3-5-haiku"))
    (tool_use,) = message.content
    assert tool_use.type == "tool_use"
    assert (tool_use.name, tool_use.input, message.stop_reason) == ("forecast", EXPECTED, "tool_use")
    events = pydantic.TypeAdapter(anthropic.types.RawMessageStreamEvent)
    parsed = [events.validate_json(frame.split("data: ", 1)[1]) for frame in structured_frames(block, "m")]
    pieces = [
        e.delta.partial_json
        for e in parsed
        if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
    ]
    assert json.loads("".join(pieces)) == EXPECTED


def two_forced_calls(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Claude's answer when it calls the forced tool twice in one turn (parallel tool use)."""
    name = body["tool_choice"]["name"]
    return [
        {"type": "tool_use", "id": f"toolu_{i}", "name": name, "input": {"city": city, "days": i + 1}}
        for i, city in enumerate(("Paris", "Lyon"))
    ]


def two_calls_stream(body: dict[str, Any]) -> Reply:
    blocks = two_forced_calls(body)
    start = {"id": "msg_2", "type": "message", "role": "assistant", "model": "m", "content": []}
    events = [
        sse({"type": "message_start", "message": {**start, "usage": {"input_tokens": 3}}}, "message_start")
    ]
    for index, block in enumerate(blocks):
        opened = {**block, "input": {}}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        events += [
            sse(
                {"type": "content_block_start", "index": index, "content_block": opened},
                "content_block_start",
            ),
            sse({"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta"),
            sse({"type": "content_block_stop", "index": index}, "content_block_stop"),
        ]
    stop = {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}
    events += [sse(stop, "message_delta"), sse({"type": "message_stop"}, "message_stop")]
    return Reply.sse(events, done=False)


def two_calls_message(body: dict[str, Any]) -> Reply:
    message = {"id": "msg_2", "type": "message", "role": "assistant", "model": "m", "stop_reason": "tool_use"}
    usage = {"input_tokens": 3, "output_tokens": 9}
    return Reply.json({**message, "content": two_forced_calls(body), "stop_sequence": None, "usage": usage})


@asynccontextmanager
async def scripted_claude(
    streamed: Callable[[dict[str, Any]], Reply], whole: Callable[[dict[str, Any]], Reply]
) -> AsyncIterator[tuple[RunningGateway, FakeUpstream]]:
    """A gateway whose `claude` (Claude API) and `vertex` (Claude on Vertex) providers reach one
    fake that answers `streamed(body)` to a stream request and `whole(body)` to a unary one."""
    async with FakeUpstream() as claude:
        claude.on("POST", "*", lambda r: streamed(r.json()) if r.json().get("stream") else whole(r.json()))
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PG_FO_SCRIPTED", "k")
            config = f"""
[providers.claude]
kind = "anthropic"
base_url = "{claude.url}"
api_key_env = "PG_FO_SCRIPTED"
[providers.vertex]
kind = "vertex"
project = "p"
location = "us-east5"
base_url = "{claude.url}"
access_token_env = "PG_FO_SCRIPTED"
"""
            async with run_gateway(config) as gateway:
                yield gateway, claude


@pytest.fixture(scope="module")
async def parallel_claude() -> AsyncIterator[tuple[RunningGateway, FakeUpstream]]:
    """A Claude that calls the forced tool twice when the request lets it (parallel tool use)."""
    async with scripted_claude(two_calls_stream, two_calls_message) as running:
        yield running


async def test_a_forced_tool_called_twice_still_answers_one_json_document(
    parallel_claude: tuple[RunningGateway, FakeUpstream],
) -> None:
    """Claude may call a forced tool more than once unless parallel tool use is disabled; the
    client asked for one JSON document and must get exactly one, streamed and unary."""
    gateway, claude = parallel_claude
    model = "claude/claude-3-5-haiku-20241022"
    events = [e async for e in gateway.stub.ChatStream(schema_request(model), timeout=20)]
    assert json.loads("".join(e.text_delta.text for e in events)) == {"city": "Paris", "days": 1}
    assert claude.last("/v1/messages").json()["tool_choice"]["disable_parallel_tool_use"] is True
    response = await gateway.stub.Chat(schema_request(model), timeout=20)
    assert json.loads(response.text) == {"city": "Paris", "days": 1}
    assert list(response.tool_calls) == []
    assert response.finish.reason == pb.FINISH_REASON_STOP


# Claude's forced-tool answer cut by max_tokens: the stream carries the input's JSON as generated
# (no content_block_stop, stop_reason max_tokens); a whole Message carries only the input object
# as far as Anthropic could parse it, which is valid JSON and says nothing of where the cut fell.
CUT_JSON = '{"city": "Paris", "da'


def cut_stream(body: dict[str, Any]) -> Reply:
    name = body["tool_choice"]["name"]
    start = {"id": "msg_3", "type": "message", "role": "assistant", "model": "m", "content": []}
    opened = {"type": "tool_use", "id": "toolu_3", "name": name, "input": {}}
    stop = {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 8}}
    events = [
        sse({"type": "message_start", "message": {**start, "usage": {"input_tokens": 3}}}, "message_start"),
        sse({"type": "content_block_start", "index": 0, "content_block": opened}, "content_block_start"),
    ]
    for piece in (CUT_JSON[:9], CUT_JSON[9:]):
        delta = {"type": "input_json_delta", "partial_json": piece}
        events.append(sse({"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta"))
    events += [sse(stop, "message_delta"), sse({"type": "message_stop"}, "message_stop")]
    return Reply.sse(events, done=False)


def cut_message(body: dict[str, Any]) -> Reply:
    block = {
        "type": "tool_use",
        "id": "toolu_3",
        "name": body["tool_choice"]["name"],
        "input": {"city": "Paris"},
    }
    message = {"id": "msg_3", "type": "message", "role": "assistant", "model": "m", "content": [block]}
    usage = {"input_tokens": 3, "output_tokens": 8}
    return Reply.json({**message, "stop_reason": "max_tokens", "stop_sequence": None, "usage": usage})


@pytest.fixture(scope="module")
async def cut_claude() -> AsyncIterator[RunningGateway]:
    """A Claude (on the Claude API and on Vertex) whose forced-tool answers max_tokens cuts."""
    async with scripted_claude(cut_stream, cut_message) as (gateway, _):
        yield gateway


@pytest.mark.parametrize("model", ["claude/claude-3-5-haiku-20241022", "vertex/claude-3-5-haiku@20241022"])
async def test_a_forced_tool_answer_cut_by_max_tokens_is_the_same_text_unary_and_streamed(
    cut_claude: RunningGateway, model: str
) -> None:
    """Both relay the JSON as Claude generated it, cut where it was cut, with finish LENGTH: a
    client can tell the document is incomplete, and Chat and ChatStream never disagree."""
    request = schema_request(model, max_tokens=8)
    events = [e async for e in cut_claude.stub.ChatStream(request, timeout=20)]
    response = await cut_claude.stub.Chat(request, timeout=20)
    assert "".join(e.text_delta.text for e in events) == CUT_JSON
    assert response.text == CUT_JSON
    for finish in (events[-1].finish, response.finish):
        assert (finish.reason, list(finish.emulated)) == (pb.FINISH_REASON_LENGTH, ["response_format"])
