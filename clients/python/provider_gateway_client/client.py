"""The asyncio client, `GatewayClient`, on one gRPC channel (the blocking twin is in sync_client.py).

Every call takes `timeout=` (seconds for the whole call, its retries included) and falls back to
the client's default; failures raise typed `GatewayError`s (errors.py); `max_retries` retries
what is safe to repeat (retries.py). Streams are `AsyncChatStream`s (streams.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from provider_gateway_client import health, info
from provider_gateway_client.config import (
    CHANNEL_OPTIONS,
    DEFAULT_TIMEOUT_S,
    SERVICE_CONFIG,
    Settings,
    settings,
)
from provider_gateway_client.errors import gateway_error, retry_after
from provider_gateway_client.info import Embeddings, ModelInfo, Providers, TokenCount
from provider_gateway_client.requests import (
    Prompt,
    chat_request,
    complete_request,
    default_stream_options,
    message,
)
from provider_gateway_client.results import ChatResult, chat_result
from provider_gateway_client.retries import DEFAULT_MAX_RETRIES, RetryPolicy, deadline_of, remaining
from provider_gateway_client.streams import AsyncChatStream
from provider_gateway_client.v1 import provider_service_pb2 as pb
from provider_gateway_client.v1 import provider_service_pb2_grpc as pb_grpc

__all__ = [
    "CHANNEL_OPTIONS",
    "SERVICE_CONFIG",
    "GatewayClient",
    "chat_request",
    "complete_request",
    "message",
    "retry_after",
]
R = TypeVar("R")


class GatewayClient:
    """Async client: `async with GatewayClient() as gateway: ...`.

    Unset arguments come from the environment (config.py): `PROVIDER_GATEWAY_TARGET`,
    `PROVIDER_GATEWAY_API_KEY`, `PROVIDER_GATEWAY_TLS`, `PROVIDER_GATEWAY_CA_FILE`... Pass
    `channel=` to use a channel you built (interceptors); the client then does not own it and
    `close()` leaves it open. `credentials=` wins over the TLS settings.
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        tls: bool | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        self.settings: Settings = settings(target, api_key, tls, ca_file, cert_file, key_file)
        self._owns_channel = channel is None
        if channel is None:
            credentials = credentials or self.settings.credentials()
            target = self.settings.target
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
        self.timeout = timeout
        self.retry_policy = RetryPolicy(max_retries=max_retries)

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_channel:
            await self.channel.close()

    def _deadline(self, timeout: float | None) -> float | None:
        return deadline_of(self.timeout if timeout is None else timeout)

    async def _unary(self, method: Callable[..., Awaitable[R]], request: Any, timeout: float | None) -> R:
        deadline, retry = self._deadline(timeout), 0
        while True:
            try:
                return await method(request, timeout=remaining(deadline), metadata=self.settings.metadata)
            except grpc.RpcError as exc:
                error = gateway_error(exc)
                wait = self.retry_policy.wait_before(retry, error, deadline)
                if wait is None:
                    raise error from exc
            await asyncio.sleep(wait)
            retry += 1

    def _stream(self, method: Callable[..., Any], request: Any, timeout: float | None) -> AsyncChatStream:
        def start(seconds_left: float | None) -> Any:
            return method(request, timeout=seconds_left, metadata=self.settings.metadata)

        default_stream_options(request)
        return AsyncChatStream(start, self.retry_policy, self._deadline(timeout))

    def chat_stream(
        self, model: str, prompt: Prompt, *, timeout: float | None = None, **fields: Any
    ) -> AsyncChatStream:
        """Stream a chat answer: `async with gateway.chat_stream(...) as stream:` (or plain `async for`)."""
        return self._stream(self.stub.ChatStream, chat_request(model, prompt, **fields), timeout)

    def stream_text(self, model: str, prompt: Prompt, *, timeout: float | None = None, **fields: Any) -> Any:
        """Only the answer text, piece by piece: `async for piece in gateway.stream_text(...)`."""
        return self.chat_stream(model, prompt, timeout=timeout, **fields).text_stream

    async def chat(
        self, model: str, prompt: Prompt, *, timeout: float | None = None, **fields: Any
    ) -> ChatResult:
        request = chat_request(model, prompt, **fields)
        return chat_result(await self._unary(self.stub.Chat, request, timeout))

    async def complete(
        self, model: str, prompt: str, *, timeout: float | None = None, **fields: Any
    ) -> ChatResult:
        request = complete_request(model, prompt, **fields)
        return chat_result(await self._unary(self.stub.Complete, request, timeout))

    def complete_stream(
        self, model: str, prompt: str, *, timeout: float | None = None, **fields: Any
    ) -> AsyncChatStream:
        return self._stream(self.stub.CompleteStream, complete_request(model, prompt, **fields), timeout)

    async def list_models(self, provider: str = "", *, timeout: float | None = None) -> list[ModelInfo]:
        response = await self._unary(self.stub.ListModels, pb.ListModelsRequest(provider=provider), timeout)
        return info.models(response)

    async def list_providers(self, *, timeout: float | None = None) -> Providers:
        return info.providers(await self._unary(self.stub.ListProviders, pb.ListProvidersRequest(), timeout))

    async def get_spend(self, *, timeout: float | None = None) -> pb.GetSpendResponse:
        """What this client's key and its team have spent and have left, per limit and window."""
        return await self._unary(self.stub.GetSpend, pb.GetSpendRequest(), timeout)

    async def count_tokens(
        self, model: str, text: str = "", *, timeout: float | None = None, **fields: Any
    ) -> TokenCount:
        request = pb.CountTokensRequest(model=model, text=text, **fields)
        return info.token_count(await self._unary(self.stub.CountTokens, request, timeout))

    async def embed(
        self, model: str, inputs: list[str] | tuple[str, ...], *, timeout: float | None = None, **fields: Any
    ) -> Embeddings:
        request = pb.EmbedRequest(model=model, inputs=list(inputs), **fields)
        return info.embeddings(await self._unary(self.stub.Embed, request, timeout))

    async def health(self, service: str = "", *, timeout: float | None = None) -> str:
        """The health status name (`SERVING`, `NOT_SERVING`...) of the server or one entry."""
        request = health.HealthCheckRequest(service=service)
        return health.status_name(await self._unary(self._health_check, request, timeout))
