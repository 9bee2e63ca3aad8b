"""The grpc.aio servicer: converts at the edge, delegates to the router, maps errors to statuses."""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

from provider_gateway.config import ServerConfig
from provider_gateway.domain import Finish, GatewayEvent
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.http import deadline as upstream_deadline
from provider_gateway.observability.request import CURRENT
from provider_gateway.routing.consumption import Consumed, watching
from provider_gateway.routing.router import Router
from provider_gateway.routing.timing import RequestClock
from provider_gateway.server import convert, scored_completion, validate
from provider_gateway.server.auth import current_principal
from provider_gateway.server.coalesce import ReadAhead, Relay
from provider_gateway.server.event_batches import batched
from provider_gateway.server.finish_templates import FinishTemplates
from provider_gateway.server.health import ProviderHealthBook
from provider_gateway.server.issuers import AnswerIssuers
from provider_gateway.server.last_message import mark_last
from provider_gateway.server.split_deltas import delta_bytes, within
from provider_gateway.server.well_formed import mended
from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc
from provider_gateway.wire.json_text import well_formed_text

log = logging.getLogger("provider_gateway.rpc")
T = TypeVar("T")
# gRFC A6's server pushback. Only "-1" (do not retry) is sent: gRPC's own retryPolicy would retry
# after exactly a positive value, past its maxBackoff and the call's deadline (grpc 1.85 then ends
# the call DEADLINE_EXCEEDED, hiding this status; "0" waits out the deadline too), and the gateway
# gives a delay when the wait is too long for it to wait. So waits stay in RetryInfo and
# retry-after-ms, which clients weigh against their deadline (docs/clients.md).
PUSHBACK = "grpc-retry-pushback-ms"
DO_NOT_RETRY = ((PUSHBACK, "-1"),)


def _status_details(
    exc: GatewayError, details: Sequence[Message] = ()
) -> tuple[tuple[str, str | bytes], ...]:
    """Trailing metadata that carries a google.rpc.RetryInfo and `details` (e.g. a QuotaFailure),
    which gRPC clients read as the status's details."""
    waits = exc.retry_after is not None and math.isfinite(exc.retry_after)
    if not waits and not details:
        return ()
    status = status_pb2.Status(code=getattr(code_pb2, exc.kind.value), message=well_formed_text(str(exc)))
    trailers: tuple[tuple[str, str | bytes], ...] = ()
    if exc.retry_after is not None and waits:  # first: clients read details[0] as the retry delay
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(exc.retry_after * 1000))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        trailers = (("retry-after-ms", str(int(exc.retry_after * 1000))),)
    for detail in details:
        status.details.add().Pack(detail)
    return (("grpc-status-details-bin", status.SerializeToString()), *trailers)


def _consumed_trailers(consumed: list[Consumed]) -> tuple[tuple[str, str], ...]:
    """What a failed request consumed where its providers did not say it all, for the client:
    `usage-source` "partial" when every figure started from what the provider reported before the
    cut, else "estimated" (and `usage-estimated` true)."""
    if not consumed:
        return ()
    estimated = any(c.source == "estimated" for c in consumed)
    trailers = [
        ("usage-input-tokens", str(sum(c.usage.input_tokens for c in consumed))),
        ("usage-output-tokens", str(sum(c.usage.output_tokens for c in consumed))),
        ("usage-estimated", "true" if estimated else "false"),
        ("usage-source", "estimated" if estimated else "partial"),
    ]
    if all(c.cost.known for c in consumed):
        trailers.append(("cost-usd-micros", str(sum(c.cost.amount_micros for c in consumed))))
    return tuple(trailers)


async def abort(
    context: grpc.aio.ServicerContext[Any, Any],
    exc: Exception,
    consumed: list[Consumed] | None = None,
    details: Sequence[Message] = (),
) -> NoReturn:
    """End the call with the status that matches `exc`; never leak internals of unknown errors.
    `consumed`: estimates of what the request used before it failed, sent as trailing metadata.
    `details`: google.rpc messages for the status's details besides RetryInfo; by default those
    the error carries (a budget refusal's QuotaFailure, wherever it was raised)."""
    if isinstance(exc, GatewayError):
        code = grpc.StatusCode[exc.kind.value]
        if exc.detail:  # the upstream's URL and the library's exception: for operators, not clients
            log.warning("%s: %s (%s)", exc.kind.value, exc, exc.detail)
        details = details or getattr(exc, "details", ())
        trailers = _status_details(exc, details) + _consumed_trailers(consumed or [])
        if exc.retry_nowhere:  # the upstream said no retry helps, and no deployment is left
            trailers += DO_NOT_RETRY
        # Upstream text may hold half of a surrogate pair, which grpc cannot send: no status at all.
        await context.abort(code, well_formed_text(str(exc)), trailing_metadata=trailers)
    incident = uuid.uuid4().hex[:12]
    log.exception("internal error, incident %s", incident)
    await context.abort(
        grpc.StatusCode.INTERNAL, f"internal error (incident {incident}); see the gateway log"
    )


def _clock(context: grpc.aio.ServicerContext[Any, Any]) -> RequestClock:
    """The request's clock, carrying the client's deadline so retries never outlive it."""
    remaining = context.time_remaining()
    upstream_deadline.set_deadline(remaining)  # caps upstream HTTP timeouts too
    _name_the_key()
    return RequestClock(deadline=None if remaining is None else time.monotonic() + remaining)


def _name_the_key() -> None:
    """Tell the request's telemetry which configured key calls (its name, never the key): the cost
    metric and the request log are labelled by it."""
    state, principal = CURRENT.get(), current_principal.get()
    if state is not None and principal is not None:
        state.key = principal.name


def _tag_the_request(tags: dict[str, str]) -> None:
    """Give the request's telemetry its tags (`metadata`), checked and bounded by now: the access log
    and the server span carry them (never a metric label)."""
    state = CURRENT.get()
    if state is not None:
        state.tags = tags


type _Events = Callable[[Any, Any, RequestClock], AsyncGenerator[GatewayEvent, None]]


def _streaming(
    name: str, events_of: _Events
) -> Callable[[Any, Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[pb.StreamEvent]]:
    """The streaming method `name`: `events_of(service, request, clock)` checks and converts the
    request and opens the router's stream, whose events the method sends as messages. The relay's
    loop runs in the method's own frame, with no generator between it and the relay (coalesce.Relay)."""

    async def stream(
        self: ProviderService, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.StreamEvent]:
        clock = _clock(context)
        consumed: list[Consumed] = []
        try:
            with watching(consumed.append):
                events = events_of(self, request, clock)
                relay = self.relay(events)
                issuers = self.issuers
                messages = convert.StreamMessages(
                    request.stream_options,
                    self.finishes,
                    lambda: issuers.of_deployment(relay.answering()),
                )
                bound = self.delta_bytes
                batching = request.stream_options.batch_events
                try:
                    while not relay.ended:
                        if not relay.items:
                            await relay.arrival()
                        taken = within(relay.take(), bound)  # each message within the send limit
                        if batching and len(taken) > 1:  # events in hand together, as one message
                            ready, error = batched(messages, taken, bound)
                            if error is None and type(taken[-1]) is Finish:
                                mark_last(ready[-1])  # sent with the status (last_message.py)
                            for sent in ready:
                                yield sent
                            if error is not None:  # after the events before it, as unbatched
                                raise error
                            continue
                        for event in taken:
                            if (message := messages.to_proto(event)) is not None:
                                if type(event) is Finish:  # sent with the status (last_message.py)
                                    mark_last(message)
                                yield message
                    relay.end()
                finally:
                    await relay.close()  # a cancelled call closes the upstream at once
        except Exception as exc:
            await abort(context, exc, consumed)

    # Named as the method it is, for tracebacks, logs and profiles.
    stream.__name__, stream.__qualname__ = name, f"ProviderService.{name}"
    return stream


class ProviderService(pb_grpc.ProviderServiceServicer):
    def __init__(self, router: Router, health: ProviderHealthBook) -> None:
        self.router = router
        self.health = health
        self.issuers = AnswerIssuers(router)  # who issued an answer's reasoning state
        self.limits = validate.DEFAULT_LIMITS  # the server sets [limits] from the config
        self.finishes = FinishTemplates()  # answers' finishes, from kept templates
        # Coalescing relay of stream events; the server sets [server] coalesce_deltas from the config.
        self.relay: Callable[[AsyncGenerator[GatewayEvent, None]], Relay] = ReadAhead
        # Text one stream delta may carry; the server sets it from [server] max_message_bytes.
        self.delta_bytes = delta_bytes(ServerConfig().max_message_bytes)
        # GetSpend's answer for the calling key; the server sets it when [auth] is configured.
        self.spend: Callable[[], Awaitable[pb.GetSpendResponse]] | None = None

    async def _unary(
        self, context: grpc.aio.ServicerContext[Any, Any], work: Callable[[], Awaitable[T]]
    ) -> T:
        upstream_deadline.set_deadline(context.time_remaining())  # caps upstream HTTP timeouts
        consumed: list[Consumed] = []
        try:
            with watching(consumed.append):
                return await work()
        except Exception as exc:  # every failure becomes a status; the server never crashes
            await abort(context, exc, consumed)

    # Chat and Complete, every call's path, do `_unary`'s work in their own body: no closure, no
    # coroutine between them and the router, and the deadline set once (by `_clock`).
    async def Chat(
        self, request: pb.ChatRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ChatResponse:
        clock = _clock(context)
        consumed: list[Consumed] = []
        try:
            with watching(consumed.append):
                given = convert.set_fields(request)  # listed once, for the checks and the conversion
                checked = validate.chat(request, self.limits, given)  # its messages, converted
                domain_request = convert.chat_request_from_proto(request, given, checked)
                if domain_request.metadata:
                    _tag_the_request(domain_request.metadata)
                response, finish = await self.router.chat(domain_request, clock)
                issuer = (
                    self.issuers.of_provider(finish.provider, finish.model)
                    if response.reasoning_parts
                    else ""
                )
                return convert.chat_response_to_proto(response, finish, self.finishes, issuer)
        except Exception as exc:
            await abort(context, exc, consumed)

    def _chat_events(
        self, request: pb.ChatRequest, clock: RequestClock
    ) -> AsyncGenerator[GatewayEvent, None]:
        given = convert.set_fields(request)  # listed once, for the checks and the conversion
        checked = validate.chat(request, self.limits, given)  # its messages, converted
        domain_request = convert.chat_request_from_proto(request, given, checked)
        if domain_request.metadata:
            _tag_the_request(domain_request.metadata)
        return self.router.chat_stream(domain_request, clock)

    ChatStream = _streaming("ChatStream", _chat_events)

    async def Complete(
        self, request: pb.CompleteRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CompleteResponse:
        clock = _clock(context)
        consumed: list[Consumed] = []
        try:
            with watching(consumed.append):
                given = convert.set_fields(request)
                domain_request = convert.completion_request_from_proto(
                    validate.complete(request, self.limits, given), given
                )
                if domain_request.metadata:
                    _tag_the_request(domain_request.metadata)
                if "logprobs" in given and (scored := convert.logprobs_options(given)) is not None:
                    chat = domain_request.as_chat(scored)
                    chat_response, finish = await self.router.chat(chat, clock)
                    return scored_completion.answer(chat_response, finish, self.finishes)
                response, finish = await self.router.complete(domain_request, clock)
                return convert.completion_response_to_proto(response, finish, self.finishes)
        except Exception as exc:
            await abort(context, exc, consumed)

    def _complete_events(
        self, request: pb.CompleteRequest, clock: RequestClock
    ) -> AsyncGenerator[GatewayEvent, None]:
        given = convert.set_fields(request)
        domain_request = convert.completion_request_from_proto(
            validate.complete(request, self.limits, given), given
        )
        if domain_request.metadata:
            _tag_the_request(domain_request.metadata)
        if "logprobs" in given and (scored := convert.logprobs_options(given)) is not None:
            return self.router.chat_stream(domain_request.as_chat(scored), clock)
        return self.router.complete_stream(domain_request, clock)

    CompleteStream = _streaming("CompleteStream", _complete_events)

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListModelsResponse:
        async def work() -> pb.ListModelsResponse:
            models = await self.router.list_models(validate.list_models(request).provider)
            aliases = self.router.resolver.aliases_for
            return pb.ListModelsResponse(
                models=[convert.model_to_proto(p, m, aliases(p, m.id)) for p, m in models]
            )

        return await self._unary(context, work)

    async def CountTokens(
        self, request: pb.CountTokensRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CountTokensResponse:
        async def work() -> pb.CountTokensResponse:
            route, count = await self.router.count_tokens(
                convert.count_request_from_proto(validate.count(request, self.limits))
            )
            return pb.CountTokensResponse(
                input_tokens=count.input_tokens,
                estimated=count.estimated,
                provider=route.provider,
                model=well_formed_text(count.model) or route.model,
            )

        return await self._unary(context, work)

    async def Embed(
        self, request: pb.EmbedRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.EmbedResponse:
        async def work() -> pb.EmbedResponse:
            route, result = await self.router.embed(
                convert.embed_request_from_proto(validate.embed(request, self.limits))
            )
            if len(result.vectors) != len(request.inputs):
                raise GatewayError(
                    ErrorKind.INTERNAL,
                    f"provider returned {len(result.vectors)} vectors for {len(request.inputs)} inputs",
                )
            try:
                usage = convert.usage_to_proto(result.usage)
            except UnicodeEncodeError:  # half of a surrogate pair in the raw usage (server/well_formed.py)
                usage = convert.usage_to_proto(mended(result.usage))
            return pb.EmbedResponse(
                embeddings=[pb.Embedding(index=i, values=v) for i, v in enumerate(result.vectors)],
                usage=usage,
                provider=route.provider,
                model=well_formed_text(result.model) or route.model,
            )

        return await self._unary(context, work)

    async def ListProviders(
        self, request: pb.ListProvidersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListProvidersResponse:
        providers = []
        shown = set(self.router.resolver.listed_providers())  # behind [auth], the key's own
        for provider in self.router.registry:
            if provider.name not in shown:
                continue
            health = self.health.get(provider.name)
            providers.append(
                pb.ProviderInfo(
                    name=provider.name,
                    kind=provider.kind,
                    health=health.state,  # type: ignore[arg-type]
                    health_message=health.message,
                    capabilities=convert.capabilities_to_proto(self.router.capabilities(provider)),
                    breaker_state=self.router.breaker_state(provider.name),
                )
            )
        default = self.router.registry.default
        return pb.ListProvidersResponse(
            providers=providers, default_provider=default if default in shown else ""
        )

    async def GetSpend(
        self, request: pb.GetSpendRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetSpendResponse:
        spend = self.spend
        if spend is None:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "this gateway has no [auth]: there is no key, so no spend to report",
            )
        return await self._unary(context, spend)
