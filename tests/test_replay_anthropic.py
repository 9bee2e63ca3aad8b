"""Recorded Anthropic Messages responses (tests/replay/anthropic) served byte for byte from a fake
upstream on 127.0.0.1, through the real gateway, compared with what the official `anthropic` SDK
makes of the same bytes: its MessageStream accumulation for streams, `messages.create` for whole
messages. Where the SDK and the gateway disagree, the gateway is wrong."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import grpc
import httpx
import pytest
from replay.support import (
    KEY,
    VERTEX_MODELS,
    Incomplete,
    Reasoning,
    View,
    ask,
    client_retries,
    figures,
    gateway_stream,
    gateway_unary,
    pieces,
    recorded_headers,
    recordings,
    replay,
    replay_gateway,
    retry_after_s,
    vertex_gateway,
)

from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.http.errors import OUT_OF_CREDIT_HOLD_S
from provider_gateway.v1 import provider_service_pb2 as pb

PATH = "/v1/messages"
VERTEX_CLAUDE = "claude-sonnet-4-5@20250929"

# The gateway's contract maps Anthropic's stop reasons to one enum (raw_finish_reason keeps the
# vendor's word); docs/vendor-providers.md. pause_turn, and compaction (a pause after compacting),
# are stops the client continues by sending the turn back, so STOP, not an error.
FINISH = {
    "end_turn": pb.FINISH_REASON_STOP,
    "stop_sequence": pb.FINISH_REASON_STOP,
    "pause_turn": pb.FINISH_REASON_STOP,
    "compaction": pb.FINISH_REASON_STOP,
    "max_tokens": pb.FINISH_REASON_LENGTH,
    "model_context_window_exceeded": pb.FINISH_REASON_LENGTH,
    "tool_use": pb.FINISH_REASON_TOOL_CALLS,
    "refusal": pb.FINISH_REASON_CONTENT_FILTER,
}
# How the gateway reports an HTTP error status (529 is Anthropic's overloaded).
STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.UNAVAILABLE,
    529: grpc.StatusCode.UNAVAILABLE,
}
# Anthropic's refusal of an account without credit: a 400 `invalid_request_error` in these words,
# an account out of credit as OpenAI's 429 `insufficient_quota` is (docs/configuration.md).
OUT_OF_CREDIT = "Your credit balance is too low to access the Anthropic API."
# How the gateway reports an `error` event by its type (docs/vendor-providers.md).
ERROR_CODES = {"overloaded_error": grpc.StatusCode.UNAVAILABLE, "api_error": grpc.StatusCode.UNAVAILABLE}


@pytest.fixture(scope="module")
async def upstreams() -> AsyncIterator[dict[str, tuple[FakeUpstream, Any]]]:
    """Anthropic's API, and Claude on Vertex AI (the same Messages bytes from streamRawPredict and
    rawPredict): each a fake and a gateway."""
    async with replay_gateway("anthropic") as direct, vertex_gateway() as vertex:
        yield {"anthropic": direct, "vertex": vertex}


# host -> (model the client asks for, the gateway's upstream path for a stream, for a whole answer)
HOSTS = {
    "anthropic": ("anthropic/claude-sonnet-4-5", PATH, PATH),
    "vertex": (
        f"vertex/{VERTEX_CLAUDE}",
        VERTEX_MODELS.format(publisher="anthropic", model=VERTEX_CLAUDE) + ":streamRawPredict",
        VERTEX_MODELS.format(publisher="anthropic", model=VERTEX_CLAUDE) + ":rawPredict",
    ),
}


def sdk_client(
    fake: FakeUpstream, host: str = "anthropic"
) -> anthropic.AsyncAnthropic | anthropic.AsyncAnthropicVertex:
    """The SDK's client of a host: on Vertex AI `AsyncAnthropicVertex`, which asks the model's
    `streamRawPredict` and `rawPredict` (the paths `HOSTS` names) as the gateway does."""
    if host == "vertex":
        return anthropic.AsyncAnthropicVertex(
            base_url=f"{fake.url}/v1",
            region="us-east5",
            project_id="replay-project",
            access_token=KEY,
            max_retries=0,
        )
    return anthropic.AsyncAnthropic(base_url=fake.url, api_key=KEY, max_retries=0)


# host -> (the model the SDK asks for, where it asks for a stream, for a whole message)
SDK_ASKS = {"anthropic": ("claude-sonnet-4-5", PATH, PATH), "vertex": (VERTEX_CLAUDE, *HOSTS["vertex"][1:])}


def sdk_view(message: Any) -> View:
    """The SDK's Message as the gateway's contract would carry it."""
    view = View(raw_finish_reason=message.stop_reason or "")
    view.finish_reason = FINISH.get(view.raw_finish_reason, pb.FINISH_REASON_UNSPECIFIED)
    last = len(message.content) - 1
    for index, block in enumerate(message.content):
        if block.type == "text":
            view.text += block.text
            view.raw_content += [(c.type, c.to_dict()) for c in block.citations or []]
        elif block.type == "thinking":
            view.reasoning.append(Reasoning(block.thinking, block.signature))
        elif block.type == "redacted_thinking":
            view.reasoning.append(Reasoning("", block.data, redacted=True))
        elif block.type == "tool_use" and index == last and message.stop_reason == "max_tokens":
            view.tool_calls.append((block.id, block.name, Incomplete(block.input)))  # cut mid-arguments
        elif block.type == "tool_use":
            view.tool_calls.append((block.id, block.name, block.input))
        else:  # server tools' calls and results: no typed event, passed on whole
            view.raw_content.append((block.type, block.to_dict()))
    # The message's own fields without a typed event, after its content: the code execution
    # tool's container (the next turn reuses it by id), a refusal's category and explanation,
    # the context edits applied (a beta), the stop sequence that ended it.
    for name in ("container", "stop_details", "context_management"):
        if (value := getattr(message, name, None)) is not None:
            view.raw_content.append((name, value.to_dict(mode="json")))  # expires_at as sent
    if message.stop_sequence:
        view.raw_content.append(("stop_sequence", {"stop_sequence": message.stop_sequence}))
    usage = message.usage
    # A compaction's own sampling is billed but "not included in the top-level usage fields"
    # (the SDK's BetaUsage.iterations): the gateway's figures add it.
    counted = [usage, *(i for i in getattr(usage, "iterations", None) or [] if i.type == "compaction")]
    cache_read = sum(u.cache_read_input_tokens or 0 for u in counted)
    cache_write = sum(u.cache_creation_input_tokens or 0 for u in counted)
    details = usage.to_dict().get("output_tokens_details") or {}
    view.usage = figures(
        input=sum(u.input_tokens for u in counted) + cache_read + cache_write,
        output=sum(u.output_tokens for u in counted),
        cache_read=cache_read,
        cache_write=cache_write,
        reasoning=details.get("thinking_tokens", 0),
    )
    view.usage_raw = usage.to_dict()
    return view


# Recordings of a beta's answers, by their name's prefix, and the beta: the SDK's beta Messages
# read them (its MessageStream accumulates an mcp_tool_use block's streamed input, and a
# compaction block's compaction_delta).
BETAS = {
    "mcp_": "mcp-client-2025-04-04",
    "compaction_": "compact-2026-01-12",
    "context_edits_": "context-management-2025-06-27",
}


def beta_of(path: Path) -> str | None:
    return next((beta for prefix, beta in BETAS.items() if path.name.startswith(prefix)), None)


def sdk_messages(fake: FakeUpstream, beta: str | None, host: str = "anthropic") -> tuple[Any, dict[str, Any]]:
    """The SDK's Messages resource for a recording, and the arguments its beta adds."""
    client = sdk_client(fake, host)
    return (client.beta.messages, {"betas": [beta]}) if beta else (client.messages, {})


async def sdk_stream(
    fake: FakeUpstream, beta: str | None = None, host: str = "anthropic"
) -> tuple[View, anthropic.APIStatusError | None]:
    messages, extra = sdk_messages(fake, beta, host)
    async with messages.stream(
        model=SDK_ASKS[host][0], max_tokens=1024, messages=[{"role": "user", "content": "Go on."}], **extra
    ) as stream:
        try:
            message = await stream.get_final_message()
        except anthropic.APIStatusError as error:
            return sdk_view(stream.current_message_snapshot), error
    return sdk_view(message), None


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("path", recordings("anthropic", ".sse"), ids=lambda p: p.stem)
async def test_stream_matches_sdk(upstreams: dict[str, Any], host: str, path: Path) -> None:
    if host == "vertex" and beta_of(path):
        pytest.skip("a beta's answers are compared on Anthropic's API")
    fake, stub = upstreams[host]
    model, stream_path, _ = HOSTS[host]
    fake.script(stream_path, replay(path, "text/event-stream"))
    fake.script(SDK_ASKS[host][1], replay(path, "text/event-stream"))
    ours, our_error = await gateway_stream(stub, ask(model))
    theirs, their_error = await sdk_stream(fake, beta_of(path), host)
    if their_error is None:
        assert our_error is None, our_error.details() if our_error else ""
        assert ours == theirs
        return
    # A stream that fails after some content: the same content before the error, then the
    # vendor's error type and message in a status chosen by that type (never a clean end).
    assert our_error is not None, "the stream ended cleanly where the SDK raised"
    body = their_error.body["error"]  # type: ignore[index]
    assert our_error.code() == ERROR_CODES[body["type"]]
    assert body["type"] in our_error.details()
    assert body["message"] in our_error.details()
    assert ours.text == theirs.text
    assert ours.tool_calls == theirs.tool_calls


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize(
    "path", [p for p in recordings("anthropic", ".json") if len(p.suffixes) == 1], ids=lambda p: p.stem
)
async def test_whole_message_matches_sdk(upstreams: dict[str, Any], host: str, path: Path) -> None:
    if host == "vertex" and beta_of(path):
        pytest.skip("a beta's answers are compared on Anthropic's API")
    fake, stub = upstreams[host]
    model, _, unary_path = HOSTS[host]
    fake.script(unary_path, replay(path, "application/json"))
    fake.script(SDK_ASKS[host][2], replay(path, "application/json"))
    ours = await gateway_unary(stub, ask(model))
    messages, extra = sdk_messages(fake, beta_of(path), host)
    message = await messages.create(
        model=SDK_ASKS[host][0], max_tokens=1024, messages=[{"role": "user", "content": "Go on."}], **extra
    )
    assert ours == sdk_view(message)


def error_cases() -> list[Any]:
    """`name.<http status>.json` error bodies, each on the hosts that send it: `vertex_` ones
    (Google's error format, which Vertex AI uses for its own quota) on Vertex only."""
    return [
        pytest.param(path, host, id=f"{path.stem}-{host}")
        for path in recordings("anthropic", ".json")
        if len(path.suffixes) == 2
        for host in HOSTS
        if host == "vertex" or not path.name.startswith("vertex_")
    ]


@pytest.mark.parametrize(("path", "host"), error_cases())
async def test_error_status_matches_sdk(host: str, path: Path) -> None:
    """An error body answered with its status, as the SDK reports it (status, the vendor's words,
    the delay it would wait). Each on a gateway of its own: a 429's delay holds the deployment."""
    async with replay_gateway("anthropic") if host == "anthropic" else vertex_gateway() as (fake, stub):
        await error_matches_sdk(fake, stub, host, path)


async def error_matches_sdk(fake: FakeUpstream, stub: Any, host: str, path: Path) -> None:
    model, stream_path, _ = HOSTS[host]
    status = int(path.suffixes[0].lstrip("."))
    fake.script(stream_path, replay(path, "application/json", status))
    fake.script(SDK_ASKS[host][1], replay(path, "application/json", status))
    ours, error = await gateway_stream(stub, ask(model))
    with pytest.raises(anthropic.APIStatusError) as raised:
        await sdk_stream(fake, host=host)
    body = raised.value.body
    # Vertex AI's streaming methods wrap their own google.rpc.Status in a one-element JSON array;
    # the SDK keeps the list as it came (its message quotes it whole).
    said = (body[0] if isinstance(body, list) else body)["error"]  # type: ignore[index]
    assert raised.value.status_code == status
    assert error is not None
    assert said["message"] in error.details()
    if path.name.startswith("vertex_"):  # Google's words, not the JSON (or array) around them
        after = (error.details() or "").split(said["message"], 1)[1]
        assert after in ("", *(f" [{d.get('reason')}]" for d in said.get("details") or []))
    if said["message"].startswith(OUT_OF_CREDIT):
        # Out of credit, the documented exception (docs/configuration.md, [routing]): not a bad
        # request but an account to top up; the gateway says so, fails over to any other
        # deployment, says do not retry this one, and holds it 5 minutes.
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "out of credit" in error.details()
        assert (client_retries(error), retry_after_s(error)) == (False, OUT_OF_CREDIT_HOLD_S)
        return
    assert error.code() == STATUS_CODES[status]
    # A byte limit (413 request_too_large) is not the context window: no such advice.
    assert ("context window" in error.details()) == ("prompt is too long" in said["message"])
    assert ours.text == ""
    client, headers = sdk_client(fake, host), httpx.Headers(recorded_headers(path))
    # Whether a retry may help: the SDK's rule (x-should-retry, then 408, 409, 429, 5xx; no wait
    # over 2 minutes) and the gateway's (a retryable code without a do-not-retry pushback, and a
    # client waits a minute at most: docs/configuration.md, docs/clients.md) agree.
    retried = client_retries(error)
    assert retried == client._should_retry(httpx.Response(status, headers=headers))
    # The delay the SDK would wait (retry-after-ms, then retry-after) is the client's too.
    asked = client._parse_retry_after_header(headers)
    if asked is not None:
        assert retry_after_s(error) == pytest.approx(asked)


# Stream endings. message_stop ends a message; its reason is the last message_delta's stop_reason,
# null included (the SDK's MessageStream keeps what each message_delta says). A message whose
# stop_reason is null says nothing of why it stopped: UNSPECIFIED, never a STOP Anthropic did not
# claim. A body that ends before message_stop is cut short: the SDK keeps the snapshot it has, the
# gateway reports UNAVAILABLE (never a clean end).

START = {"type": "message_start", "message": {
    "id": "msg_ends", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
    "content": [], "stop_reason": None, "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 1}}}  # fmt: skip
TEXT = [
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Half of it"}},
    {"type": "content_block_stop", "index": 0},
]


def message_delta(stop_reason: str | None) -> dict[str, Any]:
    return {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": 4}}  # fmt: skip


def events_reply(*events: dict[str, Any]) -> Reply:
    body = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
    return Reply(status=200, chunks=pieces(body.encode()), content_type="text/event-stream")


def script_both(upstreams: dict[str, Any], host: str, reply: Reply) -> tuple[FakeUpstream, Any, str]:
    """`reply` for the gateway (at the host's path) and for the SDK (at Anthropic's)."""
    fake, stub = upstreams[host]
    model, stream_path, _ = HOSTS[host]
    fake.script(stream_path, reply)
    fake.script(PATH, reply)
    return fake, stub, model


ENDS_WITHOUT_REASON = {
    "null-stop-reason": [START, *TEXT, message_delta(None), {"type": "message_stop"}],
    "no-message-delta": [START, *TEXT, {"type": "message_stop"}],
    "null-after-end-turn": [START, *TEXT, message_delta("end_turn"), message_delta(None), {"type": "message_stop"}],
}  # fmt: skip


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("case", ENDS_WITHOUT_REASON)
async def test_message_stop_without_a_stop_reason_is_no_claimed_stop(
    upstreams: dict[str, Any], host: str, case: str
) -> None:
    fake, stub, model = script_both(upstreams, host, events_reply(*ENDS_WITHOUT_REASON[case]))
    ours, error = await gateway_stream(stub, ask(model))
    theirs, _ = await sdk_stream(fake)
    assert error is None, error.details() if error else ""
    assert theirs.raw_finish_reason == ""  # the SDK's stop_reason is None
    assert ours == theirs
    assert (ours.finish_reason, ours.text) == (pb.FINISH_REASON_UNSPECIFIED, "Half of it")


@pytest.mark.parametrize("host", HOSTS)
async def test_a_whole_message_with_a_null_stop_reason_is_no_claimed_stop(
    upstreams: dict[str, Any], host: str
) -> None:
    message = {**START["message"], "content": [{"type": "text", "text": "Half of it"}]}
    fake, stub = upstreams[host]
    model, _, unary_path = HOSTS[host]
    reply = Reply.json(message)
    fake.script(unary_path, reply)
    fake.script(PATH, reply)
    ours = await gateway_unary(stub, ask(model))
    theirs = await sdk_client(fake).messages.create(
        model="claude-sonnet-4-5", max_tokens=1024, messages=[{"role": "user", "content": "Go on."}]
    )
    assert theirs.stop_reason is None
    assert ours == sdk_view(theirs)
    assert ours.finish_reason == pb.FINISH_REASON_UNSPECIFIED


@pytest.mark.parametrize("host", HOSTS)
async def test_a_body_ending_before_message_stop_is_cut_short(upstreams: dict[str, Any], host: str) -> None:
    """Even after a stop_reason: only message_stop ends a message."""
    reply = events_reply(START, *TEXT, message_delta("end_turn"))
    fake, stub, model = script_both(upstreams, host, reply)
    ours, error = await gateway_stream(stub, ask(model))
    theirs, _ = await sdk_stream(fake)
    assert theirs.text == "Half of it"  # the SDK keeps its snapshot
    assert error is not None, "a stream cut short ended cleanly"
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "before message_stop" in error.details()
    assert ours.text == theirs.text
