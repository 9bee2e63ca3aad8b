"""The Cohere adapter: v2 chat (streamed, or one `stream: false` call for unary Chat), v2 embed,
v1 models and v1 tokenize.

Token counting uses `/v1/tokenize`: exact for plain text; for a conversation the message texts are
tokenized together (the chat template's few framing tokens are not), so the count is marked
estimated. Texts over the endpoint's 65,536-character limit fall back to the local estimate.

Configuration (`[providers.<name>]`, kind "cohere"):
  base_url (default https://api.cohere.com), api_key_env (default COHERE_API_KEY) or api_key_file,
  connect_timeout_s, first_byte_timeout_s, idle_timeout_s.
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
)
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.cohere import codec
from provider_gateway.providers.context import ProviderContext
from provider_gateway.providers.upstream_io import (
    TIMEOUT_KEYS,
    HttpProvider,
    SseEvent,
    decode_json_event,
    sse_reads,
)

DEFAULT_BASE_URL = "https://api.cohere.com"
KEYS = ("kind", "base_url", "api_key_env", "api_key_file", *TIMEOUT_KEYS)
TOKENIZE_LIMIT = 65536


# Declared once: the router's honour check asks on every call.
CAPABILITIES = Capabilities(
    max_tokens=8192,
    tools=True,
    vision=True,
    embeddings=True,
    reasoning=True,
    json_output=True,
    exact_token_count=True,
    completion=True,
)


class CohereProvider(HttpProvider):
    kind = "cohere"
    health_path = "/v1/models"

    def __init__(self, name: str, options: Section, context: ProviderContext) -> None:
        options.reject_unknown(KEYS)
        api_key = options.secret("api_key", "COHERE_API_KEY", required=True)
        headers = {"authorization": f"Bearer {api_key}"}
        base_url = options.string("base_url", DEFAULT_BASE_URL)
        super().__init__(name, context, base_url, options, headers=headers, secret=api_key)

    @classmethod
    def from_config(cls, name: str, options: Section, context: ProviderContext) -> CohereProvider:
        return cls(name, options, context)

    def capabilities(self) -> Capabilities:
        return CAPABILITIES

    async def chat(self, request: ChatRequest) -> ChatResponse:
        body = codec.build_chat_body(request, stream=False)
        answer = await self.upstream().request_json("POST", "/v2/chat", json=body, model=request.model)
        return codec.ChatStreamDecoder(
            provider=self.name, model=request.model, emulated=codec.emulated_fields(request)
        ).response(answer)

    async def chat_stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        body = codec.build_chat_body(request)
        decoder = codec.ChatStreamDecoder(
            provider=self.name, model=request.model, emulated=codec.emulated_fields(request)
        )

        def step(event: SseEvent) -> list[StreamEvent]:
            return decoder.feed(decode_json_event(event.data, self.name))

        async with sse_reads(self.upstream(), "/v2/chat", body, model=request.model) as reads:
            # message-end is the last event: reading stops there.
            async for item in reads.relay(step, merge=self.merge_reads, finished=lambda: decoder.finished):
                yield item
        if decoder.finished:
            return
        raise GatewayError(
            ErrorKind.UNAVAILABLE, "upstream stream ended before message-end", provider=self.name
        )

    async def count_tokens(self, request: CountTokensRequest) -> TokenCount:
        text = "\n".join(m.text for m in request.messages) if request.messages else request.text
        if not text or len(text) > TOKENIZE_LIMIT:
            return await super().count_tokens(request)
        body = {"text": text, "model": request.model}
        answer = await self.upstream().request_json("POST", "/v1/tokenize", json=body, model=request.model)
        count = codec.parse_token_count(answer, provider=self.name)
        return TokenCount(input_tokens=count, estimated=bool(request.messages), model=request.model)

    async def embed(self, request: EmbedRequest) -> EmbedResult:
        body = codec.build_embed_body(request)
        answer = await self.upstream().request_json("POST", "/v2/embed", json=body, model=request.model)
        vectors, usage = codec.parse_embeddings(answer, provider=self.name)
        return EmbedResult(vectors, usage, model=request.model)

    async def list_models(self) -> list[ModelInfo]:
        answer = await self.upstream().request_json("GET", "/v1/models", params={"page_size": "1000"})
        return codec.parse_models(answer, provider=self.name)


from_config = CohereProvider.from_config
