"""InvokeModel for every text family Bedrock documents: one codec per family (request body,
whole response, stream chunks), and the decoder the adapter drives.

Families without a codec (Qwen, DeepSeek V3, imported and custom models) go through Converse;
see docs/vendor-providers.md. A body or chunk the family's codec cannot read, and a stream that
ends before the family's final message, are UNAVAILABLE naming the model; never an empty success.

Usage: Bedrock's `amazon-bedrock-invocationMetrics` (on the last stream chunk) are what Bedrock
bills and reports in CloudWatch and the `X-Amzn-Bedrock-*-Token-Count` headers, so they win over
the model's own counts (Claude's `message_delta` usage can differ); both stay in `Usage.raw`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from provider_gateway.domain import (
    ChatResponse,
    CompletionRequest,
    CompletionResponse,
    ProviderFinish,
    StreamEvent,
    Usage,
    UsageEvent,
)
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.bedrock.common import INVOCATION_METRICS, count, finish_reason, obj, usage
from provider_gateway.providers.bedrock.invoke.base import ConverseFeatures, FamilyCodec
from provider_gateway.providers.bedrock.invoke.chat import (
    GptOssCodec,
    JambaCodec,
    MistralChatCodec,
    WriterCodec,
)
from provider_gateway.providers.bedrock.invoke.claude import ClaudeCodec
from provider_gateway.providers.bedrock.invoke.cohere import CohereChatCodec, CohereCommandCodec
from provider_gateway.providers.bedrock.invoke.flat import (
    DeepSeekCodec,
    LlamaCodec,
    MistralTextCodec,
    TitanCodec,
)
from provider_gateway.providers.bedrock.invoke.nova import NovaCodec
from provider_gateway.providers.bedrock.models import Family, family, is_embedding_model, strip_profile

CODECS: dict[Family, type[FamilyCodec]] = {
    Family.ANTHROPIC: ClaudeCodec,
    Family.NOVA: NovaCodec,
    Family.TITAN: TitanCodec,
    Family.LLAMA: LlamaCodec,
    Family.MISTRAL: MistralTextCodec,
    Family.MISTRAL_CHAT: MistralChatCodec,
    Family.COHERE: CohereCommandCodec,
    Family.COHERE_CHAT: CohereChatCodec,
    Family.JAMBA: JambaCodec,
    Family.GPT_OSS: GptOssCodec,
    Family.DEEPSEEK: DeepSeekCodec,
    Family.WRITER: WriterCodec,
}
# Bedrock's own counts, per invocationMetrics key -> usage slot.
METRICS = {
    "inputTokenCount": "input",
    "outputTokenCount": "output",
    "cacheReadInputTokenCount": "cache_read",
    "cacheWriteInputTokenCount": "cache_write",
}


def converse_features(model_id: str) -> ConverseFeatures | None:
    """What Converse offers `model_id`, as its family's codec knows it; None for a model of no
    known family (imported and custom models, Qwen...), which are sent as asked."""
    codec = CODECS.get(family(model_id))
    if codec is None:
        return None
    if is_embedding_model(model_id):
        return ConverseFeatures()  # Titan and Cohere embeddings: no chat at all
    return codec.features(strip_profile(model_id).lower().partition(".")[2])


def codec_for(family: Family, model: str) -> FamilyCodec:
    codec = CODECS.get(family)
    if codec is None:
        raise GatewayError(
            ErrorKind.FAILED_PRECONDITION,
            f"model: no InvokeModel body is documented for {model!r}; use Chat (Converse) instead",
        )
    return codec(model)


def invoke_body(
    family: Family, request: CompletionRequest, default_max_tokens: int, *, stream: bool = False
) -> dict[str, Any]:
    """The InvokeModel JSON body the family documents, for a plain prompt completion."""
    codec = codec_for(family, request.model)
    default = min(default_max_tokens, codec.max_tokens_limit or default_max_tokens)
    body = codec.request(request, request.max_tokens or default)
    if stream and codec.stream_flag:
        body[codec.stream_flag] = True
    return body


class InvokeDecoder:
    """Decodes one family's InvokeModel response or stream chunks (already JSON-decoded) into events.

    `feed` takes a chunk; `end` returns usage and finish, or fails if the stream stopped before
    the family's final message. A whole response goes through `response`.
    """

    def __init__(self, family: Family, model: str) -> None:
        self.codec = codec_for(family, model)
        self.model = model
        self.metrics: dict[str, int] = {}

    def feed(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        if not isinstance(chunk, Mapping):
            raise self.codec.unreadable("a stream chunk that is not a JSON object")
        metrics = obj(chunk.get(INVOCATION_METRICS))
        if metrics:  # Bedrock's own counts, on the last chunk of every family
            self.codec.raw_usage[INVOCATION_METRICS] = dict(metrics)
            self.metrics = {slot: count(metrics.get(key)) for key, slot in METRICS.items() if key in metrics}
            if set(chunk) == {INVOCATION_METRICS}:
                return []
        return self.codec.chunk(chunk)

    def end(self) -> list[StreamEvent]:
        if not self.codec.finished:
            raise GatewayError(
                ErrorKind.UNAVAILABLE,
                f"Bedrock stream for {self.model} ended before {self.codec.end_marker}",
            )
        return self._close()

    def response(self, body: Mapping[str, Any]) -> list[StreamEvent]:
        if not isinstance(body, Mapping):
            raise self.codec.unreadable("an InvokeModel response that is not a JSON object")
        events = self.codec.body(body)
        if self.codec.stop_reason is None:
            raise self.codec.unreadable(f"the InvokeModel response has no {self.codec.stop_field}")
        return events + self._close()

    def heard(self) -> Usage | None:
        """The usage reported so far (Claude's `message_start` and `message_delta`, Llama's counts,
        the invocation metrics...), None before any. A stream cut after it is charged these figures
        (providers/reported_usage.py)."""
        counts = self._counts()
        return self._usage(counts) if counts else None

    def _counts(self) -> dict[str, int]:
        return {**self.codec.model_usage, **self.metrics}

    def _usage(self, counts: Mapping[str, int]) -> Usage:
        return usage(
            counts.get("input", 0),
            counts.get("output", 0),
            counts.get("cache_read", 0),
            counts.get("cache_write", 0),
            dict(self.codec.raw_usage),
        )

    def _close(self) -> list[StreamEvent]:
        used = self._usage(self._counts())
        stop = self.codec.stop_reason or ""
        finish = ProviderFinish(
            finish_reason(stop), stop, model=self.model, response_id=self.codec.response_id
        )
        return [*self.codec.tools.end_all(), *self.codec.closing(), UsageEvent(used), finish]


def completion(whole: ChatResponse, model: str) -> CompletionResponse:
    """A unary Complete's answer. CompleteResponse carries text only, so an answer with a tool call
    (which a completion cannot ask for: `tools` and `toolConfig` are refused in provider_options)
    is refused rather than returned without it; CompleteStream relays the call's events."""
    if whole.tool_calls:
        names = ", ".join(call.name for call in whole.tool_calls)
        raise GatewayError(
            ErrorKind.FAILED_PRECONDITION,
            f"{model} answered with a tool call ({names}); Complete returns text only: "
            "use CompleteStream, which relays tool calls, or Chat",
        )
    return CompletionResponse(text=whole.text, usage=whole.usage, finish=whole.finish)
