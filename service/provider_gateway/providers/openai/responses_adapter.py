"""The Responses API calls of an OpenAI or Azure OpenAI provider (`api = "responses"`): I/O only.

OpenAI: `POST {base_url}/responses`. Azure OpenAI's v1 API: `POST {endpoint}/openai/v1/responses`,
no `api-version`, the deployment name as `model` (../shared/docs/wire-reference-2.md section 2.4).
The codec is `responses.py` (requests) and `responses_stream.py` (answers).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from provider_gateway.domain import ChatRequest, ChatResponse, StreamEvent
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.http import Upstream
from provider_gateway.providers.openai.responses import responses_body
from provider_gateway.providers.openai.responses_stream import ResponsesStreamDecoder
from provider_gateway.providers.upstream_io import SseEvent, decode_json_event, sse_reads


@dataclass(slots=True, frozen=True)
class ResponsesApi:
    provider: str
    upstream: Upstream
    path: str  # "/responses" or Azure's "/openai/v1/responses"
    store: bool
    merge_reads: bool = True  # the deltas of one read go on merged (providers/relay.py)

    def _body(self, request: ChatRequest, model: str, *, stream: bool) -> dict[str, Any]:
        return responses_body(request, stream=stream, store=self.store, model=model, provider=self.provider)

    async def chat(self, request: ChatRequest, model: str) -> ChatResponse:
        body = self._body(request, model, stream=False)
        answer = await self.upstream.request_json("POST", self.path, json=body, model=request.model)
        return ResponsesStreamDecoder(self.provider, request.logprobs is not None).response(answer)

    async def stream(self, request: ChatRequest, model: str) -> AsyncIterator[StreamEvent]:
        body = self._body(request, model, stream=True)
        decoder = ResponsesStreamDecoder(self.provider, request.logprobs is not None)

        def step(event: SseEvent) -> list[StreamEvent]:
            return decoder.feed(decode_json_event(event.data, self.provider))

        async with sse_reads(self.upstream, self.path, body, model=request.model) as reads:
            # response.completed (or failed, incomplete) ends it: the rest of the body is not awaited.
            async for event in reads.relay(step, merge=self.merge_reads, finished=lambda: decoder.finished):
                yield event
        if not decoder.finished:
            raise GatewayError(
                ErrorKind.UNAVAILABLE,
                f"stream from {self.provider} ended before response.completed",
                provider=self.provider,
                retryable=True,
            )
