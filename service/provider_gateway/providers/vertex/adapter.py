"""The Vertex AI adapter: Gemini models (`publishers/google`) and Claude (`publishers/anthropic`).

Which publisher serves a request follows from the model id (`claude-*` is Anthropic's). Both use an
OAuth bearer token; the Gemini and Anthropic codecs do the wire work.

Configuration (`[providers.<name>]`, kind "vertex"):
  project (required), location (default us-central1), base_url (default the regional endpoint),
  access_token_env (default VERTEX_ACCESS_TOKEN) or access_token_file (a token minted by e.g.
  `gcloud auth print-access-token`). Access tokens expire within the hour: with access_token_file the
  adapter notices when the file changes (checked at most every TOKEN_RECHECK_S) and uses the new
  token from the next request, so a refresher that rewrites the file needs no restart; an env var
  is read once at start. prompt_caching (true),
  max_tokens (Claude's default max_tokens, 8192), betas (anthropic-beta values for Claude),
  connect_timeout_s, first_byte_timeout_s, idle_timeout_s.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from provider_gateway.config import Section, forget_secret, register_secret
from provider_gateway.domain import (
    Capabilities,
    ChatRequest,
    ChatResponse,
    CountTokensRequest,
    EmbedRequest,
    EmbedResult,
    StreamEvent,
    TokenCount,
    Usage,
)
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.http import Upstream
from provider_gateway.providers.anthropic import codec as anthropic
from provider_gateway.providers.anthropic.adapter import decode_messages, options_from
from provider_gateway.providers.anthropic.forced_output import output_tool_name
from provider_gateway.providers.base import accumulate, all_or_first_error
from provider_gateway.providers.context import ProviderContext
from provider_gateway.providers.gemini import codec as gemini
from provider_gateway.providers.gemini.adapter import SSE, decode_generate
from provider_gateway.providers.http_common import path_segment
from provider_gateway.providers.shapes import count_at
from provider_gateway.providers.upstream_io import TIMEOUT_KEYS, HttpProvider, sse_reads
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


TOKEN_RECHECK_S = 5.0


# Declared once: the router's honour check asks on every call.
CAPABILITIES = Capabilities(
    max_tokens=65536,
    tools=True,
    vision=True,
    reasoning=True,
    json_output=True,
    schema_by_forced_tool=True,
    exact_token_count=True,
    completion=True,
    embeddings=True,
)


class TokenFile:
    """The access token in a file a refresher rewrites: re-read when the file's mtime changes."""

    def __init__(self, path: str, token: str, recheck_s: float) -> None:
        self.path = Path(path)
        self.token = token
        self.recheck_s = recheck_s
        self._mtime = self._stat()
        self._checked = time.monotonic()
        self._read_token = ""  # the last token read from the file (not the configured one)

    def _stat(self) -> int:
        try:
            return os.stat(self.path).st_mtime_ns
        except OSError:
            return -1

    def changed(self) -> bool:
        """True when a new, non-empty token was read (a missing or empty file keeps the old one)."""
        now = time.monotonic()
        if now - self._checked < self.recheck_s:
            return False
        self._checked = now
        mtime = self._stat()
        if mtime == self._mtime:
            return False
        self._mtime = mtime
        try:
            token = self.path.read_text().strip()  # a few bytes from a local file, once per rotation
        except OSError:
            return False
        if not token or token == self.token:
            return False
        replaced, self.token = self._read_token, register_secret(token)
        if replaced:  # a token this file gave before, now expired: keep the redaction set bounded
            forget_secret(replaced)
        self._read_token = token
        return True


class VertexProvider(HttpProvider):
    kind = "vertex"

    def __init__(self, name: str, options: Section, context: ProviderContext) -> None:
        options.reject_unknown(KEYS)
        self.project = options.string("project")
        if not self.project:
            raise options.error("project", "required: the Google Cloud project id")
        self.location = options.string("location", "us-central1")
        token = options.secret("access_token", "VERTEX_ACCESS_TOKEN", required=True)
        token_file = options.string("access_token_file")
        self._token_file = TokenFile(token_file, token, TOKEN_RECHECK_S) if token_file else None
        base_url = options.string("base_url", codec.default_base_url(self.location))
        super().__init__(
            name, context, base_url, options, headers={"authorization": f"Bearer {token}"}, secret=token
        )
        # Prompt caching is generally available on Vertex: only configured betas are sent.
        self.claude = options_from(options, tool_streaming=False)
        self._claude_betas = ",".join(self.claude.extra_betas)

    @classmethod
    def from_config(cls, name: str, options: Section, context: ProviderContext) -> VertexProvider:
        return cls(name, options, context)

    def capabilities(self) -> Capabilities:
        return CAPABILITIES

    def upstream(self, extra_headers: Mapping[str, str] | None = None) -> Upstream:
        if self._token_file is not None and self._token_file.changed():
            self.set_credentials(
                {"authorization": f"Bearer {self._token_file.token}"}, self._token_file.token
            )
        return super().upstream(extra_headers)

    async def embed(self, request: EmbedRequest) -> EmbedResult:
        if codec.is_claude(request.model):
            return await super().embed(request)  # Claude has no embeddings
        path = self._path(request.model, "predict")
        upstream = self.upstream()
        bodies = codec.embed_bodies(request.model, list(request.inputs), request.dimensions)
        answers = await all_or_first_error(
            upstream.request_json("POST", path, json=body, model=request.model) for body in bodies
        )
        vectors: list[list[float]] = []
        tokens = 0
        for answer in answers:
            got, counted = codec.parse_predictions(answer, provider=self.name)
            vectors += got
            tokens += counted
        if len(vectors) != len(request.inputs):
            raise GatewayError(
                ErrorKind.UNAVAILABLE, "embedding count does not match the inputs", provider=self.name
            )
        return EmbedResult(vectors, Usage(input_tokens=tokens), model=request.model)

    def _path(self, model: str, action: str) -> str:
        segment = path_segment(model, "model", self.name)
        return codec.model_url("", self.project, self.location, segment, action)

    def _claude_upstream(self) -> Upstream:
        return self.upstream({"anthropic-beta": self._claude_betas} if self._claude_betas else None)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """One unary call: `rawPredict` (a whole Message) or `generateContent`, read by the stream's decoder."""
        model = request.model
        if codec.is_claude(model) and output_tool_name(request):  # as the Claude API adapter does
            return await accumulate(self.chat_stream(request))
        if codec.is_claude(model):
            body = codec.claude_body(request, self.claude, stream=False)
            path = self._path(model, "rawPredict")
            answer = await self._claude_upstream().request_json("POST", path, json=body, model=model)
            return anthropic.MessagesStreamDecoder(provider=self.name).response(answer)
        path = self._path(model, "generateContent")
        body = gemini.build_generate_body(request)
        answer = await self.upstream().request_json("POST", path, json=body, model=model)
        decoder = gemini.GenerateStreamDecoder(provider=self.name, logprobs=request.logprobs is not None)
        return decoder.response(answer)

    async def chat_stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        model = request.model
        if codec.is_claude(model):
            upstream = self._claude_upstream()
            body = codec.claude_body(request, self.claude)
            async with sse_reads(upstream, self._path(model, "streamRawPredict"), body, model=model) as reads:
                async for event in decode_messages(reads, self.name, request, merge=self.merge_reads):
                    yield event
            return
        body = gemini.build_generate_body(request)
        path = self._path(model, "streamGenerateContent")
        scored = request.logprobs is not None
        async with sse_reads(self.upstream(), path, body, params=SSE, model=model) as reads:
            async for event in decode_generate(reads, self.name, merge=self.merge_reads, logprobs=scored):
                yield event

    async def count_tokens(self, request: CountTokensRequest) -> TokenCount:
        if codec.is_claude(request.model):
            return await super().count_tokens(request)  # documented local estimate
        # Vertex's CountTokensRequest takes contents, systemInstruction and tools side by side.
        wrapped = gemini.build_count_body(request, "")
        body = wrapped.get("generateContentRequest") or wrapped
        body.pop("model", None)
        path = self._path(request.model, "countTokens")
        answer = await self.upstream().request_json("POST", path, json=body, model=request.model)
        return TokenCount(
            input_tokens=count_at(answer, "totalTokens", provider=self.name),
            estimated=False,
            model=request.model,
        )


from_config = VertexProvider.from_config
