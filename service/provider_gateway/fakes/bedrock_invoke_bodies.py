"""The fake Bedrock's InvokeModel bodies for the families beyond the first six: the request
fields each requires, and its responses and stream chunks in the shape its Bedrock page documents.

Mistral AI chat completion (Mistral Large 24.07, Pixtral Large), Cohere Command (legacy),
AI21 Labs Jamba, OpenAI gpt-oss, DeepSeek-R1 and Writer Palmyra. Also recorded-style bodies the
tests replay: a Nova tool-use answer, and a Claude stream whose usage disagrees with Bedrock's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# model id fragment -> the fake's family name, checked before the first six families.
FAMILIES = (
    ("mistral.mistral-large-2407", "mistral-chat"),
    ("mistral.mistral-large-2411", "mistral-chat"),
    ("mistral.pixtral", "mistral-chat"),
    ("cohere.command-text", "cohere-command"),
    ("cohere.command-light", "cohere-command"),
    ("ai21.jamba", "jamba"),
    ("openai.gpt-oss", "gpt-oss"),
    ("deepseek.r1", "deepseek"),
    ("writer.palmyra", "writer"),
)
REQUIRED_FIELDS = {
    "mistral-chat": ("messages",),
    "cohere-command": ("prompt",),
    "jamba": ("messages",),
    "gpt-oss": ("messages",),
    "deepseek": ("prompt",),
    "writer": ("messages",),
}
CHAT_COMPLETIONS = ("jamba", "gpt-oss", "writer")


def family_of(model_id: str) -> str:
    return next((family for fragment, family in FAMILIES if fragment in model_id), "")


def metrics(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "amazon-bedrock-invocationMetrics": {
            "inputTokenCount": input_tokens,
            "outputTokenCount": output_tokens,
            "invocationLatency": 420,
            "firstByteLatency": 120,
        }
    }


def response(family: str, text: str) -> dict[str, Any]:
    """A whole InvokeModel response."""
    if family == "mistral-chat":
        message = {"role": "assistant", "content": text, "tool_calls": None}
        return {"choices": [{"index": 0, "message": message, "stop_reason": "stop"}]}
    if family == "cohere-command":
        generation = {"id": "gen-1", "text": text, "finish_reason": "COMPLETE", "index": 0}
        return {"id": "cmd-1", "generations": [generation], "prompt": "Say hi"}
    if family == "deepseek":
        return {"choices": [{"text": text, "stop_reason": "stop"}]}
    return chat_completion(text)


def chat_completion(text: str, finish: str = "stop", usage: tuple[int, int] = (9, 4)) -> dict[str, Any]:
    """OpenAI's chat completion object, as gpt-oss, Jamba and Palmyra answer on Bedrock."""
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1754400000,
        "model": "fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
    }


def stream_chunks(family: str, pieces: Sequence[str]) -> list[dict[str, Any]]:
    """InvokeModelWithResponseStream chunks; the last carries Bedrock's invocation metrics."""
    last = metrics(9, len(pieces))
    chunks: list[dict[str, Any]]
    if family == "mistral-chat":
        chunks = [
            {"choices": [{"index": 0, "message": {"role": "assistant", "content": p}, "stop_reason": None}]}
            for p in pieces
        ]
        chunks[-1]["choices"][0]["stop_reason"] = "stop"
    elif family == "cohere-command":
        chunks = [{"text": p, "is_finished": False} for p in pieces]
        chunks.append({"is_finished": True, "finish_reason": "COMPLETE"})
    elif family == "deepseek":
        chunks = [{"choices": [{"text": p, "stop_reason": None}]} for p in pieces]
        chunks[-1]["choices"][0]["stop_reason"] = "stop"
    else:
        chunks = [chat_chunk({"content": p}) for p in pieces]
        chunks.append(chat_chunk({}, finish="stop"))
    chunks[-1] |= last
    return chunks


def chat_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


# --- recorded-style bodies ---------------------------------------------------------------------


NOVA_TOOL_USE = {
    "output": {
        "message": {
            "role": "assistant",
            "content": [
                {"text": "<thinking>The user wants the weather; I will call the tool.</thinking>"},
                {
                    "toolUse": {
                        "toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    }
                },
            ],
        }
    },
    "stopReason": "tool_use",
    "usage": {"inputTokens": 432, "outputTokens": 55, "totalTokens": 487},
}


def nova_tool_use_chunks() -> list[dict[str, Any]]:
    """The same tool call, streamed."""
    return [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockStart": {"start": {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather"}}, "contentBlockIndex": 0}},
        {"contentBlockDelta": {"delta": {"toolUse": {"input": '{"city": '}}, "contentBlockIndex": 0}},
        {"contentBlockDelta": {"delta": {"toolUse": {"input": '"Paris"}'}}, "contentBlockIndex": 0}},
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"messageStop": {"stopReason": "tool_use"}},
        {"metadata": {"usage": {"inputTokens": 432, "outputTokens": 55}}, **metrics(432, 55)},
    ]  # fmt: skip


def claude_disagreeing_chunks(model_output: int = 130, billed_output: int = 98) -> list[dict[str, Any]]:
    """A Claude stream whose `message_delta` usage and Bedrock's invocation metrics disagree."""
    return [
        {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 25, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "pong"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": model_output}},
        {"type": "message_stop", **metrics(25, billed_output)},
    ]  # fmt: skip
