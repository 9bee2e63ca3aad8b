"""The blocking client, `SyncGatewayClient`: the same calls as `GatewayClient` (client.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from provider_gateway_client import health, info
from provider_gateway_client.config import CHANNEL_OPTIONS, DEFAULT_TIMEOUT_S, Settings, settings
from provider_gateway_client.errors import gateway_error
from provider_gateway_client.info import Embeddings, ModelInfo, Providers, TokenCount
from provider_gateway_client.requests import Prompt, chat_request, complete_request, default_stream_options
from provider_gateway_client.results import ChatResult, chat_result
from provider_gateway_client.retries import DEFAULT_MAX_RETRIES, RetryPolicy, deadline_of, remaining
from provider_gateway_client.streams import ChatStream
from provider_gateway_client.v1 import provider_service_pb2 as pb
from provider_gateway_client.v1 import provider_service_pb2_grpc as pb_grpc

R = TypeVar("R")


class SyncGatewayClient:
    """Blocking client: `with SyncGatewayClient() as gateway:`; arguments as `GatewayClient`'s."""

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
        channel: grpc.Channel | None = None,
    ) -> None:
        self.settings: Settings = settings(target, api_key, tls, ca_file, cert_file, key_file)
        self._owns_channel = channel is None
        if channel is None:
            credentials = credentials or self.settings.credentials()
            target = self.settings.target
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
        self.timeout = timeout
        self.retry_policy = RetryPolicy(max_retries=max_retries)

    def __enter__(self) -> SyncGatewayClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_channel:
            self.channel.close()

    def _deadline(self, timeout: float | None) -> float | None:
        return deadline_of(self.timeout if timeout is None else timeout)

    def _unary(self, method: Callable[..., R], request: Any, timeout: float | None) -> R:
        deadline, retry = self._deadline(timeout), 0
        while True:
            try:
                return method(request, timeout=remaining(deadline), metadata=self.settings.metadata)
            except grpc.RpcError as exc:
                error = gateway_error(exc)
                wait = self.retry_policy.wait_before(retry, error, deadline)
                if wait is None:
                    raise error from exc
            time.sleep(wait)
            retry += 1

    def _stream(self, method: Callable[..., Any], request: Any, timeout: float | None) -> ChatStream:
        def start(seconds_left: float | None) -> Any:
            return method(request, timeout=seconds_left, metadata=self.settings.metadata)

        default_stream_options(request)
        return ChatStream(start, self.retry_policy, self._deadline(timeout))

    def chat_stream(
        self, model: str, prompt: Prompt, *, timeout: float | None = None, **fields: Any
    ) -> ChatStream:
        """Stream a chat answer: `with gateway.chat_stream(...) as stream:` (or plain `for`)."""
        return self._stream(self.stub.ChatStream, chat_request(model, prompt, **fields), timeout)

    def stream_text(self, model: str, prompt: Prompt, *, timeout: float | None = None, **fields: Any) -> Any:
        """Only the answer text, piece by piece."""
        return self.chat_stream(model, prompt, timeout=timeout, **fields).text_stream

    def chat(self, model: str, prompt: Prompt, *, timeout: float | None = None, **fields: Any) -> ChatResult:
        return chat_result(self._unary(self.stub.Chat, chat_request(model, prompt, **fields), timeout))

    def complete(self, model: str, prompt: str, *, timeout: float | None = None, **fields: Any) -> ChatResult:
        request = complete_request(model, prompt, **fields)
        return chat_result(self._unary(self.stub.Complete, request, timeout))

    def complete_stream(
        self, model: str, prompt: str, *, timeout: float | None = None, **fields: Any
    ) -> ChatStream:
        return self._stream(self.stub.CompleteStream, complete_request(model, prompt, **fields), timeout)

    def list_models(self, provider: str = "", *, timeout: float | None = None) -> list[ModelInfo]:
        return info.models(
            self._unary(self.stub.ListModels, pb.ListModelsRequest(provider=provider), timeout)
        )

    def list_providers(self, *, timeout: float | None = None) -> Providers:
        return info.providers(self._unary(self.stub.ListProviders, pb.ListProvidersRequest(), timeout))

    def count_tokens(
        self, model: str, text: str = "", *, timeout: float | None = None, **fields: Any
    ) -> TokenCount:
        request = pb.CountTokensRequest(model=model, text=text, **fields)
        return info.token_count(self._unary(self.stub.CountTokens, request, timeout))

    def embed(
        self, model: str, inputs: list[str] | tuple[str, ...], *, timeout: float | None = None, **fields: Any
    ) -> Embeddings:
        request = pb.EmbedRequest(model=model, inputs=list(inputs), **fields)
        return info.embeddings(self._unary(self.stub.Embed, request, timeout))

    def health(self, service: str = "", *, timeout: float | None = None) -> str:
        request = health.HealthCheckRequest(service=service)
        return health.status_name(self._unary(self._health_check, request, timeout))
