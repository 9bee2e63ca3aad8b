"""The Ollama adapter (I/O) over the native API: `/api/chat` streamed (NDJSON), or one
`"stream": false` call for unary Chat and Complete.

Configuration (`[providers.<name>]`, kind = "ollama"):
  base_url = "http://localhost:11434"   where Ollama listens
  keep_alive = "5m"                     how long Ollama keeps the model loaded after a request
  api_key_env / api_key_file            optional bearer key (an Ollama behind an authenticating proxy)
  connect_timeout_s, first_byte_timeout_s, idle_timeout_s
Token counting has no endpoint: BaseProvider's documented local estimate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from provider_gateway.config import Section
from provider_gateway.domain import (
    Capabilities,
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    CompletionResponse,
    EmbedRequest,
    EmbedResult,
    HealthStatus,
    ModelInfo,
    StreamEvent,
)
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.http import ErrorPolicy, Timeouts, Upstream, UpstreamResponse
from provider_gateway.http.client import TIMEOUT_KEYS
from provider_gateway.http.errors import parse_body, upstream_message
from provider_gateway.providers.base import BaseProvider, completion_of
from provider_gateway.providers.context import ProviderContext
from provider_gateway.providers.http_common import probe
from provider_gateway.providers.ollama import codec
from provider_gateway.providers.relay import relay_reads
from provider_gateway.wire.ndjson import NdjsonDecoder, NdjsonError

DEFAULT_URL = "http://localhost:11434"
KEYS = ("kind", "base_url", "keep_alive", "api_key_env", "api_key_file", *TIMEOUT_KEYS)


# Declared once: the router's honour check asks on every call.
CAPABILITIES = Capabilities(
    max_tokens=8192,
    streaming=True,
    tools=True,
    vision=True,
    embeddings=True,
    reasoning=True,
    json_output=True,
    exact_token_count=False,
    completion=True,
)


class OllamaErrors(ErrorPolicy):
    """Say what to do: start Ollama, or pull the model."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def from_response(
        self, provider: str, response: UpstreamResponse, raw: bytes, model: str, secrets: tuple[str, ...]
    ) -> GatewayError:
        said = upstream_message(parse_body(raw), raw)
        if response.status_code == 404 and model and ("not found" in said or "pull" in said):
            return GatewayError(
                ErrorKind.NOT_FOUND,
                f"model {model!r} is not pulled on Ollama at {self.base_url}: run `ollama pull {model}`",
                provider=provider,
                upstream_status=404,
            )
        return super().from_response(provider, response, raw, model, secrets)

    def from_transport(self, provider: str, origin: str, error: httpx.TransportError) -> GatewayError:
        mapped = super().from_transport(provider, origin, error)
        if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout) or "refused" in mapped.message:
            mapped.message = "Ollama is not running (start it with `ollama serve`)"
            mapped.args = (mapped.message,)
            mapped.detail = f"Ollama at {self.base_url}: {mapped.detail}"
        return mapped


class OllamaProvider(BaseProvider):
    kind = "ollama"

    def __init__(
        self, name: str, upstream: Upstream, keep_alive: str = "", *, merge_reads: bool = True
    ) -> None:
        super().__init__(name)
        self.upstream = upstream
        self.keep_alive = keep_alive
        self.merge_reads = merge_reads  # the deltas of one read go on merged (providers/relay.py)

    @classmethod
    def from_config(cls, name: str, options: Section, context: ProviderContext) -> OllamaProvider:
        options.reject_unknown(KEYS)
        base_url = options.string("base_url", DEFAULT_URL).rstrip("/")
        key = options.secret("api_key")
        upstream = Upstream(
            context.http.host(base_url),
            base_url,
            name,
            headers={"authorization": f"Bearer {key}"} if key else {},
            timeouts=Timeouts.from_section(options),
            secrets=(key,) if key else (),
            errors=OllamaErrors(base_url),
        )
        return cls(name, upstream, options.string("keep_alive"), merge_reads=context.merge_reads)

    def capabilities(self) -> Capabilities:
        return CAPABILITIES

    def chat_stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        return self._chat_stream(request)

    def complete_stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        return self._chat_stream(request.as_chat())

    async def chat(self, request: ChatRequest) -> ChatResponse:
        body = codec.chat_body(request, stream=False, keep_alive=self.keep_alive)
        answer = await self.upstream.request_json("POST", "/api/chat", json=body, model=request.model)
        return codec.ChatStreamParser(self.name).response(answer)

    async def complete(self, request: CompletionRequest) -> CompletionResponse:
        return completion_of(await self.chat(request.as_chat()))

    async def _chat_stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        body = codec.chat_body(request, stream=True, keep_alive=self.keep_alive)
        parser = codec.ChatStreamParser(self.name)
        decoder = NdjsonDecoder()
        try:
            async with self.upstream.stream("POST", "/api/chat", json=body, model=request.model) as chunks:
                # The done line ends the answer: the rest of the body is not awaited.
                async for event in relay_reads(
                    chunks, decoder.feed, parser.feed, merge=self.merge_reads, finished=lambda: parser.done
                ):
                    yield event
                if not parser.done:  # a last line without its newline
                    for line in decoder.close():
                        for event in parser.feed(line):
                            yield event
        except NdjsonError as error:
            raise GatewayError(
                ErrorKind.UNAVAILABLE,
                f"malformed event from {self.name}: {error}",
                provider=self.name,
                retryable=True,
            ) from None
        if not parser.done:
            raise GatewayError(
                ErrorKind.UNAVAILABLE,
                f"stream from {self.name} ended before its done line",
                provider=self.name,
                retryable=True,
            )

    async def list_models(self) -> list[ModelInfo]:
        answer = await self.upstream.request_json("GET", "/api/tags")
        return codec.parse_models(answer, provider=self.name)

    async def embed(self, request: EmbedRequest) -> EmbedResult:
        # `truncate: false`: an input over the context length is refused (Ollama cuts it by default,
        # silently), never embedded in part.
        body: dict[str, Any] = {"model": request.model, "input": list(request.inputs), "truncate": False}
        if request.dimensions:
            body["dimensions"] = request.dimensions
        answer = await self.upstream.request_json("POST", "/api/embed", json=body, model=request.model)
        return codec.parse_embeddings(answer, request.model, provider=self.name)

    async def health_check(self) -> HealthStatus:
        return await probe(self.upstream, "/api/version")


from_config = OllamaProvider.from_config
