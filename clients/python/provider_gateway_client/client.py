"""Async (`GatewayClient`) and sync (`SyncGatewayClient`) clients, one gRPC channel each.

Every call takes `timeout=` (seconds; the gRPC deadline of that call) and falls back to the
client's default. Streams yield typed events (see `events.py`); leaving the loop early cancels
the call, and the gateway then stops the provider's work.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import grpc

from provider_gateway_client import health
from provider_gateway_client.events import Event, Text, typed_event
from provider_gateway_client.v1 import provider_service_pb2 as pb
from provider_gateway_client.v1 import provider_service_pb2_grpc as pb_grpc

ROLES = {"system": pb.ROLE_SYSTEM, "user": pb.ROLE_USER, "assistant": pb.ROLE_ASSISTANT, "tool": pb.ROLE_TOOL}
SERVICE = "provider_gateway.v1.ProviderService"
UNARY_METHODS = ("Chat", "Complete", "ListModels", "CountTokens", "Embed", "ListProviders")

# The default service config. Unary calls that found no healthy server (UNAVAILABLE) are retried a
# few times by the channel; streams never are, because a retried stream could repeat output.
# round_robin spreads calls over every address a DNS name resolves to (a headless Kubernetes service).
SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{"service": SERVICE, "method": m} for m in UNARY_METHODS],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)
CHANNEL_OPTIONS: tuple[tuple[str, str | int], ...] = (
    ("grpc.service_config", SERVICE_CONFIG),
    ("grpc.enable_retries", 1),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
)
DEFAULT_TIMEOUT_S = 60.0


def message(role: str, text: str) -> pb.Message:
    """A message with one text part: `message("user", "Hello")`."""
    return pb.Message(role=ROLES[role], content=[pb.ContentPart(text=text)])


def chat_request(model: str, prompt: str | Sequence[pb.Message], **fields: Any) -> pb.ChatRequest:
    """A ChatRequest from a prompt string (one user message) or a list of messages.

    `fields` are any other ChatRequest fields: `max_tokens=100`, `tools=[...]`, `fallbacks=[...]`.
    """
    messages = [message("user", prompt)] if isinstance(prompt, str) else list(prompt)
    return pb.ChatRequest(model=model, messages=messages, **fields)


def complete_request(model: str, prompt: str, **fields: Any) -> pb.CompleteRequest:
    return pb.CompleteRequest(model=model, prompt=prompt, **fields)


def retry_after(error: grpc.RpcError) -> float | None:
    """Seconds the gateway asked the caller to wait (from a rate-limited call's error), or None."""
    trailing = getattr(error, "trailing_metadata", None)
    for item in (trailing() if trailing else None) or ():
        if item[0] == "retry-after-ms":
            return int(item[1]) / 1000
    return None


class _Options:
    """What both clients share: default deadline and credentials metadata."""

    def __init__(self, api_key: str | None, timeout: float | None) -> None:
        self.timeout = timeout
        self.metadata = (("authorization", f"Bearer {api_key}"),) if api_key else None

    def call(self, timeout: float | None) -> dict[str, Any]:
        return {"timeout": self.timeout if timeout is None else timeout, "metadata": self.metadata}


class GatewayClient:
    """Async client: `async with GatewayClient("localhost:50051") as gateway: ...`.

    Pass `channel=` to use a channel you built (TLS, interceptors); the client then does not own it
    and `close()` leaves it open.
    """

    def __init__(
        self,
        target: str = "localhost:50051",
        *,
        api_key: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        credentials: grpc.ChannelCredentials | None = None,
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        self._owns_channel = channel is None
        if channel is None:
            channel = (
                grpc.aio.secure_channel(target, credentials, options=CHANNEL_OPTIONS)
                if credentials
                else grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
            )
        self.channel = channel
        self.stub = pb_grpc.ProviderServiceStub(channel)
        self._health_check = channel.unary_unary(
            health.CHECK_METHOD,
            request_serializer=health.HealthCheckRequest.SerializeToString,
            response_deserializer=health.HealthCheckResponse.FromString,
        )
        self._options = _Options(api_key, timeout)

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_channel:
            await self.channel.close()

    async def _events(self, call: Any) -> AsyncIterator[Event]:
        try:
            async for raw in call:
                event = typed_event(raw)
                if event is not None:
                    yield event
        finally:
            call.cancel()  # a no-op after a clean end; stops the gateway's work after a `break`

    def chat_stream(
        self, model: str, prompt: str | Sequence[pb.Message], *, timeout: float | None = None, **fields: Any
    ) -> AsyncIterator[Event]:
        """Stream a chat answer as typed events: `async for event in gateway.chat_stream(...)`."""
        request = chat_request(model, prompt, **fields)
        return self._events(self.stub.ChatStream(request, **self._options.call(timeout)))

    async def stream_text(
        self, model: str, prompt: str | Sequence[pb.Message], *, timeout: float | None = None, **fields: Any
    ) -> AsyncIterator[str]:
        """Only the answer text, piece by piece."""
        async for event in self.chat_stream(model, prompt, timeout=timeout, **fields):
            if isinstance(event, Text):
                yield event.text

    async def chat(
        self, model: str, prompt: str | Sequence[pb.Message], *, timeout: float | None = None, **fields: Any
    ) -> pb.ChatResponse:
        return await self.stub.Chat(chat_request(model, prompt, **fields), **self._options.call(timeout))

    async def complete(
        self, model: str, prompt: str, *, timeout: float | None = None, **fields: Any
    ) -> pb.CompleteResponse:
        return await self.stub.Complete(
            complete_request(model, prompt, **fields), **self._options.call(timeout)
        )

    def complete_stream(
        self, model: str, prompt: str, *, timeout: float | None = None, **fields: Any
    ) -> AsyncIterator[Event]:
        request = complete_request(model, prompt, **fields)
        return self._events(self.stub.CompleteStream(request, **self._options.call(timeout)))

    async def list_models(self, provider: str = "", *, timeout: float | None = None) -> list[pb.ModelInfo]:
        request = pb.ListModelsRequest(provider=provider)
        return list((await self.stub.ListModels(request, **self._options.call(timeout))).models)

    async def list_providers(self, *, timeout: float | None = None) -> pb.ListProvidersResponse:
        return await self.stub.ListProviders(pb.ListProvidersRequest(), **self._options.call(timeout))

    async def count_tokens(
        self, model: str, text: str = "", *, timeout: float | None = None, **fields: Any
    ) -> pb.CountTokensResponse:
        request = pb.CountTokensRequest(model=model, text=text, **fields)
        return await self.stub.CountTokens(request, **self._options.call(timeout))

    async def embed(
        self, model: str, inputs: Sequence[str], *, timeout: float | None = None, **fields: Any
    ) -> pb.EmbedResponse:
        request = pb.EmbedRequest(model=model, inputs=list(inputs), **fields)
        return await self.stub.Embed(request, **self._options.call(timeout))

    async def health(self, service: str = "", *, timeout: float | None = None) -> str:
        """The health status name (`SERVING`, `NOT_SERVING`...) of the server or one entry."""
        request = health.HealthCheckRequest(service=service)
        response = await self._health_check(request, **self._options.call(timeout))
        return health.status_name(response)


class SyncGatewayClient:
    """Blocking client for scripts and threaded services: `with SyncGatewayClient(target) as gateway:`."""

    def __init__(
        self,
        target: str = "localhost:50051",
        *,
        api_key: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        credentials: grpc.ChannelCredentials | None = None,
        channel: grpc.Channel | None = None,
    ) -> None:
        self._owns_channel = channel is None
        if channel is None:
            channel = (
                grpc.secure_channel(target, credentials, options=CHANNEL_OPTIONS)
                if credentials
                else grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
            )
        self.channel = channel
        self.stub = pb_grpc.ProviderServiceStub(channel)
        self._health_check = channel.unary_unary(
            health.CHECK_METHOD,
            request_serializer=health.HealthCheckRequest.SerializeToString,
            response_deserializer=health.HealthCheckResponse.FromString,
        )
        self._options = _Options(api_key, timeout)

    def __enter__(self) -> SyncGatewayClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_channel:
            self.channel.close()

    def _events(self, call: Any) -> Iterator[Event]:
        try:
            for raw in call:
                event = typed_event(raw)
                if event is not None:
                    yield event
        finally:
            call.cancel()

    def chat_stream(
        self, model: str, prompt: str | Sequence[pb.Message], *, timeout: float | None = None, **fields: Any
    ) -> Iterator[Event]:
        request = chat_request(model, prompt, **fields)
        return self._events(self.stub.ChatStream(request, **self._options.call(timeout)))

    def stream_text(
        self, model: str, prompt: str | Sequence[pb.Message], *, timeout: float | None = None, **fields: Any
    ) -> Iterator[str]:
        """Only the answer text, piece by piece."""
        for event in self.chat_stream(model, prompt, timeout=timeout, **fields):
            if isinstance(event, Text):
                yield event.text

    def chat(
        self, model: str, prompt: str | Sequence[pb.Message], *, timeout: float | None = None, **fields: Any
    ) -> pb.ChatResponse:
        return self.stub.Chat(chat_request(model, prompt, **fields), **self._options.call(timeout))

    def complete(
        self, model: str, prompt: str, *, timeout: float | None = None, **fields: Any
    ) -> pb.CompleteResponse:
        return self.stub.Complete(complete_request(model, prompt, **fields), **self._options.call(timeout))

    def complete_stream(
        self, model: str, prompt: str, *, timeout: float | None = None, **fields: Any
    ) -> Iterator[Event]:
        request = complete_request(model, prompt, **fields)
        return self._events(self.stub.CompleteStream(request, **self._options.call(timeout)))

    def list_models(self, provider: str = "", *, timeout: float | None = None) -> list[pb.ModelInfo]:
        request = pb.ListModelsRequest(provider=provider)
        return list(self.stub.ListModels(request, **self._options.call(timeout)).models)

    def list_providers(self, *, timeout: float | None = None) -> pb.ListProvidersResponse:
        return self.stub.ListProviders(pb.ListProvidersRequest(), **self._options.call(timeout))

    def count_tokens(
        self, model: str, text: str = "", *, timeout: float | None = None, **fields: Any
    ) -> pb.CountTokensResponse:
        request = pb.CountTokensRequest(model=model, text=text, **fields)
        return self.stub.CountTokens(request, **self._options.call(timeout))

    def embed(
        self, model: str, inputs: Sequence[str], *, timeout: float | None = None, **fields: Any
    ) -> pb.EmbedResponse:
        return self.stub.Embed(
            pb.EmbedRequest(model=model, inputs=list(inputs), **fields), **self._options.call(timeout)
        )

    def health(self, service: str = "", *, timeout: float | None = None) -> str:
        request = health.HealthCheckRequest(service=service)
        response = self._health_check(request, **self._options.call(timeout))
        return health.status_name(response)
