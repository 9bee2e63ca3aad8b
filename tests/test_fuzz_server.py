"""Mutated serialized requests against the real server, in its own process: every answer is a
status a client can act on (never UNKNOWN, never an unexplained INTERNAL), and the server stays up.

Each example takes a valid request of one RPC, serialises it, and flips, cuts, inserts or replaces
bytes; the raw bytes go over a real channel, so the server's own decoding meets them. Bounded: a
fixed number of examples, derandomized, each call with a deadline.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from served import served

from provider_gateway.v1 import provider_service_pb2 as pb

SERVICE = "/provider_gateway.v1.ProviderService/"
USER = pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="Hello there")])
TOOL = pb.Tool(name="lookup", description="find")
TOOL.parameters.update({"type": "object", "properties": {"q": {"type": "string"}}})
SEEDS: dict[str, bytes] = {
    "Chat": pb.ChatRequest(
        model="mock/echo", messages=[USER], tools=[TOOL], max_tokens=5, temperature=0.5, stop=["x"]
    ).SerializeToString(),
    "ChatStream": pb.ChatRequest(
        model="mock/reasoner", messages=[USER], reasoning=pb.ReasoningOptions(enabled=True), max_tokens=5
    ).SerializeToString(),
    "Complete": pb.CompleteRequest(model="mock/echo", prompt="Once", max_tokens=3).SerializeToString(),
    "CompleteStream": pb.CompleteRequest(model="mock/echo", prompt="Once", top_p=0.5).SerializeToString(),
    "ListModels": pb.ListModelsRequest(provider="mock").SerializeToString(),
    "CountTokens": pb.CountTokensRequest(
        model="mock/echo", messages=[USER], tools=[TOOL]
    ).SerializeToString(),
    "Embed": pb.EmbedRequest(model="mock/embed", inputs=["a", "b"], dimensions=8).SerializeToString(),
    "ListProviders": pb.ListProvidersRequest().SerializeToString(),
}
STREAMING = {"ChatStream", "CompleteStream"}
# UNKNOWN is an unmapped failure and INTERNAL an unexpected one (a bug): neither is acceptable.
ACTIONABLE = set(grpc.StatusCode) - {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    method = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[method])
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["flip", "cut", "insert", "replace", "duplicate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if how == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "cut":
            del data[at:]
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif how == "replace" and data:
            data[at] = draw(st.integers(0, 255))
        elif how == "duplicate":
            data += data[at:]
    return method, bytes(data)


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[grpc.Channel]:
    with served(tmp_path_factory.mktemp("fuzz")) as target, grpc.insecure_channel(target) as open_channel:
        yield open_channel
        health = health_pb2_grpc.HealthStub(open_channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING  # still up after all of it


def call(channel: grpc.Channel, method: str, data: bytes) -> grpc.StatusCode:
    raw = {"request_serializer": None, "response_deserializer": None}  # bytes in, bytes out
    try:
        if method in STREAMING:
            for _ in channel.unary_stream(SERVICE + method, **raw)(data, timeout=10):
                pass
        else:
            channel.unary_unary(SERVICE + method, **raw)(data, timeout=10)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
        details: str = error.details() or ""  # type: ignore[attr-defined]
        assert code in ACTIONABLE, (method, code, details, data[:80])
        return code
    return grpc.StatusCode.OK


@FUZZ
@given(example=mutated())
def test_mutated_requests_get_an_actionable_status(channel: grpc.Channel, example: tuple[str, bytes]) -> None:
    method, data = example
    call(channel, method, data)


def test_unmutated_seeds_are_answered(channel: grpc.Channel) -> None:
    """The seeds are valid: the mutations start from requests the server answers."""
    for method, data in SEEDS.items():
        assert call(channel, method, data) is grpc.StatusCode.OK, method
