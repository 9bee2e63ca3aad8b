"""Bytes that do not decode as the method's request get INVALID_ARGUMENT, one access-log line and no
traceback, on every method of every service the server hosts."""

from __future__ import annotations

import logging

import grpc
import pytest
from rpc_util import rpc_error

from provider_gateway.v1 import provider_service_pb2 as pb


def varint(n: int) -> bytes:
    out = b""
    while True:
        low, n = n & 0x7F, n >> 7
        if not n:
            return out + bytes([low])
        out += bytes([low | 0x80])


def nested_provider_options(levels: int, field: int = 13) -> bytes:
    """A request whose provider_options Struct (field 13 of ChatRequest, 9 of CompleteRequest)
    nests `levels` times: each level is three messages deep (Value, Struct, map entry)."""
    value = b""
    for _ in range(levels):
        entry = b"\x0a\x01a" + b"\x12" + varint(len(value)) + value  # fields {"a": value}
        struct = b"\x0a" + varint(len(entry)) + entry
        value = b"\x2a" + varint(len(struct)) + struct  # Value.struct_value
    entry = b"\x0a\x01a" + b"\x12" + varint(len(value)) + value
    options = b"\x0a" + varint(len(entry)) + entry
    return b"\x0a\x09mock/echo" + bytes([field << 3 | 2]) + varint(len(options)) + options


SERVICE = "/provider_gateway.v1.ProviderService/"
UNARY = ["Chat", "Complete", "ListModels", "CountTokens", "Embed", "ListProviders"]
STREAMS = ["ChatStream", "CompleteStream"]
ALL = UNARY + STREAMS
TYPES = {
    "Chat": pb.ChatRequest,
    "ChatStream": pb.ChatRequest,
    "Complete": pb.CompleteRequest,
    "CompleteStream": pb.CompleteRequest,
    "ListModels": pb.ListModelsRequest,
    "CountTokens": pb.CountTokensRequest,
    "Embed": pb.EmbedRequest,
    "ListProviders": pb.ListProvidersRequest,
}
TOO_DEEP = {"Chat": 13, "ChatStream": 13, "Complete": 9, "CompleteStream": 9}
# kind -> (methods, bytes for a method)
BAD_BYTES = {
    "bad-utf8": ([m for m in ALL if m != "ListProviders"], lambda m: b"\x0a\x02\xff\xfe"),
    "truncated": (ALL, lambda m: b"\x0a\x05ab"),  # a length of 5, then two bytes
    "corrupt-tag": (ALL, lambda m: b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"),
    "too-deep": (list(TOO_DEEP), lambda m: nested_provider_options(40, TOO_DEEP[m])),
}


def test_the_bytes_are_really_undecodable() -> None:
    for methods, data in BAD_BYTES.values():
        for method in methods:
            with pytest.raises(Exception, match="Error parsing message"):
                TYPES[method].FromString(data(method))
    pb.ChatRequest.FromString(nested_provider_options(30))  # 90 levels: the builder itself is sound


@pytest.mark.parametrize("kind", list(BAD_BYTES))
async def test_undecodable_requests_get_invalid_argument_and_one_log_line(
    gateway, kind: str, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    methods, data = BAD_BYTES[kind]
    channel = gateway.channel
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    for method in methods:
        call_kind = channel.unary_stream if method in STREAMS else channel.unary_unary
        call = call_kind(SERVICE + method)(data(method), timeout=10)
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, error.details())
        details = error.details() or ""
        assert "does not decode" in details
        if kind == "too-deep":  # protobuf's own words name neither the field nor what to do
            assert "a Struct field (provider_options, a tool's parameters" in details
            assert "at most 33 nested JSON objects (or 48 nested lists), so flatten it" in details
    if kind != "too-deep":  # the health request has no nested field
        health = channel.unary_unary("/grpc.health.v1.Health/Check")(data("Check"), timeout=10)
        assert (await rpc_error(health)).code() == grpc.StatusCode.INVALID_ARGUMENT
    access = [r for r in caplog.records if r.name == "provider_gateway.access"]
    assert len(access) == len(methods)  # one line per call
    assert all("INVALID_ARGUMENT" in r.getMessage() for r in access)
    others = [
        r for r in caplog.records if r.name != "provider_gateway.access" and r.levelno >= logging.WARNING
    ]
    assert others == [], [r.getMessage() for r in others]
    assert not any(r.exc_info for r in caplog.records)
    # The server is still serving.
    assert (await gateway.stub.ListProviders(pb.ListProvidersRequest(), timeout=10)).providers
