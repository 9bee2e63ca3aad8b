"""The embedded mock provider: deterministic, credential-free, and able to fail on purpose.

It implements the whole provider protocol so that the server runs and streams with no
configuration, and so that tests can drive every gateway path (faults, hangs, rate limits,
cancellation) without a network. Behaviour is set per model in the config file; tests can also
queue scripted responses with `push`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace

from provider_gateway.config import Section
from provider_gateway.domain import (
    Capabilities,
    ChatRequest,
    CompletionRequest,
    CountTokensRequest,
    EmbedRequest,
    EmbedResult,
    FinishReason,
    HealthStatus,
    ModelInfo,
    ProviderFinish,
    RateLimits,
    ReasoningDelta,
    Role,
    StreamEvent,
    TextDelta,
    TextDeltaWithLogprobs,
    TokenCount,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
    UsageEvent,
)
from provider_gateway.errors import ErrorKind, GatewayError, not_found
from provider_gateway.providers.base import BaseProvider, estimate_messages, estimate_tokens
from provider_gateway.providers.context import ProviderContext

FAULTS = ("none", "error_before_first_token", "error_after_tokens", "hang", "rate_limit")
MODEL_KEYS = (
    "tokens",
    "token_delay_ms",
    "first_token_delay_ms",
    "reasoning_tokens",
    "tool_calls",
    "fault",
    "fault_status",
    "fault_message",
    "fault_after_tokens",
    "retry_after_ms",
    "cache_read_tokens",
    "cache_write_tokens",
    "embedding_dimensions",
    "embeddings",
    "context_window",
)
PROVIDER_KEYS = ("kind", "healthy", "models")


# Declared once: the router's honour check asks on every call.
CAPABILITIES = Capabilities(
    max_tokens=4096,
    streaming=True,
    tools=True,
    vision=True,
    embeddings=True,
    reasoning=True,
    json_output=True,
    exact_token_count=True,
    completion=True,
    rate_limits=RateLimits(requests_per_minute=0, tokens_per_minute=0, max_concurrent=0),
)


@dataclass(slots=True, frozen=True)
class MockModel:
    """How one mock model behaves."""

    tokens: int = 12
    token_delay_ms: float = 0.0
    first_token_delay_ms: float = 0.0
    reasoning_tokens: int = 0
    tool_calls: tuple[tuple[str, str], ...] = ()  # (name, arguments JSON)
    fault: str = "none"
    fault_status: ErrorKind = ErrorKind.UNAVAILABLE
    fault_message: str = "injected mock fault"
    fault_after_tokens: int = 3
    retry_after_ms: int = 1000
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    embedding_dimensions: int = 8
    embeddings: bool = False  # answers Embed (and says so in ListModels)
    context_window: int = 128_000

    @classmethod
    def from_section(cls, section: Section, base: MockModel) -> MockModel:
        section.reject_unknown(MODEL_KEYS)
        status_name = section.choice("fault_status", [k.value for k in ErrorKind], base.fault_status.value)
        calls = []
        for i, call in enumerate(section.array("tool_calls")):
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                raise section.error(f"tool_calls[{i}]", "must be a table with a string 'name'")
            calls.append((call["name"], json.dumps(call.get("arguments", {}), separators=(",", ":"))))
        return cls(
            tokens=section.integer("tokens", base.tokens, minimum=0),
            token_delay_ms=section.number("token_delay_ms", base.token_delay_ms, minimum=0),
            first_token_delay_ms=section.number("first_token_delay_ms", base.first_token_delay_ms, minimum=0),
            reasoning_tokens=section.integer("reasoning_tokens", base.reasoning_tokens, minimum=0),
            tool_calls=tuple(calls) or base.tool_calls,
            fault=section.choice("fault", FAULTS, base.fault),
            fault_status=ErrorKind(status_name),
            fault_message=section.string("fault_message", base.fault_message),
            fault_after_tokens=section.integer("fault_after_tokens", base.fault_after_tokens, minimum=0),
            retry_after_ms=section.integer("retry_after_ms", base.retry_after_ms, minimum=0),
            cache_read_tokens=section.integer("cache_read_tokens", base.cache_read_tokens, minimum=0),
            cache_write_tokens=section.integer("cache_write_tokens", base.cache_write_tokens, minimum=0),
            embedding_dimensions=section.integer(
                "embedding_dimensions", base.embedding_dimensions, minimum=1
            ),
            embeddings=section.flag("embeddings", base.embeddings),
            context_window=section.integer("context_window", base.context_window, minimum=1),
        )


BUILTIN_MODELS: dict[str, MockModel] = {
    "echo": MockModel(),
    "reasoner": MockModel(reasoning_tokens=6),
    "tools": MockModel(tokens=4, tool_calls=(("get_weather", '{"city":"Paris","unit":"celsius"}'),)),
    "slow": MockModel(tokens=20, token_delay_ms=50, first_token_delay_ms=200),
    "embed": MockModel(tokens=0, embedding_dimensions=16, embeddings=True),
}


@dataclass(slots=True)
class MockScript:
    """A scripted answer: these events, then optionally an error after `error_after` events."""

    events: Sequence[StreamEvent] = ()
    error: GatewayError | None = None
    error_after: int = 0


RECENT_REQUESTS = 100
# Embed answers up to this many values are built on the event loop (well under a millisecond).
INLINE_EMBED_VALUES = 65_536


@dataclass(slots=True)
class MockStats:
    """What the mock saw, so tests can prove cancellation reached the provider."""

    started: int = 0
    completed: int = 0
    cancelled: int = 0
    # The most recent requests only: the mock is the default provider of a long-running server.
    requests: deque[ChatRequest | CompletionRequest] = field(
        default_factory=lambda: deque(maxlen=RECENT_REQUESTS)
    )
    cancelled_event: asyncio.Event = field(default_factory=asyncio.Event)


class MockProvider(BaseProvider):
    kind = "mock"

    def __init__(self, name: str, models: dict[str, MockModel] | None = None, healthy: bool = True) -> None:
        super().__init__(name)
        self.models = dict(BUILTIN_MODELS) | (models or {})
        self.healthy = healthy
        self.stats = MockStats()
        self._scripts: deque[MockScript] = deque()

    @classmethod
    def from_config(cls, name: str, options: Section, context: ProviderContext | None = None) -> MockProvider:
        options.reject_unknown(PROVIDER_KEYS)
        models_section = options.table("models")
        models = {
            model: MockModel.from_section(models_section.table(model), BUILTIN_MODELS.get(model, MockModel()))
            for model in models_section
        }
        return cls(name, models, healthy=options.flag("healthy", True))

    # --- test hooks ----------------------------------------------------------------------------

    def push(self, script: MockScript) -> None:
        """Queue a scripted answer; the next chat or completion call consumes it."""
        self._scripts.append(script)

    def set_model(self, model: str, behaviour: MockModel) -> None:
        self.models[model] = behaviour

    # --- protocol ------------------------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        return CAPABILITIES

    async def health_check(self) -> HealthStatus:
        return HealthStatus(healthy=self.healthy, message="" if self.healthy else "mock set unhealthy")

    def _model(self, model: str) -> MockModel:
        try:
            return self.models[model]
        except KeyError:
            # A 'x/model' that reached here had a prefix naming no configured provider.
            hint = "; a 'provider/' prefix must name a configured provider" if "/" in model else ""
            raise not_found(
                f"model {model!r} is not offered by provider {self.name!r} "
                f"(models: {', '.join(sorted(self.models))}){hint}"
            ) from None

    def chat_stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        behaviour = self._model(request.model)
        prompt = next((m.text for m in reversed(request.messages) if m.role is Role.USER), "")
        input_tokens = estimate_messages(request.messages)
        # Like a real model, the mock calls tools only when the request offers some.
        calls = behaviour.tool_calls if request.tools else ()
        return self._run(request, behaviour, prompt, input_tokens, calls, request.max_tokens)

    def complete_stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        behaviour = self._model(request.model)
        return self._run(
            request, behaviour, request.prompt, estimate_tokens(request.prompt), (), request.max_tokens
        )

    async def _run(
        self,
        request: ChatRequest | CompletionRequest,
        behaviour: MockModel,
        prompt: str,
        input_tokens: int,
        calls: tuple[tuple[str, str], ...],
        max_tokens: int | None,
    ) -> AsyncIterator[StreamEvent]:
        self.stats.started += 1
        self.stats.requests.append(request)
        try:
            script = self._scripts.popleft() if self._scripts else None
            asked = request.logprobs if isinstance(request, ChatRequest) else None
            top = None if asked is None else asked.top_logprobs
            events = (
                script_events(script)
                if script
                else self._generate(behaviour, request.model, prompt, input_tokens, calls, max_tokens, top)
            )
            async for event in events:
                yield event
            self.stats.completed += 1
        except (asyncio.CancelledError, GeneratorExit):
            self._note_cancel()
            raise

    def _note_cancel(self) -> None:
        self.stats.cancelled += 1
        self.stats.cancelled_event.set()

    async def _before_answer(self, behaviour: MockModel) -> None:
        """The latency and the faults that strike before any output, shared by every call kind."""
        if behaviour.first_token_delay_ms:
            await asyncio.sleep(behaviour.first_token_delay_ms / 1000)
        if behaviour.fault == "hang":
            await asyncio.Event().wait()  # until the caller cancels or its deadline passes
        if behaviour.fault == "rate_limit":
            raise GatewayError(
                ErrorKind.RESOURCE_EXHAUSTED,
                f"mock rate limit: retry after {behaviour.retry_after_ms} ms",
                provider=self.name,
                retry_after=behaviour.retry_after_ms / 1000,
                upstream_status=429,
            )
        if behaviour.fault == "error_before_first_token":
            raise GatewayError(behaviour.fault_status, behaviour.fault_message, provider=self.name)

    async def _generate(
        self,
        behaviour: MockModel,
        model: str,
        prompt: str,
        input_tokens: int,
        calls: tuple[tuple[str, str], ...],
        max_tokens: int | None,
        top_logprobs: int | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """`top_logprobs`: None unless the request asked for logprobs (each word is then a token)."""
        fault = behaviour.fault
        await self._before_answer(behaviour)
        delay = behaviour.token_delay_ms / 1000
        for i, word in enumerate(reasoning_words(behaviour.reasoning_tokens)):
            if delay and i:
                await asyncio.sleep(delay)
            yield ReasoningDelta(word)
        budget = behaviour.tokens if max_tokens is None else min(behaviour.tokens, max_tokens)
        fail_after = behaviour.fault_after_tokens if fault == "error_after_tokens" else None
        for i, word in enumerate(answer_words(prompt, budget)):
            if i == fail_after:
                break
            if delay and i:
                await asyncio.sleep(delay)
            if top_logprobs is None:
                yield TextDelta(word)
            else:
                yield TextDeltaWithLogprobs(word, (mock_logprob(word, i, top_logprobs),))
        if fail_after is not None:  # also when the answer is shorter than fault_after_tokens
            raise GatewayError(behaviour.fault_status, behaviour.fault_message, provider=self.name)
        for index, (name, arguments) in enumerate(calls):
            call_id = f"call_mock_{index}"
            yield ToolCallStart(index, call_id, name)
            half = len(arguments) // 2
            yield ToolCallDelta(index, arguments[:half])
            yield ToolCallDelta(index, arguments[half:])
            yield ToolCallEnd(index, ToolCall(call_id, name, arguments))
        output = budget + behaviour.reasoning_tokens + sum(estimate_tokens(a) for _, a in calls)
        yield UsageEvent(
            Usage(
                input_tokens=input_tokens + behaviour.cache_read_tokens + behaviour.cache_write_tokens,
                output_tokens=output,
                cache_read_tokens=behaviour.cache_read_tokens,
                cache_write_tokens=behaviour.cache_write_tokens,
                reasoning_tokens=behaviour.reasoning_tokens,
                raw={"prompt_tokens": input_tokens, "completion_tokens": output},
            )
        )
        truncated = max_tokens is not None and max_tokens < behaviour.tokens
        reason = FinishReason.TOOL_CALLS if calls else FinishReason.LENGTH if truncated else FinishReason.STOP
        yield ProviderFinish(
            reason, raw_reason=reason.value, model=model, response_id=f"mock-{self.stats.started}"
        )

    async def list_models(self) -> list[ModelInfo]:
        return [
            ModelInfo(
                id=name,
                display_name=f"Mock {name}",
                context_window=m.context_window,
                max_output_tokens=4096,
                vision=True,
                tools=bool(m.tool_calls) or name == "echo",
                reasoning=m.reasoning_tokens > 0,
                embeddings=m.embeddings,
            )
            for name, m in sorted(self.models.items())
        ]

    async def count_tokens(self, request: CountTokensRequest) -> TokenCount:
        self._model(request.model)
        count = await super().count_tokens(request)
        return replace(count, estimated=False)  # the mock's own count is, by definition, exact

    async def embed(self, request: EmbedRequest) -> EmbedResult:
        behaviour = self._model(request.model)
        if not behaviour.embeddings:
            embedders = ", ".join(sorted(n for n, m in self.models.items() if m.embeddings))
            raise GatewayError(
                ErrorKind.INVALID_ARGUMENT,
                f"model {request.model!r} does not offer embeddings (embedding models: {embedders or 'none'})",
                provider=self.name,
            )
        try:
            await self._before_answer(behaviour)
            dims = request.dimensions or behaviour.embedding_dimensions
            if dims * len(request.inputs) <= INLINE_EMBED_VALUES:
                vectors = embeddings(request.inputs, dims)
            else:  # a big answer is built on a worker thread: the event loop keeps serving
                vectors = await asyncio.to_thread(embeddings, request.inputs, dims)
        except asyncio.CancelledError:
            self._note_cancel()
            raise
        tokens = sum(estimate_tokens(t) for t in request.inputs)
        return EmbedResult(vectors, Usage(input_tokens=tokens), model=request.model)


async def script_events(script: MockScript) -> AsyncIterator[StreamEvent]:
    for i, event in enumerate(script.events):
        if script.error is not None and i == script.error_after:
            raise script.error
        yield event
    if script.error is not None:
        raise script.error


def answer_words(prompt: str, count: int) -> list[str]:
    """Deterministic answer text: an echo of the prompt, padded or cut to `count` tokens."""
    source = ["Mock", "answer:", *(prompt.split() or ["hello"])]
    words = [source[i % len(source)] for i in range(count)]
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def reasoning_words(count: int) -> list[str]:
    source = ["Thinking", " about", " the", " question", " step", " by", " step."]
    return [source[i % len(source)] for i in range(count)]


def embedding(text: str, dims: int) -> list[float]:
    """A unit vector derived from the text's hash: equal texts embed equally.

    The hash's 32 values repeat along the vector, so it is built by list repetition (C speed),
    never by a Python loop over the dimensions.
    """
    digest = hashlib.sha256(text.encode()).digest()
    cycle = [(b - 127.5) / 127.5 for b in digest]
    whole, rest = divmod(dims, len(cycle))
    norm = math.sqrt(whole * sum(v * v for v in cycle) + sum(v * v for v in cycle[:rest])) or 1.0
    unit = [v / norm for v in cycle]
    return unit * whole + unit[:rest]


def embeddings(texts: Sequence[str], dims: int) -> list[list[float]]:
    return [embedding(text, dims) for text in texts]


# The mock's alternatives to each word, in order of likelihood: enough for top_logprobs = 20.
MOCK_ALTERNATIVES = (
    " the", " a", " and", " of", " to", " in", " is", " it", " that", ",",
    " for", ".", "!", " on", " with", " as", " was", " at", " by",
)  # fmt: skip


def mock_logprob(word: str, index: int, top: int) -> TokenLogprob:
    """A deterministic entry for the `index`-th word: the word itself most likely (every fourth
    certain), then `top - 1` alternatives, each less likely."""
    chosen = -0.25 * (index % 4)
    alternatives = [
        TokenLogprob(alt, chosen - 1.0 - n, alt.encode()) for n, alt in enumerate(MOCK_ALTERNATIVES)
    ]
    return TokenLogprob(
        word, chosen, word.encode(), (TokenLogprob(word, chosen, word.encode()), *alternatives)[:top]
    )
