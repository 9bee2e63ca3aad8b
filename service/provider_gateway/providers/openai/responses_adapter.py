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
from provider_gateway.providers.upstream_io import decode_json_event, oversized_event
from provider_gateway.wire.sse import SseDecoder, SseError


@dataclass(slots=True, frozen=True)
class ResponsesApi:
    provider: str
    upstream: Upstream
    path: str  # "/responses" or Azure's "/openai/v1/responses"
    store: bool

    def _body(self, request: ChatRequest, model: str, *, stream: bool) -> dict[str, Any]:
        return responses_body(request, stream=stream, store=self.store, model=model, provider=self.provider)

    async def chat(self, request: ChatRequest, model: str) -> ChatResponse:
        body = self._body(request, model, stream=False)
        answer = await self.upstream.request_json("POST", self.path, json=body, model=request.model)
        return ResponsesStreamDecoder(self.provider).response(answer)

    async def stream(self, request: ChatRequest, model: str) -> AsyncIterator[StreamEvent]:
        body = self._body(request, model, stream=True)
        decoder = ResponsesStreamDecoder(self.provider)
        sse = SseDecoder()
        try:
            async with self.upstream.stream("POST", self.path, json=body, model=request.model) as chunks:
                async for chunk in chunks:
                    for event in sse.feed(chunk):
                        for domain_event in decoder.feed(decode_json_event(event.data, self.provider)):
                            yield domain_event
                    if decoder.finished:
                        return
                for event in sse.close():  # a last event without its blank line
                    for domain_event in decoder.feed(decode_json_event(event.data, self.provider)):
                        yield domain_event
        except SseError as error:
            raise oversized_event(error, self.provider) from None
        if not decoder.finished:
            raise GatewayError(
                ErrorKind.UNAVAILABLE,
                f"stream from {self.provider} ended before response.completed",
                provider=self.provider,
                retryable=True,
            )
