"""A configured provider that cannot run yet because a required secret is empty.

In a cluster the Secret with the keys is created apart from the bundle and may come later, or be
missing one key. Exiting would crash-loop the pod; instead the provider stays listed, reports
NOT_SERVING with the reason (so readiness fails while nothing else can serve), and answers every
call FAILED_PRECONDITION with the same reason, while the other providers serve.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import NoReturn

from provider_gateway.domain import (
    Capabilities,
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    CompletionResponse,
    CountTokensRequest,
    EmbedRequest,
    EmbedResult,
    HealthStatus,
    ModelInfo,
    StreamEvent,
    TokenCount,
)
from provider_gateway.errors import ErrorKind, GatewayError


class UnconfiguredProvider:
    def __init__(self, name: str, kind: str, reason: str) -> None:
        self._name, self._kind = name, kind
        self.reason = reason

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> str:
        return self._kind

    def capabilities(self) -> Capabilities:
        return Capabilities()

    def _refuse(self) -> NoReturn:
        raise GatewayError(
            ErrorKind.FAILED_PRECONDITION,
            f"not configured: {self.reason}",
            provider=self._name,
            retryable=False,
        )

    async def health_check(self) -> HealthStatus:
        return HealthStatus(False, f"not configured: {self.reason}")

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self._refuse()

    async def chat_stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        self._refuse()
        yield  # an async generator, as the protocol's streams are

    async def complete(self, request: CompletionRequest) -> CompletionResponse:
        self._refuse()

    async def complete_stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        self._refuse()
        yield

    async def list_models(self) -> list[ModelInfo]:
        return []

    async def count_tokens(self, request: CountTokensRequest) -> TokenCount:
        self._refuse()

    async def embed(self, request: EmbedRequest) -> EmbedResult:
        self._refuse()

    async def aclose(self) -> None:
        return None
