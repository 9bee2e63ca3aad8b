"""The shape every InvokeModel family codec shares: its state, its tool calls and its errors.

A family codec reads the family's whole response (`body`) and its stream chunks (`chunk`), and
records the stop field (`stop_reason`, None until the body or a chunk carries it), whether the
stream's final message arrived (`finished`) and the model's own token counts (`model_usage`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from provider_gateway.domain import (
    CompletionRequest,
    StreamEvent,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
)
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.bedrock.common import OWNED_FIELDS, count
from provider_gateway.providers.owned_options import refuse_owned
from provider_gateway.providers.structured_output import unhonoured

# The model's own usage: input, output, cache read, cache write (Bedrock excludes cache from input).
USAGE_KEYS = ("input", "output", "cache_read", "cache_write")


@dataclass(slots=True, frozen=True)
class ConverseFeatures:
    """What Converse offers one model of a family, per AWS's "Supported models and model features"
    table and the model providers' Bedrock pages: what the codecs refuse before sending, and what
    ListModels reports."""

    tools: bool = False
    vision: bool = False
    # "": none; "budget": Claude `thinking`; "effort": Nova 2 `reasoningConfig`; "always": the
    # model reasons unasked and takes no reasoning setting.
    reasoning: str = ""


class FamilyCodec:
    """One InvokeModel family: its request body, its response body and its stream chunks."""

    label: ClassVar[str] = ""  # the family as Bedrock's documentation names it
    stop_field: ClassVar[str] = ""  # the field that says why the model stopped
    end_marker: ClassVar[str] = ""  # the stream's final message
    stream_flag: ClassVar[str] = ""  # a body field that must say `true` for a stream, where one must
    # The most the body documents for its maximum, where below common defaults: the configured
    # `default_max_tokens` is capped to it (a caller's own max_tokens goes to Bedrock as given).
    max_tokens_limit: ClassVar[int] = 0
    # What Converse offers the family's models, unless `features` tells them apart.
    converse: ClassVar[ConverseFeatures] = ConverseFeatures()

    @classmethod
    def features(cls, name: str) -> ConverseFeatures:
        """What Converse offers the model `name` (the id without vendor and profile prefix)."""
        return cls.converse

    def __init__(self, model: str) -> None:
        self.model = model
        self.stop_reason: str | None = None
        self.finished = False
        self.response_id = ""
        self.model_usage: dict[str, int] = {}
        self.raw_usage: dict[str, Any] = {}
        self.tools = ToolCalls()

    # --- to override -------------------------------------------------------------------------

    def request(self, request: CompletionRequest, max_tokens: int) -> dict[str, Any]:
        raise NotImplementedError

    def body(self, body: Mapping[str, Any]) -> list[StreamEvent]:
        raise NotImplementedError

    def chunk(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        raise NotImplementedError

    def closing(self) -> list[StreamEvent]:
        """What the family's answer says of itself without a typed event, after its content."""
        return []

    # --- helpers -------------------------------------------------------------------------------

    def unreadable(self, what: str) -> GatewayError:
        """A body or chunk this family's codec cannot read: UNAVAILABLE, so the router may fail over."""
        return GatewayError(
            ErrorKind.UNAVAILABLE,
            f"Bedrock {self.model}: {what}; not a {self.label} InvokeModel payload",
        )

    def stop(self, value: Any) -> None:
        """Record the stop field when it carries a value (streams send null until the end)."""
        if isinstance(value, str) and value:
            self.stop_reason = value

    def take_usage(self, raw: Mapping[str, Any], *names: str) -> None:
        """Record the model's usage object; `names` are its input, output, cache-read, cache-write keys."""
        self.raw_usage.update({k: v for k, v in raw.items() if v is not None})
        for key, name in zip(USAGE_KEYS, names, strict=False):
            if value := count(raw.get(name)):
                self.model_usage[key] = value

    def refuse_stop(self, request: CompletionRequest) -> None:
        """Stop sequences the family's body has no field for: refused, never dropped (issue 17.3)."""
        if request.stop:
            raise unhonoured("stop", "Bedrock", self.model, f"the {self.label} body takes no stop sequences")

    def finish_body(self, body: dict[str, Any], request: CompletionRequest) -> dict[str, Any]:
        """The body with the caller's provider_options merged in (fields the gateway owns refused)."""
        body.update(refuse_owned(request.provider_options, OWNED_FIELDS))
        return body


def put(target: dict[str, Any], **values: Any) -> None:
    """Set the optional fields the caller gave (None and [] mean "not given")."""
    for key, value in values.items():
        if value is not None and value != []:
            target[key] = list(value) if isinstance(value, list) else value


def hashable(key: Any) -> Any:
    """A block or call index as a dict key: the upstream's JSON may put a list or object there."""
    return key if isinstance(key, int | str) else repr(key)


class ToolCalls:
    """Tool calls as they stream: keyed by the family's block or call index, numbered from 0."""

    def __init__(self) -> None:
        self._open: dict[Any, tuple[int, str, str, list[str]]] = {}
        self._count = 0

    def start(self, key: Any, call_id: str, name: str) -> list[StreamEvent]:
        key = hashable(key)
        index = self._count
        self._count += 1
        self._open[key] = (index, call_id, name, [])
        return [ToolCallStart(index, call_id, name)]

    def is_open(self, key: Any) -> bool:
        key = hashable(key)
        return key in self._open

    def delta(self, key: Any, piece: str) -> list[StreamEvent]:
        key = hashable(key)
        call = self._open.get(key)
        if call is None or not piece:
            return []
        call[3].append(piece)
        return [ToolCallDelta(call[0], piece)]

    def end(self, key: Any) -> list[StreamEvent]:
        key = hashable(key)
        call = self._open.pop(key, None)
        if call is None:
            return []
        return [ToolCallEnd(call[0], ToolCall(call[1], call[2], "".join(call[3]) or "{}"))]

    def end_all(self) -> list[StreamEvent]:
        return [event for key in list(self._open) for event in self.end(key)]

    def whole(self, call_id: str, name: str, arguments_json: str) -> list[StreamEvent]:
        """A call that arrives complete (a unary body)."""
        key = ("whole", self._count)
        return self.start(key, call_id, name) + self.delta(key, arguments_json) + self.end(key)
