"""The Anthropic adapter: Messages streaming, legacy Text Completions, token counting, models.

Configuration (`[providers.<name>]`, kind "anthropic"):
  base_url (default https://api.anthropic.com), api_key_env (default ANTHROPIC_API_KEY) or
  api_key_file, prompt_caching (true), max_tokens (8192), fine_grained_tool_streaming (true),
  context_1m_models (model ids that get the 1M-context beta), betas (extra anthropic-beta values),
  connect_timeout_s, first_byte_timeout_s, between_events_timeout_s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from provider_gateway.config import Section
from provider_gateway.domain import (
    Capabilities,
    ChatRequest,
    CompletionRequest,
    CountTokensRequest,
    ModelInfo,
    StreamEvent,
    TokenCount,
    Usage,
    UsageEvent,
)
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.anthropic import codec
from provider_gateway.providers.base import estimate_tokens
from provider_gateway.providers.upstream_io import (
    TIMEOUT_KEYS,
    HttpProvider,
    SseEvent,
    Timeouts,
    decode_json_event,
    timeouts_from,
)

DEFAULT_BASE_URL = "https://api.anthropic.com"
KEYS = (
    "kind",
    "base_url",
    "api_key_env",
    "api_key_file",
    "prompt_caching",
    "max_tokens",
    "fine_grained_tool_streaming",
    "context_1m_models",
    "betas",
    *TIMEOUT_KEYS,
)
HTTP_KINDS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def parse_error(status: int, body: Any, headers: Mapping[str, str]) -> GatewayError:
    """An HTTP error from Anthropic (or Claude on Vertex) as a GatewayError."""
    if not (
        isinstance(body, Mapping) and isinstance(body.get("error"), Mapping) and body["error"].get("type")
    ):
        fallback = HTTP_KINDS.get(status, "api_error")
        message = body.get("error", {}).get("message") if isinstance(body, Mapping) else None
        body = {"error": {"type": fallback, "message": str(message or f"HTTP {status}")}}
    return codec.error_from_body(body, status=status)


async def decode_messages(events: AsyncIterator[SseEvent], provider: str) -> AsyncIterator[StreamEvent]:
    """The Messages SSE stream as domain events; a stream without `message_stop` is an error."""
    decoder = codec.MessagesStreamDecoder(provider=provider)
    async for event in events:
        for item in decoder.feed(decode_json_event(event.data, provider)):
            yield item
        if decoder.finished:
            return  # message_stop is the last event: do not wait for the server to close
    if not decoder.finished:
        raise GatewayError(
            ErrorKind.UNAVAILABLE, "upstream stream ended before message_stop", provider=provider
        )


class AnthropicProvider(HttpProvider):
    kind = "anthropic"

    def __init__(
        self, name: str, api_key: str, base_url: str, options: codec.AnthropicOptions, timeouts: Timeouts
    ) -> None:
        super().__init__(name, base_url, timeouts, parse_error)
        self._api_key = api_key
        self.options = options

    @classmethod
    def from_config(cls, name: str, options: Section) -> AnthropicProvider:
        options.reject_unknown(KEYS)
        settings = codec.AnthropicOptions(
            prompt_caching=options.flag("prompt_caching", True),
            max_tokens=options.integer("max_tokens", codec.DEFAULT_MAX_TOKENS, minimum=1),
            fine_grained_tool_streaming=options.flag("fine_grained_tool_streaming", True),
            context_1m_models=tuple(options.strings("context_1m_models")),
            extra_betas=tuple(options.strings("betas")),
        )
        api_key = options.secret("api_key", "ANTHROPIC_API_KEY", required=True)
        return cls(
            name, api_key, options.string("base_url", DEFAULT_BASE_URL), settings, timeouts_from(options)
        )

    def capabilities(self) -> Capabilities:
        return Capabilities(
            max_tokens=self.options.max_tokens,
            tools=True,
            vision=True,
            reasoning=True,
            exact_token_count=True,
            completion=True,
        )

    def _headers(self, model: str) -> dict[str, str]:
        headers = {
            "x-api-key": self._api_key,
            "anthropic-version": codec.API_VERSION,
            "content-type": "application/json",
            "accept": "text/event-stream",
        }
        betas = codec.beta_header(self.options, model)
        if betas:
            headers["anthropic-beta"] = betas
        return headers

    async def chat_stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        body = codec.build_messages_body(request, self.options)
        events = self._upstream.sse(f"{self.base_url}/v1/messages", self._headers(request.model), body)
        try:
            async for event in decode_messages(events, self.name):
                yield event
        finally:
            await events.aclose()

    async def complete_stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        body = codec.build_complete_body(request, self.options)
        events = self._upstream.sse(f"{self.base_url}/v1/complete", self._headers(request.model), body)
        decoder = codec.CompletionStreamDecoder(provider=self.name)
        output = 0
        try:
            async for event in events:
                for item in decoder.feed(decode_json_event(event.data, self.name)):
                    output += estimate_tokens(getattr(item, "text", ""))
                    yield item
        finally:
            await events.aclose()
        if not decoder.finished:
            raise GatewayError(
                ErrorKind.UNAVAILABLE, "upstream stream ended without a stop_reason", provider=self.name
            )
        # Text Completions report no usage: a documented local estimate, marked as such.
        usage = Usage(input_tokens=estimate_tokens(body["prompt"]), output_tokens=output, estimated=True)
        yield UsageEvent(usage)
        yield decoder.finish()

    async def count_tokens(self, request: CountTokensRequest) -> TokenCount:
        url = f"{self.base_url}/v1/messages/count_tokens"
        body = codec.build_count_body(request)
        answer = await self._upstream.call_json("POST", url, self._headers(request.model), body)
        return TokenCount(
            input_tokens=int(answer.get("input_tokens") or 0), estimated=False, model=request.model
        )

    async def list_models(self) -> list[ModelInfo]:
        answer = await self._upstream.call_json("GET", f"{self.base_url}/v1/models", self._headers(""))
        return codec.parse_models(answer)


from_config = AnthropicProvider.from_config
