"""Property-based fuzzing of the vendor stream decoders and error/model parsers: whatever JSON an
upstream sends, the only exception that escapes is GatewayError (which becomes a gRPC status and,
being UNAVAILABLE, lets the router fail over). Any other exception would reach the client as INTERNAL.
"""

from __future__ import annotations

import copy
import importlib
import inspect
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from provider_gateway.domain import Usage
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.bedrock.invoke.nova import EVENTS as NOVA_EVENTS
from provider_gateway.providers.bedrock.models import Family

# Keys and type names the decoders look at, so that generated values get past the first checks.
VOCABULARY = [
    # Anthropic
    "type",
    "index",
    "delta",
    "content_block",
    "message",
    "usage",
    "stop_reason",
    "error",
    "text",
    "thinking",
    "signature",
    "partial_json",
    "input",
    "id",
    "name",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "completion",
    "model",
    "data",
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "text_delta",
    "input_json_delta",
    "thinking_delta",
    "signature_delta",
    "tool_use",
    # Gemini
    "candidates",
    "content",
    "parts",
    "functionCall",
    "args",
    "finishReason",
    "usageMetadata",
    "promptTokenCount",
    "candidatesTokenCount",
    "thoughtsTokenCount",
    "cachedContentTokenCount",
    "totalTokenCount",
    "thought",
    "thoughtSignature",
    "modelVersion",
    "responseId",
    "promptFeedback",
    "blockReason",
    "models",
    "supportedGenerationMethods",
    "inputTokenLimit",
    "outputTokenLimit",
    "details",
    "@type",
    "retryDelay",
    "status",
    "code",
    # Cohere
    "event_type",
    "tool_call_start",
    "tool_call_delta",
    "tool_call_end",
    "content-delta",
    "content-start",
    "tool-call-start",
    "tool-call-delta",
    "tool-call-end",
    "message-end",
    "message-start",
    "tool_calls",
    "function",
    "arguments",
    "finish_reason",
    "billed_units",
    # OpenAI Chat Completions and Ollama
    "choices",
    "reasoning_content",
    "prompt_tokens",
    "completion_tokens",
    "prompt_tokens_details",
    "cached_tokens",
    "embedding",
    "embeddings",
    "values",
    "done",
    "done_reason",
    "prompt_eval_count",
    "eval_count",
    "totalTokens",
    "predictions",
    "statistics",
    "token_count",
    "tokens",
    "tool-plan-delta",
    "tool_plan",
    # Mistral
    "reference",
    "reference_ids",
    "num_cached_tokens",
    "prompt_token_details",
    # OpenAI Responses
    "output",
    "output_index",
    "item",
    "call_id",
    "encrypted_content",
    "summary",
    "summary_index",
    "incomplete_details",
    "reason",
    "response",
    "response.created",
    "response.output_item.added",
    "response.output_item.done",
    "response.output_text.delta",
    "response.reasoning_summary_text.delta",
    "response.function_call_arguments.delta",
    "response.completed",
    "response.incomplete",
    "response.failed",
    "function_call",
    "reasoning",
    "output_text",
    "input_tokens_details",
    "output_tokens_details",
    # Bedrock InvokeModel families
    "amazon-bedrock-invocationMetrics",
    "inputTokenCount",
    "outputTokenCount",
    "outputText",
    "results",
    "completionReason",
    "totalOutputTextTokenCount",
    "generation",
    "generation_token_count",
    "outputs",
    "generations",
    "is_finished",
    "stream-end",
    "text-generation",
    "tool-calls-generation",
    "parameters",
    *NOVA_EVENTS,
    "stopReason",
    "toolUse",
    "toolUseId",
    "contentBlockIndex",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(VOCABULARY),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(VOCABULARY), st.text(max_size=8)), children, max_size=6),
    ),
    max_leaves=8,
)
events = st.lists(
    st.one_of(json_values, st.dictionaries(st.sampled_from(VOCABULARY), json_values, min_size=1, max_size=6)),
    max_size=8,
)
FUZZ = settings(
    max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
# The decoder tests draw once for all decoders, where each decoder once had its own 120 draws (a few
# of them different): three times as many, so that no decoder is tried on less than before.
FUZZ_EVERY_DECODER = settings(FUZZ, max_examples=3 * 120)
# Decoders are built by a factory: the OpenAI parser also takes its host preset.
DECODERS = {
    "anthropic-messages": ("provider_gateway.providers.anthropic.codec", "MessagesStreamDecoder"),
    "anthropic-complete": ("provider_gateway.providers.anthropic.codec", "CompletionStreamDecoder"),
    "gemini": ("provider_gateway.providers.gemini.codec", "GenerateStreamDecoder"),
    "cohere": ("provider_gateway.providers.cohere.codec", "ChatStreamDecoder"),
    "openai": ("provider_gateway.providers.openai.stream", "ChatStreamParser"),
    "mistral": ("provider_gateway.providers.openai.stream", "ChatStreamParser"),
    "openai-responses": ("provider_gateway.providers.openai.responses_stream", "ResponsesStreamDecoder"),
    "ollama": ("provider_gateway.providers.ollama.codec", "ChatStreamParser"),
    # Bedrock InvokeModel: one codec per model family, behind one decoder.
    **{
        f"bedrock-{family.value}": ("provider_gateway.providers.bedrock.invoke", "InvokeDecoder")
        for family in Family
        if family is not Family.OTHER
    },
}
PARSERS = {
    "anthropic-error": ("provider_gateway.providers.anthropic.codec", "error_from_body"),
    "gemini-error": ("provider_gateway.providers.gemini.codec", "error_from_body"),
    "anthropic-models": ("provider_gateway.providers.anthropic.codec", "parse_models"),
    "gemini-models": ("provider_gateway.providers.gemini.codec", "parse_models"),
    "gemini-embeddings": ("provider_gateway.providers.gemini.codec", "parse_embeddings"),
    "cohere-models": ("provider_gateway.providers.cohere.codec", "parse_models"),
    "cohere-embeddings": ("provider_gateway.providers.cohere.codec", "parse_embeddings"),
    "cohere-tokenize": ("provider_gateway.providers.cohere.codec", "parse_token_count"),
    "openai-models": ("provider_gateway.providers.openai.codec", "parse_models"),
    "openai-embeddings": ("provider_gateway.providers.openai.codec", "parse_embeddings"),
    "ollama-models": ("provider_gateway.providers.ollama.codec", "parse_models"),
    "ollama-embeddings": ("provider_gateway.providers.ollama.codec", "parse_embeddings"),
    "vertex-predictions": ("provider_gateway.providers.vertex.codec", "parse_predictions"),
    "count-endpoint": ("provider_gateway.providers.shapes", "count_at"),
}
# Extra positional arguments some parsers take besides the body.
PARSER_ARGS: dict[str, tuple[Any, ...]] = {
    "openai-embeddings": ("model",),
    "ollama-embeddings": ("model",),
    "count-endpoint": ("totalTokens",),
}


def decoder_for(label: str) -> Any:
    module, name = DECODERS[label]
    if label.startswith("bedrock-"):
        family = Family(label.removeprefix("bedrock-"))
        return lambda: load(module, name)(family, "fuzz-model")
    return decoder_factory(module, name, "mistral" if label == "mistral" else "openai")


def decoder_factory(module: str, name: str, preset: str = "openai") -> Any:
    decoder_class = load(module, name)
    if module.endswith("openai.stream"):
        wire_for = load("provider_gateway.providers.openai.wires", "wire_for")
        presets = load("provider_gateway.providers.openai.presets", "PRESETS")
        return lambda: decoder_class("fuzz", wire_for(presets[preset]))
    return lambda: decoder_class(provider="fuzz")


def load(module: str, name: str) -> Any:
    return getattr(importlib.import_module(module), name)


def every_decoder() -> dict[str, Any]:
    """A new-decoder factory per label. The fuzz tests feed each drawn value to every decoder:
    drawing the nested JSON is what costs (some 20 ms a value against microseconds of decoding),
    and the draws are derandomized, so one test per label drew (nearly) the same values again."""
    return {label: decoder_for(label) for label in sorted(DECODERS)}


def test_stream_decoders_raise_only_gateway_errors() -> None:
    new_decoders = every_decoder()

    @FUZZ_EVERY_DECODER
    @given(events)
    # Shapes that broke decoders once, always tried first.
    @example([{"delta": 1}])
    @example([{"candidates": 1.0}])
    @example([{"candidates": [{"content": {"parts": [None]}}]}])
    @example([{"promptFeedback": "0"}])
    @example([{"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta"}}])
    @example([{"choices": ["x"]}])
    @example([{"message": {"tool_calls": [1]}, "done": True, "eval_count": "many"}])
    @example([{"type": "message_stop"}, {"usage": {"input_tokens": float("nan")}}])
    # Shapes the per-decoder runs reached only by chance: a usage-only last chunk, a whole body,
    # Titan's counts, Cohere's message-end.
    @example([{"usage": {"prompt_tokens": 1, "completion_tokens": 2}}])
    @example([{"generations": [{"text": "x", "finish_reason": "COMPLETE"}]}])
    @example([{"outputText": "x", "completionReason": "FINISH", "inputTextTokenCount": 3, "tokenCount": 2}])
    @example(
        [
            {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "x"}}}},
            {
                "type": "message-end",
                "delta": {"finish_reason": "COMPLETE", "usage": {"tokens": {"input_tokens": 1}}},
            },
        ]
    )
    def run(sequence: list[Any]) -> None:
        for label, new_decoder in new_decoders.items():
            try:
                # A copy each: a decoder may keep or change what it is fed.
                feed_to_the_end(new_decoder(), copy.deepcopy(sequence))
            except GatewayError:
                pass
            except Exception as error:
                error.add_note(f"decoder: {label}")
                raise

    run()


def feed_to_the_end(decoder: Any, sequence: list[Any]) -> None:
    for item in sequence:
        decoder.feed(item)
    # The adapters' end-of-stream calls, which read the accumulated usage and reasons.
    for end in ("end", "close"):
        if hasattr(decoder, end):
            getattr(decoder, end)()
    if getattr(decoder, "finished", True) and hasattr(decoder, "finish"):
        decoder.finish()


def test_unary_readers_raise_only_gateway_errors() -> None:
    """The unary bodies go through the stream decoders' `response`: the same guard holds."""
    new_decoders = every_decoder()

    @FUZZ_EVERY_DECODER
    @example({"choices": [{"message": {"content": [{"type": "text"}]}}]})
    @example({"output": [{"type": "function_call"}, {"type": "reasoning", "summary": [1]}]})
    @example({"output": [], "status": "failed", "error": "x"})
    @example({"content": [{"type": "tool_use", "input": 1}], "stop_reason": "max_tokens"})
    @example({"finish_reason": "TOOL_CALL", "message": {"tool_calls": [{"function": 1}]}})
    @example({"done": True, "message": {"tool_calls": [{}]}})
    @example(
        {
            "message": {
                "content": [{"type": "text", "text": "x"}],
                "tool_calls": [{"id": "c", "function": {"name": "f"}}],
            },
            "finish_reason": "TOOL_CALL",
            "usage": {"tokens": {"input_tokens": 1, "output_tokens": 2}},
        }
    )
    @given(st.one_of(json_values, st.dictionaries(st.sampled_from(VOCABULARY), json_values, max_size=6)))
    def run(body: Any) -> None:
        for label, new_decoder in new_decoders.items():
            try:
                read_body(label, new_decoder(), copy.deepcopy(body))
            except GatewayError:
                pass
            except Exception as error:
                error.add_note(f"decoder: {label}")
                raise

    run()


def read_body(label: str, decoder: Any, body: Any) -> Any:
    """A unary body through the decoder's `response`, with the arguments each one takes."""
    if label in ("openai", "mistral"):
        return decoder.response(body, lambda chars: Usage(output_tokens=chars))
    if label == "anthropic-complete":
        return decoder.response(body, "\n\nHuman: hi\n\nAssistant:")
    return decoder.response(body)


# Bodies with no text and no stop field any decoder knows: empty, unknown, and another vendor's.
UNREADABLE_BODIES = [
    {},
    {"unknown": 1},
    {"generation": "", "prompt_token_count": 3},  # Bedrock Llama's shape, without its stop_reason
    {"outputs": []},  # Bedrock Mistral's list, empty
]


@pytest.mark.parametrize("label", sorted(DECODERS))
@pytest.mark.parametrize("body", UNREADABLE_BODIES, ids=repr)
def test_an_unreadable_body_is_unavailable_never_an_empty_success(label: str, body: dict[str, Any]) -> None:
    """Issue 20.3, for every provider: a body a codec cannot read fails over as UNAVAILABLE; it
    never becomes an answer with no text, no finish reason and no usage."""
    with pytest.raises(GatewayError) as caught:
        read_body(label, decoder_for(label)(), body)
    assert caught.value.kind is ErrorKind.UNAVAILABLE
    if label.startswith("bedrock-"):
        assert "fuzz-model" in caught.value.message  # Bedrock's name the model


@pytest.mark.parametrize("label", sorted(PARSERS))
def test_parser_raises_only_gateway_errors(label: str) -> None:
    module, name = PARSERS[label]
    parse = load(module, name)
    args = PARSER_ARGS.get(label, ())
    # The guard turns a TypeError into GatewayError, so a wrong call would pass unnoticed: check
    # that the fuzzer calls each parser the way its signature says.
    keywords = {"status": 429} if name == "error_from_body" else {}
    inspect.signature(parse).bind({}, *args, **keywords)

    @FUZZ
    @example({"data": True}, None)
    @example({"models": [1]}, None)
    @example({"data": [{"embedding": ["x"]}]}, None)
    @example({"tokens": 3}, None)
    @example({"totalTokens": float("inf")}, None)
    @example({"error": "text"}, 429)
    @given(json_values, st.sampled_from([None, 400, 401, 404, 429, 500, 503, 529]))
    def run(body: Any, status: int | None) -> None:
        try:
            if name == "error_from_body":
                assert isinstance(parse(body, status=status), GatewayError)
            else:
                parse(body, *args)
        except GatewayError:
            pass

    run()


def test_a_wrong_shape_is_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """The client gets UNAVAILABLE; the operator gets the traceback, which tells a vendor's odd JSON
    from a bug of ours on the same path."""
    decoder = load("provider_gateway.providers.anthropic.codec", "MessagesStreamDecoder")(provider="claude")
    with caplog.at_level("WARNING"), pytest.raises(GatewayError, match="claude answered with JSON") as info:
        decoder.feed({"type": "content_block_delta", "index": 0, "delta": 1})
    assert isinstance(info.value.__cause__, AttributeError)
    (record,) = [r for r in caplog.records if "unexpected upstream JSON shape" in r.getMessage()]
    assert record.exc_info is not None
    assert "MessagesStreamDecoder" in record.getMessage()
