"""One attempt: one try of one deployment, timed, bounded by the stall limits, and judged.

A stream's attempts (`Attempts.run`, walking the retry loop's `Failover`) yield the provider's
events, an end for every tool call they started and never ended, then a Finish; a unary call's
(`Attempts.call`) awaits the provider's whole answer once and returns it with the Finish. Both share one bookkeeping (`_Try`): a failure is judged
for the deployment's breaker and limiter (overloaded, broken, or a bad request that says nothing
about the deployment), and every attempt is timed, costed and recorded alike.
(`attempt.py` holds the context variable that names the attempt in progress to provider wrappers,
and `ReportedStream`: a wrapper's stream the attempt reads at its source, telling the wrapper's
record what it saw rather than reading every event through the wrapper's generator.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import operator
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from types import AsyncGeneratorType
from typing import Any, NoReturn, Protocol, TypeVar

from provider_gateway.domain import (
    CONTENT_EVENTS,
    Attempt,
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    Cost,
    Finish,
    GatewayEvent,
    ImagePart,
    ProviderFinish,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
    UsageEvent,
)
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.http.rate_limits import RateLimitInfo
from provider_gateway.pricing import PriceTable, total
from provider_gateway.providers.base import Provider, has_content, relayed_answer
from provider_gateway.providers.open_calls import OpenCalls
from provider_gateway.routing.attempt import AttemptInfo, AttemptReport, AttemptScope, ReportedStream
from provider_gateway.routing.consumption import (
    NOTHING_CONSUMED,
    Consumed,
    HeardUsage,
    reckon_usage,
    refused_before_work,
    report,
)
from provider_gateway.routing.deployments import Deployment
from provider_gateway.routing.retry_budget import RetryBudget
from provider_gateway.routing.settings import RoutingSettings
from provider_gateway.routing.shared_state import SharedState
from provider_gateway.routing.stall import StallWatch, Watchdog
from provider_gateway.routing.timing import RequestClock, us
from provider_gateway.routing.verdicts import breaker_refused, judge

Req = TypeVar("Req", ChatRequest, CompletionRequest)
OpenStream = Callable[[Provider, Req], AsyncIterator[StreamEvent]]
# A unary call of a provider: its whole answer (a completion's in a ChatResponse).
Answer = Callable[[Provider, Req], Awaitable[ChatResponse]]


class Failover(Protocol):
    """A request's way through its plan, as the retry loop keeps it (routing/retry.py): what to
    await before the first attempt (None: nothing), the next deployment to try (`next_now` when
    that takes no wait, else `next`: waiting, bounded, for one; None once every attempt is spent),
    what a retryable failure does to its deployment, and the error once none is left."""

    attempts: list[Attempt]  # the attempts so far, each recorded as it ends
    probing: Deployment | None  # the deployment last handed out as an early probe (else None)
    deadline: float  # the request's, on the router's clock
    last_error: GatewayError | None  # the last attempt's failure, the error if no retry may start

    @property
    def settings(self) -> RoutingSettings: ...  # the plan's: its retry budget

    def ready(self) -> Awaitable[None] | None: ...

    def next_now(self) -> Deployment | None: ...

    def next(self) -> Awaitable[Deployment | None]: ...

    def retry_later(self, deployment: Deployment, exc: GatewayError) -> None: ...

    def exhausted(self) -> GatewayError: ...


class Attempts:
    """Runs attempts. `released` is called whenever an attempt gives back its concurrency slot,
    so that requests queued for capacity look again; `background` runs fire-and-forget writes;
    `budget` counts the requests and retries in flight (routing/retry_budget.py)."""

    def __init__(
        self,
        clock: Callable[[], float],
        store: SharedState,
        released: Callable[[], None],
        background: Callable[[Coroutine[Any, Any, None]], None],
        prices: PriceTable,
        budget: RetryBudget,
    ) -> None:
        self.budget = budget
        self.clock = clock
        self.store = store
        self.released = released
        self.background = background
        self.prices = prices
        self.watchdog = Watchdog()  # the one timer of every attempt's stall limits

    async def run(
        self,
        begin: Callable[[], Failover],
        request: Req,
        clock: RequestClock,
        open_stream: OpenStream[Req],
    ) -> AsyncGenerator[GatewayEvent, None]:
        """A stream's attempts, one deployment after another as `begin`'s failover hands them out
        (the retry loop's plan, holds and budget check): each one's events, then the Finish; each
        failure judged for breaker and limiter. A retryable failure fails over only until the
        client has seen content. (The failover's steps are plain calls when they need no wait,
        as nearly always: a coroutine each cost more than their work.)"""
        budget = self.budget
        budget.requests += 1
        try:
            tries = begin()
            if (waiting := tries.ready()) is not None:
                await waiting
            while (deployment := tries.next_now() or await tries.next()) is not None:
                number = len(tries.attempts) + 1
                if number > 1:  # any attempt after the first spends the retry budget
                    budget.take(tries.settings, tries.last_error, deployment.spec.provider)
                sent_content = False
                try:
                    settings = deployment.settings
                    # The time to first token bounds each read until content comes, then the idle
                    # limit; the deadline bounds every read.
                    attempt = _Try(
                        self,
                        deployment,
                        number,
                        request,
                        clock,
                        tries.deadline,
                        tries.attempts,
                        settings.ttft_timeout_s,
                        early=tries.probing is deployment,
                    )
                    scope, watch = attempt.scope, attempt.watch
                    calls = OpenCalls()  # every tool call the stream starts ends before the Finish
                    stream: AsyncIterator[StreamEvent] | None = None
                    source: AsyncIterator[StreamEvent] | None = None  # what is read: the provider's own
                    report: AttemptReport | None = None  # the wrapper's record, when it lets us tell it
                    finish: ProviderFinish | None = None
                    usage: Usage | None = None  # what the provider reported, for the attempt's cost
                    relayed = 0  # characters of content passed on, to estimate the output without usage
                    answered = False  # the provider's stream gave at least one event
                    try:
                        task = asyncio.current_task()
                        scope.enter()
                        source = stream = open_stream(
                            deployment.provider, _for_model(request, deployment.spec.model)
                        )
                        if isinstance(stream, ReportedStream):  # read the provider's stream, and tell
                            source, report = _opened(stream, attempt)
                        now = time.perf_counter_ns()
                        while True:
                            # A task keeps its context: the attempt's variables set in it hold until the
                            # attempt ends, so they are set again only when another task resumes the
                            # stream (grpc closes a cancelled one elsewhere), not checked on every event.
                            reader = asyncio.current_task()
                            if reader is not task:
                                task = reader
                                scope.enter()
                            # (`watch.reading(now, reader)`, written out: its call was most of its work)
                            watch.since_ns = now
                            watch.task = reader
                            watch.cancelling = reader.cancelling() if reader is not None else 0
                            if not watch.watched:
                                watch.join(now)
                            try:
                                event = await anext(source)
                            except StopAsyncIteration:
                                if report is not None:
                                    report.ended()
                                if type(source) is AsyncGeneratorType:
                                    source = None  # a generator at its end is closed: nothing to close
                                break
                            except BaseException as exc:
                                if report is not None:  # first: it redacts what the error says
                                    report.failed(exc)
                                if isinstance(exc, asyncio.CancelledError | OSError):
                                    attempt.read_failed(exc, sent_content)
                                raise
                            finally:
                                # The read is over however it ended: an error's handling below (judging
                                # it may wait on Redis) must not be cancelled as a read past its limit.
                                # (`watch.finished()`, written out: its call was most of its work.)
                                watch.since_ns = 0
                                if watch.expired:
                                    watch.finished()
                                handed = time.perf_counter_ns()
                                clock.upstream_ns += handed - now
                            answered = True
                            # Text deltas are nearly every event of a stream: one type test settles
                            # them (and they are no tool-call event for `calls`).
                            if type(event) is TextDelta:
                                relayed += len(event.text)
                            elif isinstance(event, ProviderFinish):
                                finish = event
                                now = time.perf_counter_ns()
                                continue
                            elif isinstance(event, UsageEvent):
                                usage = event.usage
                            elif isinstance(event, ReasoningDelta | TextDelta):  # text with logprobs
                                relayed += len(event.text)
                            elif isinstance(event, ToolCallDelta):
                                relayed += len(event.arguments_delta)
                            if not sent_content and isinstance(event, CONTENT_EVENTS):
                                sent_content = True
                                attempt.first_content(handed)
                                if report is not None:
                                    report.first_chunk(handed)
                                watch.limit(settings.idle_timeout_s)
                            yield event if type(event) is TextDelta else calls.see(event)
                            now = time.perf_counter_ns()
                            clock.downstream_ns += now - handed
                        if finish is None:  # the adapters check their vendor's end marker; this the rest
                            raise _unfinished(deployment)
                    except GatewayError as exc:
                        await attempt.failed(exc, usage, relayed, answered)
                        raise
                    finally:
                        attempt.settle(usage, relayed, finish, started=stream is not None)
                        try:
                            if source is not None:
                                await _close(source)
                        finally:
                            if report is not None:
                                report.close(usage, finish)
                        self.released()
                    attempt.succeeded(usage, relayed, finish, sent_content)
                    for end in calls.close():  # cut by max_tokens, or a vendor that ends none
                        handed = time.perf_counter_ns()
                        yield end
                        clock.downstream_ns += time.perf_counter_ns() - handed
                    yield attempt.finished(finish)
                    return
                except GatewayError as exc:
                    # Once the client has seen output, a failure ends the stream (an honest error beats
                    # a silently spliced answer).
                    if sent_content or not exc.retryable:
                        raise
                    tries.retry_later(deployment, exc)
                finally:
                    if number > 1:
                        budget.retries -= 1
            raise tries.exhausted()
        finally:
            budget.requests -= 1

    async def call(
        self,
        deployment: Deployment,
        number: int,
        request: Req,
        clock: RequestClock,
        deadline: float,
        answer: Answer[Req],
        attempts: list[Attempt],
        *,
        early: bool,
    ) -> tuple[ChatResponse, Finish]:
        """One try of one deployment for a unary call: the provider's whole answer, awaited once,
        then the Finish; judged, timed and accounted as a stream's attempt (`_Try`).

        Its answer comes all at once, so only the deadline bounds the wait for it. It stands for the
        events a stream would have relayed (`relayed_answer`, `has_content`): an answer with content
        is its first token, its usage the attempt's usage, and without a finish it is a cut stream.
        """
        attempt = _Try(self, deployment, number, request, clock, deadline, attempts, None, early=early)
        watch = attempt.watch
        response: ChatResponse | None = None
        finish: ProviderFinish | None = None
        usage: Usage | None = None
        try:
            attempt.scope.enter()
            now = time.perf_counter_ns()
            watch.reading(now, asyncio.current_task())
            try:
                response = await answer(deployment.provider, _for_model(request, deployment.spec.model))
            except (asyncio.CancelledError, OSError) as exc:
                attempt.read_failed(exc, False)
            finally:
                watch.finished()
                handed = time.perf_counter_ns()
                clock.upstream_ns += handed - now
            sent_content = has_content(response)
            if sent_content:
                attempt.first_content(handed)
            response = relayed_answer(response)
            usage, finish = response.usage, response.finish
            if finish is None:
                raise _unfinished(deployment)
        except GatewayError as exc:
            await attempt.failed(exc, usage, 0, response is not None)
            raise
        finally:
            attempt.settle(usage, 0, finish, started=True)
            self.released()
        attempt.succeeded(usage, 0, finish, sent_content)
        return response, attempt.finished(finish)

    def _cost(
        self,
        deployment: Deployment,
        request: ChatRequest | CompletionRequest,
        finish: ProviderFinish | None,
        usage: Usage | None,
        source: str,
    ) -> Cost:
        model = (finish.model if finish else "") or deployment.spec.model
        price = self.prices.price(deployment.kind, model)
        images = 0  # counting them walks every part of every message: only for a row that prices them
        if price is not None and price.per_image and isinstance(request, ChatRequest):
            images = _images(request)
        return self.prices.cost_at(price, usage, source, images)

    def _rate_limit_info(self, deployment: Deployment, info: RateLimitInfo) -> None:
        deployment.limiter.on_rate_limit_info(info)
        if info.headroom() == 0.0 and info.reset_s:
            self.background(self.store.eject(deployment.held_keys[1], info.reset_s))


class _Try:
    """What a stream's attempt and a unary call's share, so that they decide alike: the deployment's
    breaker and limiter taken and given back, the attempt's context and stall watch, its first
    token, and how it ended judged, costed and recorded (`attempts`, the consumption report).

    The per-event figures (usage, relayed characters, finish) stay the caller's locals, passed in
    at the end: a stream updates them on every event."""

    __slots__ = (
        "attempts",
        "clock",
        "cost",
        "deadline",
        "deployment",
        "heard",
        "owner",
        "refused",
        "request",
        "scope",
        "started",
        "ticket",
        "verdict",
        "watch",
    )

    def __init__(
        self,
        owner: Attempts,
        deployment: Deployment,
        number: int,
        request: ChatRequest | CompletionRequest,
        clock: RequestClock,
        deadline: float,
        attempts: list[Attempt],
        limit_s: float | None,
        *,
        early: bool,
    ) -> None:
        self.owner, self.deployment, self.request = owner, deployment, request
        self.clock, self.deadline, self.attempts = clock, deadline, attempts
        breaker = deployment.breaker
        state = breaker.state.value
        # `early`: handed out as an early probe (its breaker open here, or its ejection elsewhere
        # probed); only that one takes a probe slot. Without a ticket it is not sent (breaker.py).
        ticket = breaker.acquire(early=early)
        if ticket is None:
            raise breaker_refused(deployment)
        self.ticket = ticket
        deployment.limiter.acquire()
        self.heard = heard = HeardUsage()  # the usage the provider reported before its end
        self.scope = AttemptScope(
            AttemptInfo(
                number, deployment.key, state, lambda info: owner._rate_limit_info(deployment, info), heard
            )
        )
        self.started = time.perf_counter_ns()
        # `limit_s` bounds the reads until content comes (None: the deadline alone).
        self.watch = StallWatch(limit_s, deadline - owner.clock(), owner.watchdog)
        self.verdict = False  # judged a failure (else released unjudged, or a success)
        self.refused = False  # an HTTP error answer before any event: the vendor billed nothing
        self.cost: Cost | None = None  # the attempt's cost, once known

    def first_content(self, handed_ns: int) -> None:
        self.clock.first_token_ns = handed_ns
        self.deployment.record_ttft((handed_ns - self.started) / 1e9)

    def read_failed(self, exc: asyncio.CancelledError | OSError, sent_content: bool) -> NoReturn:
        """Raise what a read of the provider that raised `exc` means: a socket error an adapter let
        through is a connection failure; a cancel is a limit passed when the stall watch made it
        (the request's deadline, or the deployment stalled), else it comes from elsewhere (the
        client, shutdown) and goes on."""
        if isinstance(exc, OSError):
            raise _connection_failed(self.deployment, exc) from exc
        watch = self.watch
        if not watch.stopped_read():
            raise exc
        if watch.by_deadline or self.owner.clock() >= self.deadline:  # not the deployment's fault
            raise GatewayError(
                ErrorKind.DEADLINE_EXCEEDED, "the request's deadline passed", retryable=False
            ) from None
        raise _stalled(self.deployment, sent_content, watch.limit_s or 0.0) from None

    async def failed(self, exc: GatewayError, usage: Usage | None, relayed: int, answered: bool) -> None:
        """Record and judge the attempt's failure (the caller raises it on)."""
        deployment = self.deployment
        exc.provider = exc.provider or deployment.spec.provider
        self.refused = not answered and self.heard.usage is None and refused_before_work(exc)
        if self.refused:
            self.cost = NOTHING_CONSUMED
        else:
            consumed, source = reckon_usage(usage, self.request, relayed, self.heard)
            self.cost = self.owner._cost(deployment, self.request, None, consumed, source)
        self.attempts.append(_failed(deployment, exc, self.started, self.cost))
        # Judged only from here: should the reckoning above ever raise, `settle` still gives the
        # ticket back, so a half-open breaker's probe slot is never lost.
        self.verdict = True
        await judge(deployment, self.ticket, exc, self.owner.store)

    def settle(
        self, usage: Usage | None, relayed: int, finish: ProviderFinish | None, *, started: bool
    ) -> None:
        """However the attempt ended (a cancel included): give back what it took, and report what it
        consumed when the provider's whole usage never came (`started`: the provider was called)."""
        self.watch.close()
        self.scope.exit()
        deployment = self.deployment
        deployment.limiter.release()
        if not self.verdict:  # cancelled or an unexpected exception: neither success nor failure
            deployment.breaker.release(self.ticket)
        if usage is None and started and not self.refused:
            consumed, source = reckon_usage(None, self.request, relayed, self.heard)
            self.cost = self.owner._cost(deployment, self.request, finish, consumed, source)
            spec = deployment.spec
            report(Consumed(spec.provider, spec.model, consumed, self.cost, source))

    def succeeded(
        self, usage: Usage | None, relayed: int, finish: ProviderFinish | None, sent_content: bool
    ) -> None:
        deployment = self.deployment
        if not sent_content:
            deployment.record_ttft((time.perf_counter_ns() - self.started) / 1e9)
        deployment.breaker.record_success(self.ticket)
        deployment.limiter.on_success()
        cost = self.cost
        if cost is None:  # the provider's usage came (else its estimate, reported above, is the cost)
            consumed, source = reckon_usage(usage, self.request, relayed, self.heard)
            cost = self.owner._cost(deployment, self.request, finish, consumed, source)
        spec = deployment.spec
        elapsed = us(time.perf_counter_ns() - self.started)
        self.attempts.append(Attempt(spec.provider, spec.model, "ok", "", elapsed, cost))

    def finished(self, finish: ProviderFinish | None) -> Finish:
        assert finish is not None, "an attempt succeeds only with its provider's finish"
        return _finish(self.deployment, finish, self.attempts, self.clock)


def _opened(stream: ReportedStream, attempt: _Try) -> tuple[AsyncIterator[StreamEvent], AttemptReport]:
    """Open a wrapper's stream: what its opening raises means what a first read's would."""
    try:
        return stream.open()
    except (asyncio.CancelledError, OSError) as exc:
        attempt.read_failed(exc, False)


async def _close(stream: AsyncIterator[StreamEvent] | None) -> None:
    """Close the provider's stream now, so a cancelled request stops its upstream call at once."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


# Each request kind's fields, read in one C call: the copy below takes 0.6 µs where
# `dataclasses.replace` took 4.2 (it looks the fields up and checks them on every call), on every
# call that names "provider/model" or an alias.
_FIELDS_OF = {
    kind: operator.attrgetter(*(f.name for f in dataclasses.fields(kind)))
    for kind in (ChatRequest, CompletionRequest)
}


def _for_model[R: (ChatRequest, CompletionRequest)](request: R, model: str) -> R:
    """`request` for the deployment's model id; itself when it already names it (a plain route, nearly
    every call: a copy of the request per attempt is CPU for nothing; nothing below changes it).
    A copy is shallow, as `dataclasses.replace`'s: nothing below changes the lists it shares."""
    if request.model == model:
        return request
    kind = type(request)
    fields = _FIELDS_OF.get(kind)
    if fields is None:  # a kind not listed above (a subclass): the general copy
        return dataclasses.replace(request, model=model)
    copy = kind(*fields(request))
    copy.model = model
    return copy


def _images(request: ChatRequest) -> int:
    """Input images, for the vendors that price them apart from tokens."""
    return sum(isinstance(part, ImagePart) for message in request.messages for part in message.content)


def _stalled(deployment: Deployment, sent_content: bool, limit: float) -> GatewayError:
    what = "no event for" if sent_content else "no first token within"
    return GatewayError(
        ErrorKind.DEADLINE_EXCEEDED,
        f"{deployment.key}: {what} {limit:.3g} s; upstream stalled",
        provider=deployment.spec.provider,
        retryable=True,
    )


def _connection_failed(deployment: Deployment, exc: OSError) -> GatewayError:
    """An adapter let a socket error through: a connection failure."""
    return GatewayError(
        ErrorKind.UNAVAILABLE,
        f"{deployment.key}: connection failed",
        provider=deployment.spec.provider,
        retryable=True,
        detail=f"{type(exc).__name__}: {exc}",
    )


def _unfinished(deployment: Deployment) -> GatewayError:
    """A stream that just stopped may be cut anywhere: never a clean STOP. Retryable: the router
    retries it only while nothing was relayed."""
    return GatewayError(
        ErrorKind.UNAVAILABLE,
        f"{deployment.key}: upstream stream ended without a finish",
        provider=deployment.spec.provider,
        retryable=True,
    )


def _failed(deployment: Deployment, exc: GatewayError, started: int, cost: Cost) -> Attempt:
    return Attempt(
        deployment.spec.provider,
        deployment.spec.model,
        exc.kind.value,
        exc.message,
        us(time.perf_counter_ns() - started),
        cost,
    )


def _finish(
    deployment: Deployment, finish: ProviderFinish, attempts: list[Attempt], clock: RequestClock
) -> Finish:
    # The fields in order, positionally (a keyword costs about 0.6k instructions more per field).
    return Finish(
        finish.reason,  # reason
        finish.raw_reason,  # raw_reason
        deployment.spec.provider,  # provider
        finish.model or deployment.spec.model,  # model
        clock.timing(),  # timing
        tuple(attempts),  # attempts
        finish.response_id,  # response_id
        total([a.cost for a in attempts]),  # cost
        finish.emulated,  # emulated
    )
