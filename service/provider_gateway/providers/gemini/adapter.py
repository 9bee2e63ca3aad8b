"""The Gemini (Google AI Studio) adapter: streamGenerateContent over SSE, countTokens, embeddings.

Configuration (`[providers.<name>]`, kind "gemini"):
  base_url (default https://generativelanguage.googleapis.com), api_key_env (default GEMINI_API_KEY)
  or api_key_file, connect_timeout_s, first_byte_timeout_s, idle_timeout_s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from provider_gateway.config import Section
from provider_gateway.domain import (
    Capabilities,
    ChatRequest,
    ChatResponse,
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
from provider_gateway.providers.context import ProviderContext
from provider_gateway.providers.gemini import codec
from provider_gateway.providers.http_common import path_segment
from provider_gateway.providers.reported_usage import report_partial_usage
from provider_gateway.providers.shapes import count_at
from provider_gateway.providers.upstream_io import (
    TIMEOUT_KEYS,
    HttpProvider,
    SseEvent,
    SseReads,
    decode_json_event,
    sse_reads,
)

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
KEYS = ("kind", "base_url", "api_key_env", "api_key_file", *TIMEOUT_KEYS)
SSE = {"alt": "sse"}


async def decode_generate(
    reads: SseReads, provider: str, *, merge: bool, logprobs: bool = False
) -> AsyncIterator[StreamEvent]:
    """GenerateContentResponse chunks as domain events; a stream without a finishReason is an error.
    `logprobs`: the request asked for them (each chunk's `logprobsResult` is read)."""
    decoder = codec.GenerateStreamDecoder(provider=provider, logprobs=logprobs)
    reported = False

    def step(event: SseEvent) -> list[StreamEvent]:
        nonlocal reported
        chunk = decode_json_event(event.data, provider)
        items = decoder.feed(chunk)
        if not reported and isinstance(chunk, dict) and chunk.get("usageMetadata"):
            # Cumulative in every chunk: the latest is read, and charged as partial, only if the
            # stream is cut before its end.
            report_partial_usage(lambda: codec.normalise_usage(decoder.usage_raw))
            reported = True
        return items

    # Gemini's last chunk carries the finishReason, and the server closes the stream after it.
    async for item in reads.relay(step, merge=merge):
        yield item
    if not decoder.finish_reason:
        raise GatewayError(
            ErrorKind.UNAVAILABLE, "upstream stream ended before a finishReason", provider=provider
        )
    for item in decoder.end():
        yield item


# Declared once: the router's honour check asks on every call.
CAPABILITIES = Capabilities(
    max_tokens=65536,
    tools=True,
    vision=True,
    embeddings=True,
    reasoning=True,
    json_output=True,
    exact_token_count=True,
    completion=True,
)


class GeminiProvider(HttpProvider):
    kind = "gemini"
    health_path = "/v1beta/models"

    def __init__(self, name: str, options: Section, context: ProviderContext) -> None:
        options.reject_unknown(KEYS)
        api_key = options.secret("api_key", "GEMINI_API_KEY", required=True)
        base_url = options.string("base_url", DEFAULT_BASE_URL)
        super().__init__(
            name, context, base_url, options, headers={"x-goog-api-key": api_key}, secret=api_key
        )

    @classmethod
    def from_config(cls, name: str, options: Section, context: ProviderContext) -> GeminiProvider:
        return cls(name, options, context)

    def capabilities(self) -> Capabilities:
        return CAPABILITIES

    def _path(self, model: str, action: str) -> str:
        return f"/v1beta/models/{path_segment(model, 'model', self.name)}:{action}"

    async def chat_stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        body = codec.build_generate_body(request)
        path = self._path(request.model, "streamGenerateContent")
        async with sse_reads(self.upstream(), path, body, params=SSE, model=request.model) as reads:
            scored = request.logprobs is not None
            async for event in decode_generate(reads, self.name, merge=self.merge_reads, logprobs=scored):
                yield event

    async def chat(self, request: ChatRequest) -> ChatResponse:
        body = codec.build_generate_body(request)
        path = self._path(request.model, "generateContent")
        answer = await self.upstream().request_json("POST", path, json=body, model=request.model)
        decoder = codec.GenerateStreamDecoder(provider=self.name, logprobs=request.logprobs is not None)
        return decoder.response(answer)

    async def count_tokens(self, request: CountTokensRequest) -> TokenCount:
        body = codec.build_count_body(request, f"models/{request.model}")
        path = self._path(request.model, "countTokens")
        answer = await self.upstream().request_json("POST", path, json=body, model=request.model)
        return TokenCount(
            input_tokens=count_at(answer, "totalTokens", provider=self.name),
            estimated=False,
            model=request.model,
        )

    async def embed(self, request: EmbedRequest) -> EmbedResult:
        body = codec.build_embed_body(request, f"models/{request.model}")
        path = self._path(request.model, "batchEmbedContents")
        answer = await self.upstream().request_json("POST", path, json=body, model=request.model)
        vectors = codec.parse_embeddings(answer, provider=self.name)
        if len(vectors) != len(request.inputs):
            raise GatewayError(
                ErrorKind.UNAVAILABLE, "embedding count does not match the inputs", provider=self.name
            )
        # batchEmbedContents reports no usage: a local estimate, marked as such.
        usage = Usage(input_tokens=sum(estimate_tokens(t) for t in request.inputs), estimated=True)
        return EmbedResult(vectors, usage, model=request.model)

    async def list_models(self) -> list[ModelInfo]:
        answer = await self.upstream().request_json("GET", "/v1beta/models", params={"pageSize": "1000"})
        return codec.parse_models(answer, provider=self.name)


from_config = GeminiProvider.from_config
