"""The Anthropic adapter: Messages (streamed, or one `stream: false` call for unary Chat), legacy
Text Completions (likewise), token counting, models.

Configuration (`[providers.<name>]`, kind "anthropic"):
  base_url (default https://api.anthropic.com), api_key_env (default ANTHROPIC_API_KEY) or
  api_key_file, prompt_caching (true), max_tokens (8192), fine_grained_tool_streaming (true),
  context_1m_models (model ids that get the 1M-context beta), betas (extra anthropic-beta values),
  connect_timeout_s, first_byte_timeout_s, idle_timeout_s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from provider_gateway.config import Section
from provider_gateway.domain import (
    Capabilities,
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    CompletionResponse,
    CountTokensRequest,
    ModelInfo,
    StreamEvent,
    TokenCount,
    UsageEvent,
)
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.anthropic import codec
from provider_gateway.providers.anthropic.forced_output import output_tool_name
from provider_gateway.providers.base import accumulate, completion_of
from provider_gateway.providers.context import ProviderContext
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

DEFAULT_BASE_URL = "https://api.anthropic.com"
USAGE_EVENTS = ("message_start", "message_delta")  # the events that carry usage (cumulative)
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


def options_from(options: Section, *, tool_streaming: bool = True) -> codec.AnthropicOptions:
    return codec.AnthropicOptions(
        prompt_caching=options.flag("prompt_caching", True),
        max_tokens=options.integer("max_tokens", codec.DEFAULT_MAX_TOKENS, minimum=1),
        fine_grained_tool_streaming=tool_streaming and options.flag("fine_grained_tool_streaming", True),
        context_1m_models=tuple(options.strings("context_1m_models")),
        extra_betas=tuple(options.strings("betas")),
    )


async def decode_messages(
    reads: SseReads, provider: str, request: ChatRequest, *, merge: bool
) -> AsyncIterator[StreamEvent]:
    """The Messages SSE stream as domain events; a stream without `message_stop` is an error."""
    decoder = codec.MessagesStreamDecoder(provider=provider, output_tool=output_tool_name(request))

    def step(event: SseEvent) -> list[StreamEvent]:
        data = decode_json_event(event.data, provider)
        items = decoder.feed(data)
        if isinstance(data, dict) and data.get("type") in USAGE_EVENTS:
            # Heard before the end: charged (as partial) if the stream is cut before message_stop.
            report_partial_usage(codec.normalise_usage(decoder.usage_raw))
        return items

    # message_stop is the last event: reading stops there, without waiting for the server to close.
    async for item in reads.relay(step, merge=merge, finished=lambda: decoder.finished):
        yield item
    if not decoder.finished:
        raise GatewayError(
            ErrorKind.UNAVAILABLE, "upstream stream ended before message_stop", provider=provider
        )


class AnthropicProvider(HttpProvider):
    kind = "anthropic"
    health_path = "/v1/models"

    def __init__(self, name: str, options: Section, context: ProviderContext) -> None:
        options.reject_unknown(KEYS)
        api_key = options.secret("api_key", "ANTHROPIC_API_KEY", required=True)
        headers = {"x-api-key": api_key, "anthropic-version": codec.API_VERSION}
        super().__init__(
            name,
            context,
            options.string("base_url", DEFAULT_BASE_URL),
            options,
            headers=headers,
            secret=api_key,
        )
        self.options = options_from(options)
        # Built once from the options: the router's honour check asks on every call.
        self._capabilities = Capabilities(
            max_tokens=self.options.max_tokens,
            tools=True,
            vision=True,
            reasoning=True,
            json_output=True,  # structured outputs (JSON schema); what a model lacks, the codec refuses
            schema_by_forced_tool=True,
            exact_token_count=True,
            completion=True,
        )

    @classmethod
    def from_config(cls, name: str, options: Section, context: ProviderContext) -> AnthropicProvider:
        return cls(name, options, context)

    def capabilities(self) -> Capabilities:
        return self._capabilities

    def _for(self, model: str) -> dict[str, str]:
        betas = codec.beta_header(self.options, model)
        return {"anthropic-beta": betas} if betas else {}

    async def chat_stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        body = codec.build_messages_body(request, self.options)
        upstream = self.upstream(self._for(request.model))
        async with sse_reads(upstream, "/v1/messages", body, model=request.model) as reads:
            async for event in decode_messages(reads, self.name, request, merge=self.merge_reads):
                yield event

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """One `stream: false` request, read by the stream's decoder (`MessagesStreamDecoder.response`).

        A forced-tool structured output (forced_output.py) is read from the stream instead: a whole
        Message gives a tool input that max_tokens cut only as far as Anthropic could parse it
        (valid JSON, maybe `{}`), so Chat would disagree with the text ChatStream relays."""
        if output_tool_name(request):
            return await accumulate(self.chat_stream(request))
        body = codec.build_messages_body(request, self.options, stream=False)
        upstream = self.upstream(self._for(request.model))
        answer = await upstream.request_json("POST", "/v1/messages", json=body, model=request.model)
        return codec.MessagesStreamDecoder(provider=self.name).response(answer)

    async def complete_stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        body = codec.build_complete_body(request, self.options)
        decoder = codec.CompletionStreamDecoder(provider=self.name)
        output: list[str] = []

        def step(event: SseEvent) -> list[StreamEvent]:
            items = decoder.feed(decode_json_event(event.data, self.name))
            output.extend(getattr(item, "text", "") for item in items)
            return items

        async with sse_reads(self.upstream(), "/v1/complete", body, model=request.model) as reads:
            async for item in reads.relay(step, merge=self.merge_reads, finished=lambda: decoder.finished):
                yield item
        if not decoder.finished:
            raise GatewayError(
                ErrorKind.UNAVAILABLE, "upstream stream ended without a stop_reason", provider=self.name
            )
        yield UsageEvent(codec.completion_usage(body["prompt"], "".join(output)))
        yield decoder.finish()

    async def complete(self, request: CompletionRequest) -> CompletionResponse:
        body = codec.build_complete_body(request, self.options, stream=False)
        answer = await self.upstream().request_json("POST", "/v1/complete", json=body, model=request.model)
        decoder = codec.CompletionStreamDecoder(provider=self.name)
        return completion_of(decoder.response(answer, body["prompt"]))

    async def count_tokens(self, request: CountTokensRequest) -> TokenCount:
        body = codec.build_count_body(request)
        answer = await self.upstream().request_json(
            "POST", "/v1/messages/count_tokens", json=body, model=request.model
        )
        return TokenCount(
            input_tokens=count_at(answer, "input_tokens", provider=self.name),
            estimated=False,
            model=request.model,
        )

    async def list_models(self) -> list[ModelInfo]:
        answer = await self.upstream().request_json("GET", "/v1/models", params={"limit": "1000"})
        return codec.parse_models(answer, provider=self.name)


from_config = AnthropicProvider.from_config
