"""The Python client as an SDK: typed errors, typed results, the stream helper and configuration
from the environment, against a real server (grpc_testing only where the wire must be exact)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import grpc_testing
import pytest
from conftest import run_gateway
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from rpc_util import wait_for
from test_tls import issue, make_ca, tls_config, write_server_files

from provider_gateway.domain import FinishReason, ProviderFinish, ReasoningDelta, TextDelta
from provider_gateway.errors import ErrorKind
from provider_gateway.errors import GatewayError as ServerError
from provider_gateway.providers.mock import MockScript
from provider_gateway.server.auth import hash_key
from provider_gateway_client import (
    AuthenticationError,
    ChatResult,
    Embeddings,
    GatewayClient,
    GatewayError,
    InvalidRequestError,
    ModelInfo,
    NotFoundError,
    PermissionDeniedError,
    Providers,
    RateLimitError,
    SyncGatewayClient,
    Text,
    TokenCount,
    ToolCall,
    ToolCallFinished,
    pb,
)
from provider_gateway_client.results import Accumulator

WEATHER = pb.Tool(name="get_weather")
KEY = "sdk-key-0123456789abcdefghijklmnopqrstu"
AUTH = f"""
[auth]
[[auth.keys]]
name = "echo-only"
sha256 = "{hash_key(KEY)}"
models = ["mock/echo"]
"""
ENV_NAMES = ("TARGET", "API_KEY", "API_KEY_FILE", "TLS", "CA_FILE", "CERT_FILE", "KEY_FILE")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(f"PROVIDER_GATEWAY_{name}", raising=False)


# --- typed errors --------------------------------------------------------------------------------


async def test_unknown_model_is_not_found_on_unary_calls_and_streams(gateway) -> None:
    async with GatewayClient(gateway.target) as client:
        with pytest.raises(NotFoundError) as unary:
            await client.chat("mock/no-such-model", "Hi")
        with pytest.raises(NotFoundError) as streamed:
            async with client.chat_stream("mock/no-such-model", "Hi") as stream:
                await stream.final()
    for error in (unary.value, streamed.value):
        assert error.code == grpc.StatusCode.NOT_FOUND
        assert "no-such-model" in error.details
        assert error.retry_after is None
        assert isinstance(error.__cause__, grpc.RpcError)  # the original, for whoever needs it


async def test_a_request_without_messages_is_an_invalid_request(gateway) -> None:
    async with GatewayClient(gateway.target) as client:
        with pytest.raises(InvalidRequestError) as info:
            await client.chat("mock/echo", [])
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_keys_missing_or_not_allowed_are_authentication_and_permission_errors(gateway_factory) -> None:
    async with gateway_factory(AUTH) as gw:
        async with GatewayClient(gw.target) as anonymous:
            with pytest.raises(AuthenticationError):
                await anonymous.chat("mock/echo", "Hi")
        async with GatewayClient(gw.target, api_key=KEY) as keyed:
            assert (await keyed.chat("mock/echo", "Hi")).text.startswith("Mock answer: Hi")
            with pytest.raises(PermissionDeniedError):
                await keyed.chat("mock/reasoner", "Hi")


async def test_an_error_after_output_is_typed_and_the_output_kept(gateway) -> None:
    denied = ServerError(ErrorKind.PERMISSION_DENIED, "key lacks access", provider="mock")
    gateway.provider("mock").push(
        MockScript(events=[TextDelta("a"), TextDelta("b")], error=denied, error_after=2)
    )
    seen: list[str] = []

    async def read(client: GatewayClient) -> None:
        async for text in client.stream_text("mock/echo", "Hi"):
            seen.append(text)

    async with GatewayClient(gateway.target) as client:
        with pytest.raises(PermissionDeniedError, match="key lacks access"):
            await read(client)
    assert "".join(seen) == "ab"


def test_retry_after_is_read_from_retry_info_in_the_status_details() -> None:
    service = pb.DESCRIPTOR.services_by_name["ProviderService"]
    channel = grpc_testing.channel([service], grpc_testing.strict_real_time())
    delay = duration_pb2.Duration(seconds=3, nanos=250_000_000)
    status = status_pb2.Status(code=8, message="slow down")
    status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    client = SyncGatewayClient(channel=channel, max_retries=0)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(client.chat, "m", "Hi")
        _, _, rpc = channel.take_unary_unary(service.methods_by_name["Chat"])
        trailers = (("grpc-status-details-bin", status.SerializeToString()),)  # no retry-after-ms
        rpc.terminate(None, trailers, grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down")
        with pytest.raises(RateLimitError) as info:
            future.result(timeout=10)
    assert info.value.retry_after == 3.25
    assert isinstance(info.value, GatewayError)


# --- typed results and the stream helper ---------------------------------------------------------


async def test_chat_returns_a_typed_result_with_the_protobuf_beside_it(gateway) -> None:
    async with GatewayClient(gateway.target) as client:
        thought = await client.chat("mock/reasoner", "Why", max_tokens=3)
        tools = await client.chat("mock/tools", "Paris?", tools=[WEATHER])
    assert isinstance(thought, ChatResult)
    assert thought.text == "Mock answer: Why"
    assert thought.reasoning.startswith("Thinking")
    assert thought.usage is not None
    assert (thought.usage.output_tokens, thought.usage.reasoning_tokens) == (9, 6)
    assert thought.finish is not None
    assert (thought.finish.reason, thought.finish.provider, thought.finish.model) == (
        "length",
        "mock",
        "reasoner",
    )
    assert thought.finish.attempts == (("mock", "reasoner", "ok"),)
    assert thought.finish.response_id
    assert isinstance(thought.raw, pb.ChatResponse)
    assert thought.raw.text == thought.text
    (call,) = tools.tool_calls
    assert call == ToolCall(
        "call_mock_0", "get_weather", {"city": "Paris", "unit": "celsius"}, call.arguments_json
    )
    assert not call.incomplete


async def test_stream_final_gives_what_the_unary_call_gives(gateway) -> None:
    async with GatewayClient(gateway.target) as client:
        unary = await client.chat("mock/tools", "Paris?", tools=[WEATHER])
        async with client.chat_stream("mock/tools", "Paris?", tools=[WEATHER]) as stream:
            texts = [text async for text in stream.text_stream]
            final = await stream.get_final_message()
        reasoned = await client.chat_stream("mock/reasoner", "Why", max_tokens=3).final()
    assert "".join(texts) == final.text == unary.text
    assert final.tool_calls == unary.tool_calls
    assert final.usage == unary.usage
    assert final.finish is not None
    assert unary.finish is not None
    assert (final.finish.reason, final.finish.attempts) == (unary.finish.reason, unary.finish.attempts)
    assert final.raw is None  # built from events, not from one protobuf answer
    assert reasoned.reasoning.startswith("Thinking")
    assert reasoned.text == "Mock answer: Why"


async def test_sync_stream_block_and_leaving_it_early_cancels(gateway_factory) -> None:
    async with gateway_factory("[providers.mock.models.dribble]\ntokens = 200\ntoken_delay_ms = 100\n") as gw:

        def use() -> tuple[str, str]:
            with SyncGatewayClient(gw.target) as client:
                with client.chat_stream("mock/echo", "Hi", max_tokens=3) as stream:
                    whole = stream.final().text
                with client.chat_stream("mock/dribble", "Hi") as stream:
                    first = next(iter(stream.text_stream))
            return whole, first

        whole, first = await asyncio.to_thread(use)
        assert whole == "Mock answer: Hi"
        assert first.startswith("Mock")
        await wait_for(gw.provider("mock").stats.cancelled_event)
        assert gw.provider("mock").stats.completed == 1  # the echo; the dribble was cut off


def test_cut_tool_calls_have_no_arguments_to_run() -> None:
    accumulator = Accumulator()
    accumulator.add(ToolCallFinished(0, "c1", "f", '{"city": "Par', incomplete=True))
    accumulator.add(ToolCallFinished(1, "c2", "g", "[1, 2]"))  # JSON, but not an object
    accumulator.add(Text("x"))
    cut, odd = accumulator.result().tool_calls
    assert (cut.arguments, cut.arguments_json, cut.incomplete) == ({}, '{"city": "Par', True)
    assert (odd.arguments, odd.incomplete) == ({}, True)


async def test_result_message_and_tool_result_make_the_next_turn(gateway) -> None:
    from provider_gateway_client import message, tool_result

    async with GatewayClient(gateway.target) as client:
        conversation = [message("user", "Paris?")]
        answer = await client.chat("mock/tools", conversation, tools=[WEATHER])
        conversation += [answer.message(), tool_result(answer.tool_calls[0], '{"celsius": 18}')]
        follow_up = await client.chat("mock/tools", conversation, tools=[WEATHER])
    turn = conversation[1]
    assert turn.role == pb.ROLE_ASSISTANT
    assert [p.tool_call.name for p in turn.content if p.HasField("tool_call")] == ["get_weather"]
    assert conversation[2].content[0].tool_result.tool_call_id == "call_mock_0"
    assert follow_up.finish is not None


# --- configuration from the environment ----------------------------------------------------------


async def test_target_and_api_key_from_the_environment_and_arguments_win(
    gateway_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with gateway_factory(AUTH) as gw:
        monkeypatch.setenv("PROVIDER_GATEWAY_TARGET", gw.target)
        monkeypatch.setenv("PROVIDER_GATEWAY_API_KEY", KEY)
        async with GatewayClient() as client:
            assert (await client.chat("mock/echo", "from env")).text.startswith("Mock answer: from env")
        async with GatewayClient(api_key="wrong-key-0123456789abcdefghijklmnopq") as client:
            with pytest.raises(AuthenticationError):
                await client.chat("mock/echo", "Hi")
        monkeypatch.setenv("PROVIDER_GATEWAY_TARGET", "127.0.0.1:1")  # nothing listens there
        async with GatewayClient(gw.target) as client:
            assert await client.health() == "SERVING"


async def test_api_key_from_a_file_named_in_the_environment(
    gateway_factory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "key").write_text(KEY + "\n")  # a mounted secret, newline and all
    (tmp_path / "empty").write_text("")
    async with gateway_factory(AUTH) as gw:
        monkeypatch.setenv("PROVIDER_GATEWAY_API_KEY_FILE", str(tmp_path / "key"))
        async with GatewayClient(gw.target) as client:
            assert (await client.chat("mock/echo", "from a file")).text.startswith("Mock answer: from a file")
        monkeypatch.setenv("PROVIDER_GATEWAY_API_KEY_FILE", str(tmp_path / "empty"))
        with pytest.raises(ValueError, match=r"API key file .*empty"):
            GatewayClient(gw.target)


async def test_tls_and_mutual_tls_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server_ca, client_ca = make_ca("server-ca"), make_ca("client-ca")
    pki = {"server": issue(server_ca, "gateway", server=True), "client_ca": client_ca[0]}
    client = issue(client_ca, "sdk", server=False)
    files = {"ca": tmp_path / "ca.crt", "cert": tmp_path / "client.crt", "key": tmp_path / "client.key"}
    files["ca"].write_bytes(server_ca[0].cert)
    files["cert"].write_bytes(client.cert)
    files["key"].write_bytes(client.key)
    paths = write_server_files(tmp_path, pki)
    async with run_gateway(tls_config(paths, require_client_cert=True)) as gw:
        monkeypatch.setenv("PROVIDER_GATEWAY_TARGET", gw.target)
        monkeypatch.setenv("PROVIDER_GATEWAY_CA_FILE", str(files["ca"]))  # implies TLS
        async with GatewayClient(max_retries=0, timeout=10) as no_certificate:
            with pytest.raises(GatewayError):
                await no_certificate.chat("mock/echo", "Hi")
        monkeypatch.setenv("PROVIDER_GATEWAY_CERT_FILE", str(files["cert"]))
        monkeypatch.setenv("PROVIDER_GATEWAY_KEY_FILE", str(files["key"]))
        async with GatewayClient(timeout=10) as mutual:
            assert (await mutual.chat("mock/echo", "over mTLS")).text.startswith("Mock answer: over mTLS")
        async with GatewayClient(tls=False, max_retries=0, timeout=10) as plaintext:
            with pytest.raises(GatewayError):
                await plaintext.chat("mock/echo", "Hi")


# --- typed catalogue results ---------------------------------------------------------------------


async def test_catalogue_calls_return_typed_results_with_the_protobuf_beside_them(gateway_factory) -> None:
    async with (
        gateway_factory('[providers.mock]\nkind = "mock"\n[aliases]\nquick = "mock/echo"\n') as gw,
        GatewayClient(gw.target) as client,
    ):
        models = await client.list_models("mock")
        listed = await client.list_providers()
        count = await client.count_tokens("mock/echo", "12345678")
        embedded = await client.embed("mock/embed", ["first", "second"], dimensions=4)
    echo = next(m for m in models if m.id == "echo")
    assert isinstance(echo, ModelInfo)
    assert (echo.name, echo.aliases, echo.context_window, echo.tools) == (
        "mock/echo",
        ("quick",),
        128_000,
        True,
    )
    assert isinstance(echo.raw, pb.ModelInfo)
    assert next(m for m in models if m.id == "embed").embeddings
    assert isinstance(listed, Providers)
    (mock,) = listed.providers
    assert (listed.default_provider, mock.name, mock.kind, mock.health) == ("mock", "mock", "mock", "serving")
    assert mock.capabilities.streaming
    assert isinstance(mock.raw, pb.ProviderInfo)
    assert isinstance(listed.raw, pb.ListProvidersResponse)
    assert count == TokenCount(2, count.estimated, "mock", "echo")
    assert isinstance(count.raw, pb.CountTokensResponse)
    assert isinstance(embedded, Embeddings)
    assert [e.index for e in embedded.embeddings] == [0, 1]
    assert [len(v) for v in embedded.vectors] == [4, 4]
    assert embedded.vectors[0] != embedded.vectors[1]  # each input its own vector, in input order
    assert embedded.usage is not None
    assert embedded.usage.input_tokens > 0
    assert embedded.raw is not None
    assert list(embedded.raw.embeddings[1].values) == list(embedded.vectors[1])


async def test_sync_catalogue_calls_are_typed_too(gateway) -> None:
    def use() -> None:
        with SyncGatewayClient(gateway.target) as client:
            assert {m.name for m in client.list_models()} >= {"mock/echo", "mock/reasoner"}
            assert client.list_providers().providers[0].health == "serving"
            assert client.count_tokens("mock/echo", "abcd").input_tokens == 1
            assert len(client.embed("mock/embed", ["a"]).vectors[0]) == 16

    await asyncio.to_thread(use)


# --- reasoning blocks ----------------------------------------------------------------------------

# A signed block, a redacted one (encrypted data only) and one closed by an item id, then text.
REASONING_BLOCKS = (
    ReasoningDelta("First "),
    ReasoningDelta("thought", signature="sig-1"),
    ReasoningDelta("", signature="ENCRYPTED", redacted=True),
    ReasoningDelta("summary", id="rs_1"),
    TextDelta("answer"),
    ProviderFinish(FinishReason.STOP),
)


def push_reasoning_blocks(gateway, times: int) -> None:
    """The mock's next `times` answers are REASONING_BLOCKS (a unary and a streamed one, say)."""
    for _ in range(times):
        gateway.provider("mock").push(MockScript(events=REASONING_BLOCKS))


async def test_a_streams_reasoning_blocks_keep_signature_redacted_and_id_as_the_unary_answer(gateway) -> None:
    """Each block's opaque state must reach the next turn unchanged, whether the answer was streamed
    or not: a signed block, a redacted one (encrypted data only) and one closed by an item id."""
    push_reasoning_blocks(gateway, times=2)
    async with GatewayClient(gateway.target) as client:
        unary = await client.chat("mock/echo", "Hi")
        streamed = await client.chat_stream("mock/echo", "Hi").final()
    expected = [
        ("First thought", "sig-1", False, ""),
        ("", "ENCRYPTED", True, ""),
        ("summary", "", False, "rs_1"),
    ]
    assert [(p.text, p.signature, p.redacted, p.id) for p in unary.reasoning_parts] == expected
    assert list(streamed.reasoning_parts) == list(unary.reasoning_parts)
    assert streamed.reasoning == unary.reasoning == "First thoughtsummary"
    assert streamed.message() == unary.message()  # the next turn is the same either way


async def test_a_client_key_without_its_certificate_is_refused_not_ignored(
    gateway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """A key file alone (argument or PROVIDER_GATEWAY_KEY_FILE) connected in plaintext, as if it had
    not been given: mutual TLS was asked for and silently not done."""
    for name in ("TLS", "CA_FILE", "CERT_FILE", "KEY_FILE"):
        monkeypatch.delenv(f"PROVIDER_GATEWAY_{name}", raising=False)
    (tmp_path / "client.key").write_text("a key\n")
    with pytest.raises(ValueError, match="both a client certificate file and its key file"):
        GatewayClient(gateway.target, key_file=str(tmp_path / "client.key"))
    monkeypatch.setenv("PROVIDER_GATEWAY_KEY_FILE", str(tmp_path / "client.key"))
    with pytest.raises(ValueError, match="both a client certificate file and its key file"):
        SyncGatewayClient(gateway.target)
