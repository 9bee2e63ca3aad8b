"""The Gemini (Google AI Studio) adapter: streamGenerateContent over SSE, countTokens, embeddings.

Configuration (`[providers.<name>]`, kind "gemini"):
  base_url (default https://generativelanguage.googleapis.com), api_key_env (default GEMINI_API_KEY)
  or api_key_file, connect_timeout_s, first_byte_timeout_s, between_events_timeout_s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from provider_gateway.config import Section
from provider_gateway.domain import (
    Capabilities,
    ChatRequest,
    CountTokensRequest,
    EmbedRequest,
    EmbedResult,
    ModelInfo,
    StreamEvent,
    TokenCount,
    Usage,
)
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.base import estimate_tokens
from provider_gateway.providers.gemini import codec
from provider_gateway.providers.upstream_io import (
    TIMEOUT_KEYS,
    HttpProvider,
    SseEvent,
    Timeouts,
    decode_json_event,
    timeouts_from,
)

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
KEYS = ("kind", "base_url", "api_key_env", "api_key_file", *TIMEOUT_KEYS)


def parse_error(status: int, body: Any, headers: Mapping[str, str]) -> GatewayError:
    return codec.error_from_body(body, status=status)


async def decode_generate(events: AsyncIterator[SseEvent], provider: str) -> AsyncIterator[StreamEvent]:
    """GenerateContentResponse chunks as domain events; a stream without a finishReason is an error."""
    decoder = codec.GenerateStreamDecoder(provider=provider)
    async for event in events:
        for item in decoder.feed(decode_json_event(event.data, provider)):
            yield item
    if not decoder.finish_reason:
        raise GatewayError(
            ErrorKind.UNAVAILABLE, "upstream stream ended before a finishReason", provider=provider
        )
    for item in decoder.end():
        yield item


class GeminiProvider(HttpProvider):
    kind = "gemini"

    def __init__(self, name: str, api_key: str, base_url: str, timeouts: Timeouts) -> None:
        super().__init__(name, base_url, timeouts, parse_error)
        self._api_key = api_key

    @classmethod
    def from_config(cls, name: str, options: Section) -> GeminiProvider:
        options.reject_unknown(KEYS)
        api_key = options.secret("api_key", "GEMINI_API_KEY", required=True)
        return cls(name, api_key, options.string("base_url", DEFAULT_BASE_URL), timeouts_from(options))

    def capabilities(self) -> Capabilities:
        return Capabilities(
            max_tokens=65536,
            tools=True,
            vision=True,
            embeddings=True,
            reasoning=True,
            json_output=True,
            exact_token_count=True,
            completion=False,
        )

    def _headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self._api_key, "content-type": "application/json"}

    def _url(self, model: str, action: str) -> str:
        return f"{self.base_url}/v1beta/models/{model}:{action}"

    async def chat_stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        body = codec.build_generate_body(request)
        url = self._url(request.model, "streamGenerateContent")
        events = self._upstream.sse(url, self._headers(), body, params={"alt": "sse"})
        try:
            async for event in decode_generate(events, self.name):
                yield event
        finally:
            await events.aclose()

    async def count_tokens(self, request: CountTokensRequest) -> TokenCount:
        body = codec.build_count_body(request, f"models/{request.model}")
        answer = await self._upstream.call_json(
            "POST", self._url(request.model, "countTokens"), self._headers(), body
        )
        return TokenCount(
            input_tokens=int(answer.get("totalTokens") or 0), estimated=False, model=request.model
        )

    async def embed(self, request: EmbedRequest) -> EmbedResult:
        body = codec.build_embed_body(request, f"models/{request.model}")
        url = self._url(request.model, "batchEmbedContents")
        answer = await self._upstream.call_json("POST", url, self._headers(), body)
        vectors = [list(map(float, e.get("values") or [])) for e in answer.get("embeddings") or []]
        if len(vectors) != len(request.inputs):
            raise GatewayError(
                ErrorKind.UNAVAILABLE, "embedding count does not match the inputs", provider=self.name
            )
        # batchEmbedContents reports no usage: a local estimate, marked as such.
        usage = Usage(input_tokens=sum(estimate_tokens(t) for t in request.inputs), estimated=True)
        return EmbedResult(vectors, usage, model=request.model)

    async def list_models(self) -> list[ModelInfo]:
        url = f"{self.base_url}/v1beta/models"
        answer = await self._upstream.call_json("GET", url, self._headers(), params={"pageSize": "1000"})
        return codec.parse_models(answer)


from_config = GeminiProvider.from_config
