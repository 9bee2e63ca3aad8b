"""The OpenAI-family adapter (I/O): one class for OpenAI, its compatible hosts, Azure and Mistral.

Configuration (a `[providers.<name>]` table):
  kind = "openai" | "groq" | "deepseek" | "xai" | "openrouter" | "together" | "fireworks" | "vllm"
         | "lmstudio" | "mistral" | "azure"          (the preset: base URL and quirks)
  base_url = "..."                 override the preset's (Azure: the resource endpoint)
  api_key_env / api_key_file       the key (default variable: the preset's, e.g. OPENAI_API_KEY)
  organization = "org-..."         OpenAI-Organization header
  headers = { ... }                extra headers (e.g. OpenRouter's HTTP-Referer, X-Title)
  stream_usage = true|false        override whether stream_options.include_usage is sent
  models = ["..."]                 what list_models reports when the host has no /models
  codestral_base_url = "..."       Mistral: the host for codestral-* models
  api = "chat" | "responses"       OpenAI and Azure: Chat Completions (default) or the Responses API
  store = true|false               with api = "responses": let OpenAI keep responses (default false)
  prompt_opens_think = ["..."]     models (ids or fnmatch patterns) whose chat template ends the
                                   prompt with `<think>`: output up to the first `</think>` is reasoning
                                   (only models that always think: docs/http-providers.md)
  connect_timeout_s, first_byte_timeout_s, idle_timeout_s
  Azure only: api_version (default 2024-08-01-preview), deployment, deployments = { model = "dep" },
  api_style = "deployments" | "inference" (Azure AI Inference: /models/chat/completions, 2024-05-01-preview)
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import orjson

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
    Usage,
)
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.http import Timeouts, Upstream
from provider_gateway.http.client import TIMEOUT_KEYS
from provider_gateway.providers.base import BaseProvider, completion_of, estimate_messages, estimate_tokens
from provider_gateway.providers.context import ProviderContext
from provider_gateway.providers.embed_dimensions import fixed_width
from provider_gateway.providers.http_common import path_segment, probe
from provider_gateway.providers.openai import codec
from provider_gateway.providers.openai.presets import PRESETS, Preset
from provider_gateway.providers.openai.responses_adapter import ResponsesApi
from provider_gateway.providers.openai.stream import ChatStreamParser, event_chunk
from provider_gateway.providers.openai.think_opened import block_opened_by_prompt
from provider_gateway.providers.openai.wires import wire_for
from provider_gateway.providers.relay import decode_read
from provider_gateway.providers.reported_usage import report_partial_usage
from provider_gateway.providers.upstream_io import oversized_event
from provider_gateway.wire.sse import SseDecoder, SseError, SseEvent

KEYS = (
    "kind",
    "base_url",
    "api_key_env",
    "api_key_file",
    "organization",
    "headers",
    "stream_usage",
    "models",
    "api_version",
    "deployment",
    "deployments",
    "api_style",
    "codestral_base_url",
    "api",
    "store",
    "prompt_opens_think",
    *TIMEOUT_KEYS,
)
AZURE_API_VERSION = "2024-08-01-preview"
AZURE_INFERENCE_API_VERSION = "2024-05-01-preview"


@dataclasses.dataclass(slots=True, frozen=True)
class AzureRoute:
    style: str  # "deployments" or "inference"
    deployment: str
    deployments: dict[str, str]

    def deployment_for(self, model: str) -> str:
        return self.deployments.get(model) or self.deployment or model

    def path(self, model: str, operation: str, provider: str) -> str:
        if self.style == "inference":
            return f"/models/{operation}"
        return f"/openai/deployments/{path_segment(self.deployment_for(model), 'deployment', provider)}/{operation}"


class OpenAIProvider(BaseProvider):
    kind = "openai"

    def __init__(
        self,
        name: str,
        preset_name: str,
        preset: Preset,
        upstream: Upstream,
        *,
        codestral: Upstream | None = None,
        azure: AzureRoute | None = None,
        models: list[str] | None = None,
        responses: ResponsesApi | None = None,
        merge_reads: bool = True,
        prompt_opens_think: tuple[str, ...] = (),
    ) -> None:
        super().__init__(name)
        self.kind = preset_name
        self.preset = preset
        self.wire = wire_for(preset)
        self.upstream = upstream
        self.codestral = codestral
        self.azure = azure
        self.models = models or []
        self.responses = responses
        # Off unless named: an answer that merely holds `</think>` must not lose its start.
        self.prompt_opens_think = prompt_opens_think
        # Deltas of one upstream read pass the layers above as one event ([server] coalesce_deltas).
        self.merge_reads = merge_reads
        # Built once from the preset: the router's honour check asks on every call.
        self._capabilities = Capabilities(
            max_tokens=preset.max_tokens,
            streaming=True,
            tools=True,
            vision=preset.vision,
            embeddings=preset.embeddings,
            reasoning=True,
            json_output=True,
            exact_token_count=False,  # no count endpoint: BaseProvider's documented local estimate
            completion=True,  # as a one-message chat
        )

    @classmethod
    def from_config(cls, name: str, options: Section, context: ProviderContext) -> OpenAIProvider:
        options.reject_unknown(KEYS)
        preset_name = options.choice("kind", PRESETS, "openai")
        preset = PRESETS[preset_name]
        if not options.flag("stream_usage", preset.stream_usage):
            preset = dataclasses.replace(preset, stream_usage=False)
        elif "stream_usage" in options:
            preset = dataclasses.replace(preset, stream_usage=True)
        base_url = options.string("base_url", preset.base_url)
        if not base_url:
            raise options.error("base_url", f"required for kind {preset_name!r} (the resource endpoint)")
        key = options.secret("api_key", preset.key_env, required=preset.requires_key)
        headers = {k: str(v) for k, v in options.table("headers").raw().items()}
        if key:
            headers.update(
                {"api-key": key} if preset.auth == "api-key" else {"authorization": f"Bearer {key}"}
            )
        if organization := options.string("organization"):
            headers["openai-organization"] = organization
        azure = None
        params: dict[str, str] = {}
        if preset_name == "azure":
            style = options.choice("api_style", ("deployments", "inference"), "deployments")
            default_version = AZURE_API_VERSION if style == "deployments" else AZURE_INFERENCE_API_VERSION
            params["api-version"] = options.string("api_version", default_version)
            deployments = {k: str(v) for k, v in options.table("deployments").raw().items()}
            azure = AzureRoute(style, options.string("deployment"), deployments)
        timeouts = Timeouts.from_section(options)

        def upstream(url: str, query: dict[str, str] = params) -> Upstream:
            return Upstream(
                context.http.host(url),
                url,
                name,
                headers=headers,
                params=query,
                timeouts=timeouts,
                secrets=(key,) if key else (),
                requests_window_s=preset.requests_window_s,
            )

        responses = None
        if options.choice("api", ("chat", "responses"), "chat") == "responses":
            if not preset.responses:
                raise options.error(
                    "api", f"kind {preset_name!r} has no Responses API (openai and azure have)"
                )
            path = "/openai/v1/responses" if azure is not None else "/responses"
            # Azure's v1 API takes no api-version.
            responses = ResponsesApi(
                name, upstream(base_url, {}), path, options.flag("store", False), context.merge_reads
            )
        elif "store" in options:
            raise options.error("store", 'only with api = "responses"')

        codestral_url = options.string("codestral_base_url", preset.codestral_base_url)
        codestral = upstream(codestral_url) if codestral_url else None
        return cls(
            name,
            preset_name,
            preset,
            upstream(base_url),
            codestral=codestral,
            azure=azure,
            models=options.strings("models"),
            responses=responses,
            merge_reads=context.merge_reads,
            prompt_opens_think=tuple(options.strings("prompt_opens_think")),
        )

    # --- description -----------------------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        return self._capabilities

    def _route(self, model: str, operation: str) -> tuple[Upstream, str]:
        if self.azure is not None:
            return self.upstream, self.azure.path(model, operation, self.name)
        if self.codestral is not None and model.startswith("codestral"):
            return self.codestral, f"/{operation}"
        return self.upstream, f"/{operation}"

    # --- calls -----------------------------------------------------------------------------------

    def chat_stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        if self.responses is not None:
            return self.responses.stream(request, self._responses_model(request.model))
        return self._chat_stream(request)

    def _responses_model(self, model: str) -> str:
        return self.azure.deployment_for(model) if self.azure is not None else model

    def complete_stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        return self.chat_stream(request.as_chat())

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """One non-streaming request, one JSON parse, the stream's normalisation (`stream.py`)."""
        if self.responses is not None:
            return await self.responses.chat(request, self._responses_model(request.model))
        upstream, path = self._route(request.model, "chat/completions")
        body = self.wire.chat_body(request, stream=False)
        answer = await upstream.request_json("POST", path, json=body, model=request.model)
        parser = self._parser(request)
        # An answer its host cut short (a failing finish) is charged the usage it reported.
        report_partial_usage(lambda: parser.usage)
        return parser.response(answer, lambda chars: self._estimate(request, chars))

    async def complete(self, request: CompletionRequest) -> CompletionResponse:
        return completion_of(await self.chat(request.as_chat()))

    async def _chat_stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        upstream, path = self._route(request.model, "chat/completions")
        body = self.wire.chat_body(request, stream=True)
        parser = self._parser(request)
        # Chunks whose logprobs were asked for are read whole (`feed`); others by the plain path.
        read = parser.stream_text if request.logprobs is None else parser.feed
        decoder = SseDecoder()
        done = False
        # The usage heard (None until a usage chunk), charged if the stream is cut: read only then,
        # so no chunk pays for a check.
        report_partial_usage(lambda: parser.usage)

        def step(frame: bytes | SseEvent) -> str | list[StreamEvent]:
            nonlocal done
            # A plain event's data, parsed as bytes: a JSON object, nearly always (else the text
            # `event_chunk` decodes says what it is).
            if type(frame) is bytes and frame != b"[DONE]":
                try:
                    data = orjson.loads(frame)
                except orjson.JSONDecodeError:  # `event_chunk` reads it again (lone halves too)
                    data = None
                if type(data) is dict:
                    return read(data)
            data = event_chunk(frame, self.name)
            if data is None:
                done = True
                return []
            return read(data)

        try:
            async with upstream.stream("POST", path, json=body, model=request.model) as chunks:
                # `relay_reads`' loop, here: this generator, the family's every stream, is then the
                # only one between the chunks and the router (benchmarks/RESULTS.md, issue 15).
                merge, finished = self.merge_reads, lambda: done
                async for chunk in chunks:
                    for event in decode_read(decoder.payloads, chunk, step, merge, finished):
                        yield event
                    if done:
                        break
                if not done:  # the body's end dispatches a last event without its blank line
                    for event in decode_read(lambda _: decoder.close(), b"", step, merge, finished):
                        yield event
        except SseError as error:
            raise oversized_event(error, self.name) from None
        if not done and not parser.finish_reason:
            # A body that ended cleanly after a finish_reason is a whole answer, as the openai SDK
            # reads it (several compatible hosts send no [DONE]); one that ended before any is cut
            # short. A reset or a truncated body raised above, in the read.
            raise GatewayError(
                ErrorKind.UNAVAILABLE,
                f"stream from {self.name} ended before a finish_reason or data: [DONE]",
                provider=self.name,
                retryable=True,
            )
        # LM Studio, older vLLM and other local hosts send no usage in streams: count locally, and
        # say so (`estimated`), rather than report none.
        estimate = None if parser.usage is not None else self._estimate(request, parser.output_chars)
        for domain_event in parser.close(estimate):
            yield domain_event

    def _parser(self, request: ChatRequest) -> ChatStreamParser:
        opened = block_opened_by_prompt(request, self.prompt_opens_think)
        return ChatStreamParser(
            self.name, self.wire, logprobs=request.logprobs is not None, prompt_opens_think=opened
        )

    @staticmethod
    def _estimate(request: ChatRequest, output_chars: int) -> Usage:
        output = estimate_tokens("x" * output_chars)
        return Usage(input_tokens=estimate_messages(request.messages), output_tokens=output, estimated=True)

    async def embed(self, request: EmbedRequest) -> EmbedResult:
        if not self.preset.embeddings:
            return await super().embed(request)
        upstream, path = self._route(request.model, "embeddings")
        body: dict[str, Any] = {"model": request.model, "input": list(request.inputs)}
        if request.dimensions:
            if "ada-002" in request.model:  # OpenAI: only text-embedding-3 and later take a size
                raise fixed_width(self.name, request.model, "text-embedding-ada-002 has one width (1536)")
            if self.preset.wire == "mistral":
                # Mistral names the size `output_dimension` (codestral-embed) and refuses unknown
                # fields; mistral-embed has one width.
                if request.model.startswith("mistral-embed"):
                    raise fixed_width(self.name, request.model, "mistral-embed has one width (1024)")
                body["output_dimension"] = request.dimensions
            else:
                body["dimensions"] = request.dimensions
        answer = await upstream.request_json("POST", path, json=body, model=request.model)
        result = codec.parse_embeddings(answer, request.model, provider=self.name)
        if not isinstance(answer.get("usage"), dict):
            # Together (and other hosts) answer without `usage`: a local estimate, said to be one,
            # rather than 0 tokens reported as counted.
            tokens = sum(estimate_tokens(text) for text in request.inputs)
            return EmbedResult(result.vectors, Usage(input_tokens=tokens, estimated=True), model=result.model)
        return result

    async def list_models(self) -> list[ModelInfo]:
        if self.models or self.azure is not None:
            return [
                ModelInfo(id=m) for m in self.models or sorted(self.azure.deployments if self.azure else [])
            ]
        answer = await self.upstream.request_json("GET", "/models")
        return codec.parse_models(answer, provider=self.name)

    async def health_check(self) -> HealthStatus:
        if self.azure is not None:
            return HealthStatus(healthy=True, message="not probed (Azure lists deployments elsewhere)")
        return await probe(self.upstream, "/models")


from_config = OpenAIProvider.from_config
