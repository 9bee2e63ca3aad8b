"""Async (`GatewayClient`) and sync (`SyncGatewayClient`) clients over one gRPC channel each."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc

ROLES = {"system": pb.ROLE_SYSTEM, "user": pb.ROLE_USER, "assistant": pb.ROLE_ASSISTANT, "tool": pb.ROLE_TOOL}

# Retry unary calls that failed to reach a healthy replica; streams are never retried by the
# channel because a retried stream could repeat output.
SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [
                    {"service": "provider_gateway.v1.ProviderService", "method": m}
                    for m in ("Chat", "Complete", "ListModels", "CountTokens", "Embed", "ListProviders")
                ],
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
CHANNEL_OPTIONS = (
    ("grpc.service_config", SERVICE_CONFIG),
    ("grpc.enable_retries", 1),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
)


def message(role: str, text: str) -> pb.Message:
    """A message with one text part: `message("user", "Hello")`."""
    return pb.Message(role=ROLES[role], content=[pb.ContentPart(text=text)])


def chat_request(model: str, prompt: str | Sequence[pb.Message], **fields: Any) -> pb.ChatRequest:
    """A ChatRequest from a prompt string (one user message) or a list of messages."""
    messages = [message("user", prompt)] if isinstance(prompt, str) else list(prompt)
    return pb.ChatRequest(model=model, messages=messages, **fields)


def _metadata(api_key: str | None) -> tuple[tuple[str, str], ...] | None:
    return (("authorization", f"Bearer {api_key}"),) if api_key else None


class GatewayClient:
    """Async client. Use as `async with GatewayClient(target) as gateway: ...`."""

    def __init__(
        self,
        target: str = "localhost:50051",
        *,
        api_key: str | None = None,
        timeout: float | None = 60.0,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.channel = (
            grpc.aio.secure_channel(target, credentials, options=CHANNEL_OPTIONS)
            if credentials
            else grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        )
        self.stub = pb_grpc.ProviderServiceStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)
        self.timeout = timeout
        self.metadata = _metadata(api_key)

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

    def _call(self, timeout: float | None) -> dict[str, Any]:
        return {"timeout": self.timeout if timeout is None else timeout, "metadata": self.metadata}

    async def chat_stream(
        self, model: str, prompt: str | Sequence[pb.Message], *, timeout: float | None = None, **fields: Any
    ) -> AsyncIterator[pb.StreamEvent]:
        """Stream a chat; events arrive as the provider produces them. Cancel by breaking out."""
        call = self.stub.ChatStream(chat_request(model, prompt, **fields), **self._call(timeout))
        try:
            async for event in call:
                yield event
        finally:
            call.cancel()

    async def chat(
        self, model: str, prompt: str | Sequence[pb.Message], *, timeout: float | None = None, **fields: Any
    ) -> pb.ChatResponse:
        return await self.stub.Chat(chat_request(model, prompt, **fields), **self._call(timeout))

    async def complete(
        self, model: str, prompt: str, *, timeout: float | None = None, **fields: Any
    ) -> pb.CompleteResponse:
        return await self.stub.Complete(
            pb.CompleteRequest(model=model, prompt=prompt, **fields), **self._call(timeout)
        )

    async def complete_stream(
        self, model: str, prompt: str, *, timeout: float | None = None, **fields: Any
    ) -> AsyncIterator[pb.StreamEvent]:
        call = self.stub.CompleteStream(
            pb.CompleteRequest(model=model, prompt=prompt, **fields), **self._call(timeout)
        )
        try:
            async for event in call:
                yield event
        finally:
            call.cancel()

    async def list_models(self, provider: str = "") -> list[pb.ModelInfo]:
        response = await self.stub.ListModels(pb.ListModelsRequest(provider=provider), **self._call(None))
        return list(response.models)

    async def list_providers(self) -> pb.ListProvidersResponse:
        return await self.stub.ListProviders(pb.ListProvidersRequest(), **self._call(None))

    async def count_tokens(self, model: str, text: str = "", **fields: Any) -> pb.CountTokensResponse:
        return await self.stub.CountTokens(
            pb.CountTokensRequest(model=model, text=text, **fields), **self._call(None)
        )

    async def embed(self, model: str, inputs: Sequence[str], **fields: Any) -> pb.EmbedResponse:
        return await self.stub.Embed(
            pb.EmbedRequest(model=model, inputs=list(inputs), **fields), **self._call(None)
        )

    async def health(self, service: str = "") -> str:
        """The health status name (`SERVING`, `NOT_SERVING`...) of the server or one entry."""
        response = await self.health_stub.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=self.timeout
        )
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


class SyncGatewayClient:
    """Blocking client for scripts and non-async services. Use as a context manager."""

    def __init__(
        self,
        target: str = "localhost:50051",
        *,
        api_key: str | None = None,
        timeout: float | None = 60.0,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.channel = (
            grpc.secure_channel(target, credentials, options=CHANNEL_OPTIONS)
            if credentials
            else grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        )
        self.stub = pb_grpc.ProviderServiceStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)
        self.timeout = timeout
        self.metadata = _metadata(api_key)

    def __enter__(self) -> SyncGatewayClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def _call(self, timeout: float | None) -> dict[str, Any]:
        return {"timeout": self.timeout if timeout is None else timeout, "metadata": self.metadata}

    def chat_stream(
        self, model: str, prompt: str | Sequence[pb.Message], *, timeout: float | None = None, **fields: Any
    ) -> Iterator[pb.StreamEvent]:
        call = self.stub.ChatStream(chat_request(model, prompt, **fields), **self._call(timeout))
        try:
            yield from call
        finally:
            call.cancel()

    def chat(
        self, model: str, prompt: str | Sequence[pb.Message], *, timeout: float | None = None, **fields: Any
    ) -> pb.ChatResponse:
        return self.stub.Chat(chat_request(model, prompt, **fields), **self._call(timeout))

    def complete(
        self, model: str, prompt: str, *, timeout: float | None = None, **fields: Any
    ) -> pb.CompleteResponse:
        return self.stub.Complete(
            pb.CompleteRequest(model=model, prompt=prompt, **fields), **self._call(timeout)
        )

    def list_models(self, provider: str = "") -> list[pb.ModelInfo]:
        return list(self.stub.ListModels(pb.ListModelsRequest(provider=provider), **self._call(None)).models)

    def list_providers(self) -> pb.ListProvidersResponse:
        return self.stub.ListProviders(pb.ListProvidersRequest(), **self._call(None))

    def health(self, service: str = "") -> str:
        response = self.health_stub.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=self.timeout
        )
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
