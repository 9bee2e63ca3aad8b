"""The Vertex AI adapter: Gemini models (`publishers/google`) and Claude (`publishers/anthropic`).

Which publisher serves a request follows from the model id (`claude-*` is Anthropic's). Both use an
OAuth bearer token; the Gemini and Anthropic codecs do the wire work.

Configuration (`[providers.<name>]`, kind "vertex"):
  project (required), location (default us-central1), base_url (default the regional endpoint),
  access_token_env (default VERTEX_ACCESS_TOKEN) or access_token_file (a token minted by e.g.
  `gcloud auth print-access-token`; refreshing it is the deployment's job), prompt_caching (true),
  max_tokens (Claude's default max_tokens, 8192), betas (anthropic-beta values for Claude),
  connect_timeout_s, first_byte_timeout_s, between_events_timeout_s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from provider_gateway.config import Section
from provider_gateway.domain import Capabilities, ChatRequest, CountTokensRequest, StreamEvent, TokenCount
from provider_gateway.errors import GatewayError
from provider_gateway.providers.anthropic import adapter as anthropic_adapter
from provider_gateway.providers.anthropic import codec as anthropic
from provider_gateway.providers.gemini import codec as gemini
from provider_gateway.providers.gemini.adapter import decode_generate
from provider_gateway.providers.upstream_io import TIMEOUT_KEYS, HttpProvider, Timeouts, timeouts_from
from provider_gateway.providers.vertex import codec

KEYS = (
    "kind",
    "project",
    "location",
    "base_url",
    "access_token_env",
    "access_token_file",
    "prompt_caching",
    "max_tokens",
    "betas",
    *TIMEOUT_KEYS,
)


def parse_error(status: int, body: Any, headers: Mapping[str, str]) -> GatewayError:
    """Vertex fronts both publishers; errors come as google.rpc.Status or Anthropic's shape."""
    if isinstance(body, Mapping) and body.get("type") == "error":
        return anthropic_adapter.parse_error(status, body, headers)
    return gemini.error_from_body(body, status=status)


class VertexProvider(HttpProvider):
    kind = "vertex"

    def __init__(
        self,
        name: str,
        *,
        project: str,
        location: str,
        token: str,
        base_url: str,
        claude: anthropic.AnthropicOptions,
        timeouts: Timeouts,
    ) -> None:
        super().__init__(name, base_url, timeouts, parse_error)
        self.project = project
        self.location = location
        self._token = token
        self.claude = claude

    @classmethod
    def from_config(cls, name: str, options: Section) -> VertexProvider:
        options.reject_unknown(KEYS)
        project = options.string("project")
        if not project:
            raise options.error("project", "required: the Google Cloud project id")
        location = options.string("location", "us-central1")
        claude = anthropic.AnthropicOptions(
            prompt_caching=options.flag("prompt_caching", True),
            max_tokens=options.integer("max_tokens", anthropic.DEFAULT_MAX_TOKENS, minimum=1),
            fine_grained_tool_streaming=False,
            extra_betas=tuple(options.strings("betas")),
        )
        return cls(
            name,
            project=project,
            location=location,
            token=options.secret("access_token", "VERTEX_ACCESS_TOKEN", required=True),
            base_url=options.string("base_url", codec.default_base_url(location)),
            claude=claude,
            timeouts=timeouts_from(options),
        )

    def capabilities(self) -> Capabilities:
        return Capabilities(
            max_tokens=65536,
            tools=True,
            vision=True,
            reasoning=True,
            json_output=True,
            exact_token_count=True,
            completion=False,
        )

    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self._token}", "content-type": "application/json"}

    def _url(self, model: str, action: str) -> str:
        return codec.model_url(self.base_url, self.project, self.location, model, action)

    async def chat_stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        if codec.is_claude(request.model):
            headers = self._headers()
            betas = anthropic.beta_header(
                anthropic.AnthropicOptions(
                    prompt_caching=False,
                    fine_grained_tool_streaming=False,
                    extra_betas=self.claude.extra_betas,
                ),
                request.model,
            )
            if betas:
                headers["anthropic-beta"] = betas
            url = self._url(request.model, "streamRawPredict")
            events = self._upstream.sse(url, headers, codec.claude_body(request, self.claude))
            decoded = anthropic_adapter.decode_messages(events, self.name)
        else:
            url = self._url(request.model, "streamGenerateContent")
            body = gemini.build_generate_body(request)
            events = self._upstream.sse(url, self._headers(), body, params={"alt": "sse"})
            decoded = decode_generate(events, self.name)
        try:
            async for event in decoded:
                yield event
        finally:
            await events.aclose()

    async def count_tokens(self, request: CountTokensRequest) -> TokenCount:
        if codec.is_claude(request.model):
            return await super().count_tokens(request)  # documented local estimate
        # Vertex's CountTokensRequest takes contents, systemInstruction and tools side by side.
        wrapped = gemini.build_count_body(request, "")
        body = wrapped.get("generateContentRequest") or wrapped
        body.pop("model", None)
        answer = await self._upstream.call_json(
            "POST", self._url(request.model, "countTokens"), self._headers(), body
        )
        return TokenCount(
            input_tokens=int(answer.get("totalTokens") or 0), estimated=False, model=request.model
        )


from_config = VertexProvider.from_config
