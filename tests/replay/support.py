"""What the replay tests share: the corpus files, byte-exact serving from a fake upstream, and one
comparable view of an answer, built from the gateway's gRPC result or from an official SDK's.

A view holds what a user of either would notice: the text, the reasoning blocks with their opaque
signatures, the tool calls (id, name, parsed arguments), content without a typed event (RawContent:
the vendor's type and JSON), the normalised usage and the vendor's own usage object, and the finish.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import jiter
import pytest
from conftest import ADAPTER_ROUTING, run_gateway, use_fake_aws_credentials
from google.protobuf import json_format, struct_pb2

from provider_gateway.fakes.server import FakeUpstream, Reply
from provider_gateway.v1 import provider_service_pb2 as pb

CORPUS = Path(__file__).parent
# Bodies are written in pieces of this many bytes, so events (and UTF-8 characters) straddle reads
# as they do on a real connection.
PIECE = 37


KEY = "replay-key"


# Where a Vertex provider of `vertex_gateway` serves a publisher's model.
VERTEX_MODELS = "/v1/projects/replay-project/locations/us-east5/publishers/{publisher}/models/{model}"


@asynccontextmanager
async def replay_gateway(
    kind: str, base_path: str = "", *, key_option: str = "api_key_env", extra: str = ""
) -> AsyncIterator[tuple[FakeUpstream, Any]]:
    """A fake upstream and a gateway whose provider `kind` (named after its kind) points at it
    (at `base_path` on it), its credential in the environment variable `key_option` names."""
    key_env = f"PG_TEST_REPLAY_{kind.upper()}_KEY"
    os.environ[key_env] = KEY  # read when the provider is built, at start
    try:
        async with FakeUpstream() as fake:
            config = f"""
[providers.{kind}]
kind = "{kind}"
base_url = "{fake.url}{base_path}"
{key_option} = "{key_env}"
{extra}
{ADAPTER_ROUTING}"""
            async with run_gateway(config) as gateway:
                yield fake, gateway.stub
    finally:
        os.environ.pop(key_env, None)


@asynccontextmanager
async def bedrock_gateway(region: str) -> AsyncIterator[tuple[FakeUpstream, Any]]:
    """A fake upstream and a gateway whose `bedrock` provider (in `region`, on fake AWS
    credentials) points at it: Converse and InvokeModel alike."""
    with pytest.MonkeyPatch.context() as patch:
        use_fake_aws_credentials(patch)
        async with FakeUpstream() as fake:
            config = f"""
[providers.bedrock]
kind = "bedrock"
region = "{region}"
endpoint_url = "{fake.url}"
{ADAPTER_ROUTING}"""
            async with run_gateway(config) as gateway:
                yield fake, gateway.stub


def vertex_gateway() -> Any:
    """`replay_gateway` for Vertex AI: Gemini and Claude at `VERTEX_MODELS` paths."""
    extra = 'project = "replay-project"\nlocation = "us-east5"'
    return replay_gateway("vertex", key_option="access_token_env", extra=extra)


def recordings(vendor: str, *suffixes: str) -> list[Path]:
    return sorted(p for p in (CORPUS / vendor).iterdir() if p.suffix in suffixes)


def cases(vendor: str, suffix: str, *, errors: bool = False) -> list[Any]:
    """Each of `vendor`'s recordings with `suffix` as a test parameter; the `name.<http status>.json`
    ones (error bodies) apart."""
    return [
        pytest.param(p, id=p.stem) for p in recordings(vendor, suffix) if (len(p.suffixes) == 2) == errors
    ]


def pieces(body: bytes, size: int = PIECE) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def recorded_headers(path: Path) -> dict[str, str]:
    """The response headers recorded beside an error body: `name.<status>.headers` next to
    `name.<status>.json`, one `Name: value` a line (none when there is no such file)."""
    beside = path.with_suffix(".headers")
    if not beside.exists():
        return {}
    lines = [line.split(":", 1) for line in beside.read_text().splitlines() if line.strip()]
    return {name.strip().lower(): value.strip() for name, value in lines}


def replay(path: Path, content_type: str, status: int = 200) -> Reply:
    """The recording exactly as recorded, written piece by piece, with its recorded headers (a
    recorded `content-type` wins over `content_type`)."""
    headers = recorded_headers(path)
    content_type = headers.pop("content-type", content_type)
    return Reply(status=status, headers=headers, chunks=pieces(path.read_bytes()), content_type=content_type)


# The codes a client may retry (docs/configuration.md, [routing]).
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
}


# The longest a client waits to retry by itself (docs/clients.md: "over a minute is the caller's
# decision").
CLIENT_MAX_WAIT_S = 60.0


def client_retries(error: grpc.aio.AioRpcError) -> bool:
    """Whether the gateway's answer lets a client retry by itself: a retryable code, no gRFC A6
    `grpc-retry-pushback-ms: -1`, and a retry delay (if any) a client waits."""
    pushback = dict(error.trailing_metadata() or ()).get("grpc-retry-pushback-ms") == "-1"
    delay = retry_after_s(error)
    return error.code() in RETRYABLE and not pushback and (delay is None or delay <= CLIENT_MAX_WAIT_S)


def retry_after_s(error: grpc.aio.AioRpcError) -> float | None:
    """The retry delay the gateway gives a client in seconds (its `retry-after-ms` trailer)."""
    said = dict(error.trailing_metadata() or ()).get("retry-after-ms")
    return None if said is None else int(said) / 1000


def plain(value: Any) -> Any:
    """JSON as Python compares it: Struct numbers come back as floats, so whole ones become ints."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def struct_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    return plain(json_format.MessageToDict(struct))  # type: ignore[no-any-return]


@dataclass
class Reasoning:
    text: str
    signature: str = ""
    redacted: bool = False


# A token's (text, log-probability, UTF-8 bytes or None, its top alternatives as the same tuples).
Logprob = tuple[str, float, bytes | None, tuple[Any, ...]]


def logprob(entry: pb.TokenLogprob) -> Logprob:
    return (
        entry.token,
        entry.logprob,
        entry.bytes if entry.HasField("bytes") else None,
        tuple(logprob(top) for top in entry.top_logprobs),
    )


@dataclass
class View:
    text: str = ""
    reasoning: list[Reasoning] = field(default_factory=list)
    tool_calls: list[tuple[str, str, Any]] = field(default_factory=list)  # id, name, arguments
    raw_content: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    usage_raw: dict[str, Any] = field(default_factory=dict)
    finish_reason: int = pb.FINISH_REASON_UNSPECIFIED
    raw_finish_reason: str = ""
    # With `ask(..., top_logprobs=n)`: each scored token as (token, logprob, bytes, top alternatives).
    logprobs: list[Logprob] = field(default_factory=list)


def usage_figures(usage: pb.Usage) -> dict[str, int]:
    return {
        "input": usage.input_tokens,
        "output": usage.output_tokens,
        "cache_read": usage.cache_read_tokens,
        "cache_write": usage.cache_write_tokens,
        "reasoning": usage.reasoning_tokens,
        "total": usage.total_tokens,
    }


def figures(
    *, input: int, output: int, cache_read: int = 0, cache_write: int = 0, reasoning: int = 0
) -> dict[str, int]:
    """The gateway's normalised usage (proto `Usage`) from the SDK's figures."""
    return {
        "input": input,
        "output": output,
        "cache_read": cache_read,
        "cache_write": cache_write,
        "reasoning": reasoning,
        "total": input + output,
    }


@dataclass(frozen=True)
class Incomplete:
    """Arguments the upstream cut (`ToolCall.incomplete`): the gateway passes on the text that
    arrived, the SDKs parse what they can of it (jiter's partial mode, as the anthropic SDK does)."""

    parsed: Any


def partial(text: str) -> Incomplete:
    return Incomplete(jiter.from_json(text.encode(), partial_mode=True) if text else {})


def arguments(call: pb.ToolCall) -> Any:
    return partial(call.arguments_json) if call.incomplete else json.loads(call.arguments_json)


def stream_view(events: list[pb.StreamEvent]) -> View:
    """A ChatStream's events as a view; reasoning blocks end at a delta carrying their state."""
    view = View()
    block = ""
    for event in events:
        kind = event.WhichOneof("event")
        if kind == "text_delta":
            view.text += event.text_delta.text
            view.logprobs += [logprob(entry) for entry in event.text_delta.logprobs]
        elif kind == "reasoning_delta":
            delta = event.reasoning_delta
            block += delta.text
            if delta.signature or delta.redacted:
                view.reasoning.append(Reasoning(block, delta.signature, delta.redacted))
                block = ""
        elif kind == "tool_call_end":
            call = event.tool_call_end.call
            view.tool_calls.append((call.id, call.name, arguments(call)))
        elif kind == "raw_content":
            view.raw_content.append((event.raw_content.type, struct_dict(event.raw_content.raw)))
        elif kind == "usage":
            view.usage = usage_figures(event.usage)
            view.usage_raw = struct_dict(event.usage.raw)
        elif kind == "finish":
            view.finish_reason = event.finish.reason
            view.raw_finish_reason = event.finish.raw_finish_reason
    if block:
        view.reasoning.append(Reasoning(block))
    return view


def unary_view(response: pb.ChatResponse) -> View:
    return View(
        text=response.text,
        reasoning=[Reasoning(r.text, r.signature, r.redacted) for r in response.reasoning_parts],
        tool_calls=[(c.id, c.name, arguments(c)) for c in response.tool_calls],
        raw_content=[(r.type, struct_dict(r.raw)) for r in response.raw_content],
        usage=usage_figures(response.usage),
        usage_raw=struct_dict(response.usage.raw),
        finish_reason=response.finish.reason,
        raw_finish_reason=response.finish.raw_finish_reason,
        logprobs=[logprob(entry) for entry in response.logprobs],
    )


async def gateway_stream(
    stub: Any, request: pb.ChatRequest | pb.CompleteRequest
) -> tuple[View, grpc.aio.AioRpcError | None]:
    """The gateway's stream of `request` (ChatStream, or CompleteStream for a CompleteRequest)."""
    call = stub.CompleteStream if isinstance(request, pb.CompleteRequest) else stub.ChatStream
    events: list[pb.StreamEvent] = []
    try:
        async for event in call(request, timeout=20):
            events.append(event)
    except grpc.aio.AioRpcError as error:
        return stream_view(events), error
    return stream_view(events), None


async def gateway_unary(stub: Any, request: pb.ChatRequest) -> View:
    return unary_view(await stub.Chat(request, timeout=20))


def ask(model: str, *, top_logprobs: int | None = None) -> pb.ChatRequest:
    """The request every replay sends; `top_logprobs` asks for token log-probabilities too."""
    request = pb.ChatRequest(
        model=model, messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="Go on.")])]
    )
    if top_logprobs is not None:
        request.logprobs.CopyFrom(pb.LogprobsOptions(enabled=True, top_logprobs=top_logprobs))
    return request
