"""What the Anthropic, Gemini/Vertex and Cohere adapters add on top of the shared HTTP layer:
SSE event streams, vendor refinements of the generic error mapping, and a provider base class.

Codecs stay pure; everything that touches the network goes through `provider_gateway.http`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any

from provider_gateway.config import Section
from provider_gateway.domain import CompletionRequest, CompletionResponse, HealthStatus, StreamEvent
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.http import ErrorPolicy, Timeouts, Upstream, UpstreamResponse
from provider_gateway.http.client import TIMEOUT_KEYS
from provider_gateway.http.errors import parse_body, vendor_said
from provider_gateway.providers.base import BaseProvider, completion_of
from provider_gateway.providers.context import ProviderContext
from provider_gateway.providers.gemini import codec as gemini
from provider_gateway.providers.http_common import probe
from provider_gateway.providers.relay import never, relay_reads
from provider_gateway.wire.sse import SseDecoder, SseError, SseEvent

__all__ = [
    "TIMEOUT_KEYS",
    "HttpProvider",
    "SseEvent",
    "SseReads",
    "VendorErrors",
    "decode_json_event",
    "sse_reads",
]


class VendorErrors(ErrorPolicy):
    """The generic status mapping, refined by what Anthropic and Google bodies say."""

    def from_response(
        self, provider: str, response: UpstreamResponse, raw: bytes, model: str, secrets: tuple[str, ...]
    ) -> GatewayError:
        error = super().from_response(provider, response, raw, model, secrets)
        body = parse_body(raw)
        detail = body.get("error") if isinstance(body, Mapping) else None
        if not isinstance(detail, Mapping):
            return error
        if body.get("type") == "error" and detail.get("type"):  # Anthropic: name the error type
            _reword(error, f"{error.message} [{detail['type']}]")
        reason = gemini.error_info_reason(body)
        if reason in gemini.KEY_REASONS:  # AI Studio's bad key: 400 INVALID_ARGUMENT, reason in ErrorInfo
            error.kind, error.retryable = ErrorKind.UNAUTHENTICATED, False
            said = vendor_said(body, raw, response.status_code, secrets)
            _reword(error, f"check the provider key for {provider}: {said} [{reason}]")  # as a 401 reads
        elif advice := gemini.service_disabled_advice(body, secrets) or gemini.iam_denied_advice(
            body, secrets
        ):
            # the API is off in the project, or the account lacks a role: not the key's fault
            said = vendor_said(body, raw, response.status_code, secrets)
            _reword(error, f"{advice}: {said} [{reason}]")
        return error


def _reword(error: GatewayError, message: str) -> None:
    error.message = message
    error.args = (message,)


class SseReads:
    """An SSE answer (`sse_reads`): entered, the body's chunks and the decoder that frames them.
    A class, not an `asynccontextmanager` around an async generator, whose creation, closing and
    finalizing cost every stream (benchmarks/RESULTS.md, issue 15)."""

    __slots__ = ("_provider", "_stream", "chunks", "decoder")

    def __init__(self, stream: AbstractAsyncContextManager[AsyncIterable[bytes]], provider: str) -> None:
        self._stream = stream
        self._provider = provider
        self.decoder = SseDecoder()

    async def __aenter__(self) -> SseReads:
        self.chunks = await self._stream.__aenter__()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self._stream.__aexit__(kind, error, trace)  # the response closed on every exit
        if isinstance(error, SseError):
            raise oversized_event(error, self._provider) from None

    def relay(
        self,
        step: Callable[[SseEvent], Iterable[StreamEvent] | str],
        *,
        merge: bool,
        finished: Callable[[], bool] = never,
    ) -> AsyncGenerator[StreamEvent, None]:
        """`relay_reads` of the events: those each read completes, as soon as it completes them,
        and at the body's end the last one if its blank line never came (`SseDecoder.close`)."""
        decoder = self.decoder
        return relay_reads(
            self.chunks, decoder.feed, step, merge=merge, finished=finished, flush=decoder.close
        )


def sse_reads(
    upstream: Upstream, path: str, body: Any, *, params: Mapping[str, str] | None = None, model: str = ""
) -> SseReads:
    """`async with sse_reads(...) as reads`: POST `body` and read the answer as SSE events
    (`SseReads.relay`).

    The upstream response is closed when the block exits for any reason, so a client cancel or an
    abandoned stream closes the upstream connection. An event past the decoder's bound fails the
    attempt (`oversized_event`).
    """
    return SseReads(upstream.stream("POST", path, json=body, params=params, model=model), upstream.provider)


def oversized_event(error: SseError, provider: str) -> GatewayError:
    """A broken upstream (or proxy) sending one endless event: fail this attempt, retryably."""
    return GatewayError(
        ErrorKind.UNAVAILABLE,
        f"{provider} sent a malformed stream: {error}",
        provider=provider,
        retryable=True,
    )


def decode_json_event(data: str, provider: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise GatewayError(
            ErrorKind.UNAVAILABLE, f"malformed upstream event: not JSON: {data[:80]!r}", provider=provider
        ) from None


class HttpProvider(BaseProvider):
    """A provider that talks to one vendor API through the server's shared HTTP pool."""

    def __init__(
        self,
        name: str,
        context: ProviderContext,
        base_url: str,
        options: Section,
        *,
        headers: Mapping[str, str],
        secret: str,
    ) -> None:
        super().__init__(name)
        self.base_url = base_url.rstrip("/")
        self.merge_reads = context.merge_reads  # see relay_reads
        self._host = context.http.host(self.base_url)
        self._timeouts = Timeouts.from_section(options)
        self._secret = secret
        self._headers = dict(headers)
        self._upstreams: dict[tuple[tuple[str, str], ...], Upstream] = {}

    health_path = ""  # a cheap GET that proves the key and the API work ("" = no probe)

    async def health_check(self) -> HealthStatus:
        if not self.health_path:
            return await super().health_check()
        return await probe(self.upstream(), self.health_path)

    def complete_stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """Vendors without a completions endpoint answer `complete` as a one-message chat."""
        return self.chat_stream(request.as_chat())

    async def complete(self, request: CompletionRequest) -> CompletionResponse:
        """Likewise unary: through `chat`, which is one unary upstream call where the vendor has one."""
        return completion_of(await self.chat(request.as_chat()))

    def set_credentials(self, headers: Mapping[str, str], secret: str) -> None:
        """New credential headers (a rotated token) for every request from now on."""
        self._headers.update(headers)
        self._secret = secret
        self._upstreams.clear()  # they hold the old headers; requests in flight keep theirs

    def upstream(self, extra_headers: Mapping[str, str] | None = None) -> Upstream:
        """The upstream with this provider's headers plus per-request ones (e.g. anthropic-beta).

        Upstreams are cheap views of the shared host client; one is kept per header set.
        """
        key = tuple(sorted((extra_headers or {}).items()))
        if key not in self._upstreams:
            self._upstreams[key] = Upstream(
                self._host,
                self.base_url,
                self.name,
                headers={**self._headers, **dict(key)},
                timeouts=self._timeouts,
                secrets=(self._secret,),
                errors=VendorErrors(),
            )
        return self._upstreams[key]
