"""Domain types: plain Python data that providers, the router and the servicer share.

Protobuf never crosses this line; `server/convert.py` translates at the gRPC edge.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, dataclass_transform


@dataclass_transform(frozen_default=True)
def value[T](cls: type[T]) -> type[T]:
    """A value type: a frozen dataclass to the type checker (mypy refuses any assignment to a field),
    built at run time as a plain slotted dataclass, hashable by value as a frozen one is. A frozen
    dataclass's `__init__` sets each field through `object.__setattr__`, about 1.6k instructions a
    field (callgrind; 2.4k for a whole 4-field plain one): these are built for every token and call.
    """
    return dataclass(slots=True, unsafe_hash=True)(cls)


class Role(enum.Enum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class FinishReason(enum.Enum):
    UNSPECIFIED = "unspecified"
    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    CONTENT_FILTER = "content_filter"
    OTHER = "other"


class ToolChoiceMode(enum.Enum):
    AUTO = "auto"
    NONE = "none"
    REQUIRED = "required"
    TOOL = "tool"


class ResponseFormatType(enum.Enum):
    TEXT = "text"
    JSON_OBJECT = "json_object"
    JSON_SCHEMA = "json_schema"


# --- request content -------------------------------------------------------------------------


@value
class TextPart:
    text: str
    cache_breakpoint: bool = False


@value
class ImagePart:
    data: bytes = b""
    url: str = ""
    media_type: str = ""
    cache_breakpoint: bool = False


@value
class ToolCall:
    """`incomplete` (output only): the arguments are not whole, cut or not JSON; see the proto."""

    id: str
    name: str
    arguments_json: str
    incomplete: bool = False


@value
class ToolCallPart:
    call: ToolCall
    cache_breakpoint: bool = False


@value
class ToolResultPart:
    tool_call_id: str
    content: str
    is_error: bool = False
    name: str = ""
    cache_breakpoint: bool = False


@value
class ReasoningPart:
    """One reasoning block of an earlier assistant turn, replayed with its opaque provider state.

    `signature` is whatever the provider needs back to trust or resume the block, never read by the
    gateway: Anthropic's and Bedrock's thinking `signature` (or, with `redacted`, the encrypted
    `data` of redacted thinking), Gemini's `thoughtSignature`, Mistral's thinking `signature`, or
    OpenAI Responses' `encrypted_content` (with the item's `id`). See the proto's `Reasoning`.
    `issuer`: the vendor family that issued that state (providers/issuers.py), "" when unknown.
    """

    text: str
    signature: str = ""
    cache_breakpoint: bool = False
    redacted: bool = False
    id: str = ""
    issuer: str = ""


ContentPart = TextPart | ImagePart | ToolCallPart | ToolResultPart | ReasoningPart


@value
class Message:
    role: Role
    content: tuple[ContentPart, ...]
    name: str = ""

    @property
    def text(self) -> str:
        """The message's text parts joined: what providers with text-only turns send."""
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


@value
class Tool:
    name: str
    description: str
    parameters: Mapping[str, Any]


@value
class ToolChoice:
    mode: ToolChoiceMode = ToolChoiceMode.AUTO
    name: str = ""


@value
class ReasoningOptions:
    enabled: bool = False
    effort: str = ""  # "", "minimal", "low", "medium", "high"
    budget_tokens: int = 0


@value
class ResponseFormat:
    type: ResponseFormatType = ResponseFormatType.TEXT
    schema_name: str = ""
    json_schema: Mapping[str, Any] | None = None
    strict: bool = False


@value
class LogprobsOptions:
    """Token log-probabilities asked for: each text token's, and `top_logprobs` (0 to 20) most
    likely alternatives at each position. `ChatRequest.logprobs` is None when none were asked."""

    top_logprobs: int = 0


@value
class Route:
    """Where a request asked to go: the resolved provider and the model id that provider knows."""

    provider: str
    model: str


@dataclass(slots=True)
class ChatRequest:
    model: str
    messages: list[Message]
    provider: str = ""
    fallbacks: list[str] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    reasoning: ReasoningOptions | None = None
    response_format: ResponseFormat | None = None
    provider_options: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    logprobs: LogprobsOptions | None = None


@dataclass(slots=True)
class CompletionRequest:
    model: str
    prompt: str
    provider: str = ""
    fallbacks: list[str] = field(default_factory=list)
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    provider_options: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)

    def as_chat(self, logprobs: LogprobsOptions | None = None) -> ChatRequest:
        """The one-message chat a completion is answered with where no completion endpoint is used
        (a chat-only API, or a completion that asks for `logprobs`): the prompt as the user's
        message, every other field as it is."""
        return ChatRequest(
            model=self.model,
            messages=[Message(Role.USER, (TextPart(self.prompt),))],
            provider=self.provider,
            fallbacks=list(self.fallbacks),
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            stop=list(self.stop),
            provider_options=dict(self.provider_options),
            metadata=dict(self.metadata),
            logprobs=logprobs,
        )


@dataclass(slots=True)
class CountTokensRequest:
    model: str
    provider: str = ""
    text: str = ""
    messages: list[Message] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)


@dataclass(slots=True)
class EmbedRequest:
    model: str
    inputs: list[str]
    provider: str = ""
    dimensions: int = 0


# --- stream events ---------------------------------------------------------------------------


@dataclass(slots=True)
class Usage:
    """Normalised usage: `input_tokens` includes cached tokens; see the proto's `Usage`."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    raw: dict[str, Any] = field(default_factory=dict)
    estimated: bool = False
    # The tier the provider says it served the request on, which sets its price: "standard",
    # "flex", "priority" or "batch" (each vendor's word mapped to these), another vendor word as
    # it came (Bedrock's "reserved", OpenAI's "scale": no per-token price), "" when it said none.
    service_tier: str = ""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@value
class TextDelta:
    text: str


@value
class TokenLogprob:
    """One generated token and its natural-log probability; `utf8`: its bytes where the provider
    gives them (None where it does not); `top_logprobs`: the most likely tokens at its position."""

    token: str
    logprob: float
    utf8: bytes | None = None
    top_logprobs: tuple[TokenLogprob, ...] = ()


@value
class TextDeltaWithLogprobs(TextDelta):
    """Text with the log-probabilities of the tokens it is made of, in order: only in answers to a
    request that asked for them. A subclass rather than a field of TextDelta, so that the plain
    deltas of every other stream keep their one-field construction and their `type(...) is
    TextDelta` fast paths; the paths that join, split or fold text keep the entries."""

    logprobs: tuple[TokenLogprob, ...]


@value
class ReasoningDelta:
    """Reasoning text; a delta with opaque state (`signature`, `redacted` or `id`) closes the block
    that the text before it (since the previous closing delta) belongs to."""

    text: str
    signature: str = ""
    redacted: bool = False
    id: str = ""

    @property
    def closes_block(self) -> bool:
        return bool(self.signature or self.redacted or self.id)


@value
class RawContent:
    """Output content the gateway has no typed event for (a Mistral `reference` chunk citing
    documents...), passed on as the provider's JSON rather than dropped."""

    type: str
    raw: Mapping[str, Any]


@value
class ToolCallStart:
    index: int
    id: str
    name: str


@value
class ToolCallDelta:
    index: int
    arguments_delta: str


@value
class ToolCallEnd:
    index: int
    call: ToolCall


@value
class UsageEvent:
    usage: Usage


@value
class ProviderFinish:
    """What a provider says at the end of its stream; the router adds timing and attempts."""

    reason: FinishReason
    raw_reason: str = ""
    model: str = ""
    response_id: str = ""
    emulated: tuple[str, ...] = ()  # request fields the codec emulated (docs/capabilities.md)


@value
class Cost:
    """What usage cost by the price table: micro-USD; `known` False when the model has no price
    (the amount is then unknown, not 0). `usage_source`: "provider", "partial", "estimated" or "none"."""

    amount_micros: int
    known: bool
    usage_source: str


UNKNOWN_COST = Cost(0, known=False, usage_source="none")


@value
class Attempt:
    provider: str
    model: str
    outcome: str  # "ok" or a status code name
    error: str
    latency_us: int
    cost: Cost = UNKNOWN_COST


@value
class Timing:
    gateway_overhead_us: int
    time_to_first_token_us: int
    total_us: int
    upstream_us: int


@value
class Finish:
    """The final event the gateway sends: the provider's finish plus routing facts."""

    reason: FinishReason
    raw_reason: str
    provider: str
    model: str
    timing: Timing
    attempts: tuple[Attempt, ...]
    response_id: str = ""
    cost: Cost = UNKNOWN_COST  # every attempt's, failed-over ones included
    emulated: tuple[str, ...] = ()


StreamEvent = (
    TextDelta
    | TextDeltaWithLogprobs
    | ReasoningDelta
    | ToolCallStart
    | ToolCallDelta
    | ToolCallEnd
    | RawContent
    | UsageEvent
    | ProviderFinish
)
GatewayEvent = StreamEvent | Finish
CONTENT_EVENTS = (TextDelta, ReasoningDelta, ToolCallStart, ToolCallDelta, ToolCallEnd, RawContent)


# --- whole responses -------------------------------------------------------------------------


@dataclass(slots=True)
class ChatResponse:
    text: str = ""
    reasoning: str = ""
    reasoning_signature: str = ""
    reasoning_parts: list[ReasoningPart] = field(default_factory=list)  # blocks with their state
    tool_calls: list[ToolCall] = field(default_factory=list)
    raw_content: list[RawContent] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    finish: ProviderFinish | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)  # of `text`'s tokens, when asked


@dataclass(slots=True)
class CompletionResponse:
    text: str = ""
    usage: Usage = field(default_factory=Usage)
    finish: ProviderFinish | None = None


@value
class TokenCount:
    input_tokens: int
    estimated: bool
    model: str = ""


@dataclass(slots=True)
class EmbedResult:
    vectors: list[list[float]]
    usage: Usage = field(default_factory=Usage)
    model: str = ""


@value
class ModelInfo:
    id: str
    display_name: str = ""
    context_window: int = 0
    max_output_tokens: int = 0
    vision: bool = False
    tools: bool = False
    reasoning: bool = False
    embeddings: bool = False


# --- provider description --------------------------------------------------------------------


@value
class RateLimits:
    requests_per_minute: int = 0
    tokens_per_minute: int = 0
    max_concurrent: int = 0


@value
class Capabilities:
    """What a provider can do, declared as data (the seed's `ProviderCapabilities`)."""

    max_tokens: int = 0
    streaming: bool = True
    tools: bool = False
    vision: bool = False
    embeddings: bool = False
    reasoning: bool = False
    json_output: bool = False
    # A JSON schema on a model without native structured output (catalog) is answered through a
    # forced tool (Anthropic's documented fallback), for models with tools.
    schema_by_forced_tool: bool = False
    exact_token_count: bool = False
    completion: bool = True
    rate_limits: RateLimits = RateLimits()


@value
class HealthStatus:
    healthy: bool
    message: str = ""
    latency_us: int = 0
