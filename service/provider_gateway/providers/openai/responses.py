"""The OpenAI Responses API (`POST /responses`) as an upstream wire: request bodies.

Pure: no I/O. Mapped as OpenAI documents the API (../shared/docs/wire-reference-2.md section 2;
the `openai` SDK's `types/responses/` are the oracle):
- messages become `input` items: user and system messages, the assistant's text as `message`
  items, its tool calls as `function_call` items, tool results as `function_call_output` items,
  and its reasoning parts that carry a Responses item id as `reasoning` items (summary and
  `encrypted_content`), which is how multi-turn reasoning works without server-side state;
- tools are flat (`{"type": "function", "name", ...}`) with `strict: false`, as Chat Completions
  tools are (Responses would default to strict schemas, which plain schemas fail);
- `reasoning: {effort, summary: "auto"}` when reasoning is asked for, `max_output_tokens`,
  `response_format` as `text.format`;
- `store: false` unless configured, and then `include: ["reasoning.encrypted_content"]` for
  reasoning, so the next turn can send the reasoning back (OpenAI refuses that include on models
  without reasoning: it is asked only for reasoning models or when reasoning is requested);
- `logprobs` as `include: ["message.output_text.logprobs"]` and `top_logprobs`;
- stop sequences do not exist in this API: a request with `stop` is refused, not sent without it.
"""

from __future__ import annotations

from typing import Any

from provider_gateway.domain import (
    ChatRequest,
    ImagePart,
    Message,
    ReasoningPart,
    ResponseFormatType,
    Role,
    TextPart,
    ToolCallPart,
    ToolChoiceMode,
    ToolResultPart,
)
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.issuers import RESPONSES_KINDS
from provider_gateway.providers.openai.codec import image_url, is_reasoning_model, json_schema_format
from provider_gateway.providers.openai.logprobs import refuse_on_reasoning_models
from provider_gateway.providers.owned_options import owned, refuse_owned
from provider_gateway.providers.structured_output import unhonoured

# Body fields the gateway owns: provider_options may not change what is asked, how it streams, how
# much it costs, nor the reasoning state it keeps (owned_options.py).
OWNED_FIELDS = owned(
    "model", "input", "instructions", "stream", "max_output_tokens", "temperature", "top_p",
    "tools", "tool_choice", "text", "reasoning", "store", "include", "user", "metadata",
    "top_logprobs",
)  # fmt: skip
ENCRYPTED_REASONING = "reasoning.encrypted_content"
TEXT_LOGPROBS = "message.output_text.logprobs"


def responses_body(
    request: ChatRequest, *, stream: bool, store: bool, model: str, provider: str
) -> dict[str, Any]:
    """The `/responses` body for this request; `model` is what the host calls it (Azure: the
    deployment)."""
    if request.stop:
        raise GatewayError(
            ErrorKind.FAILED_PRECONDITION,
            f"stop: provider {provider!r} uses the OpenAI Responses API, which has no stop sequences "
            f"(model {request.model!r}); remove `stop` or use a Chat Completions provider",
            provider=provider,
        )
    reasoning_model = is_reasoning_model(request.model)
    body: dict[str, Any] = {"model": model, "input": input_items(request.messages, reasoning_model)}
    if request.max_tokens is not None:
        body["max_output_tokens"] = request.max_tokens
    for field, value in (("temperature", request.temperature), ("top_p", request.top_p)):
        if value is not None and reasoning_model:
            raise unhonoured(field, "OpenAI", request.model, "reasoning models take no sampling settings")
        if value is not None:
            body[field] = value
    reasoning = request.reasoning
    wants_reasoning = bool(reasoning and (reasoning.enabled or reasoning.effort))
    if wants_reasoning and reasoning is not None:
        body["reasoning"] = {"summary": "auto"} | ({"effort": reasoning.effort} if reasoning.effort else {})
    if tools := _tools(request):
        body["tools"] = tools
        if request.tool_choice:
            mode = request.tool_choice.mode
            body["tool_choice"] = (
                {"type": "function", "name": request.tool_choice.name}
                if mode is ToolChoiceMode.TOOL
                else mode.value
            )
    fmt = request.response_format
    if fmt and fmt.type is ResponseFormatType.JSON_OBJECT:
        body["text"] = {"format": {"type": "json_object"}}
    elif fmt and fmt.type is ResponseFormatType.JSON_SCHEMA:
        body["text"] = {"format": {"type": "json_schema", **json_schema_format(fmt)}}
    body["store"] = store
    include = [ENCRYPTED_REASONING] if not store and (reasoning_model or wants_reasoning) else []
    if request.logprobs is not None:
        refuse_on_reasoning_models(request, reasoning_model)
        include.append(TEXT_LOGPROBS)
        if request.logprobs.top_logprobs:
            body["top_logprobs"] = request.logprobs.top_logprobs
    if include:
        body["include"] = include
    if stream:
        body["stream"] = True
    body.update(refuse_owned(request.provider_options, OWNED_FIELDS))
    return body


def _tools(request: ChatRequest) -> list[dict[str, Any]]:
    if request.tool_choice and request.tool_choice.mode is ToolChoiceMode.NONE:
        return []
    return [
        {
            "type": "function",
            "name": t.name,
            "description": t.description,
            "parameters": dict(t.parameters),
            "strict": False,
        }
        for t in request.tools
    ]


def input_items(messages: list[Message], reasoning_model: bool) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for message in messages:
        if message.role is Role.SYSTEM:
            role = "developer" if reasoning_model else "system"
            items.append({"type": "message", "role": role, "content": message.text})
        elif message.role is Role.ASSISTANT:
            items.extend(_assistant(message))
        else:
            items.extend(_user(message))
    return items


def _user(message: Message) -> list[dict[str, Any]]:
    items = [
        {"type": "function_call_output", "call_id": p.tool_call_id, "output": p.content}
        for p in message.content
        if isinstance(p, ToolResultPart)
    ]
    parts = [p for p in message.content if isinstance(p, TextPart | ImagePart)]
    if parts:
        content: Any = (
            message.text
            if all(isinstance(p, TextPart) for p in parts)
            else [
                {"type": "input_text", "text": p.text}
                if isinstance(p, TextPart)
                else {"type": "input_image", "image_url": image_url(p), "detail": "auto"}
                for p in parts
            ]
        )
        items.append({"type": "message", "role": "user", "content": content})
    return items


def _assistant(message: Message) -> list[dict[str, Any]]:
    """The turn's parts in their order; consecutive text becomes one `message` item."""
    items: list[dict[str, Any]] = []
    text: list[str] = []

    def flush() -> None:
        if any(text):
            items.append({"type": "message", "role": "assistant", "content": "".join(text)})
        text.clear()

    for part in message.content:
        if isinstance(part, TextPart):
            text.append(part.text)
            continue
        flush()
        if isinstance(part, ToolCallPart):
            call = part.call
            items.append(
                {
                    "type": "function_call",
                    "call_id": call.id,
                    "name": call.name,
                    "arguments": call.arguments_json,
                }
            )
        elif isinstance(part, ReasoningPart) and part.id and not part.redacted and _responses_item(part):
            # Only Responses' own items (they carry its id); other providers' reasoning cannot
            # be given to this API as reasoning.
            item: dict[str, Any] = {
                "type": "reasoning",
                "id": part.id,
                "summary": [{"type": "summary_text", "text": part.text}] if part.text else [],
            }
            if part.signature:
                item["encrypted_content"] = part.signature
            items.append(item)
    flush()
    return items


def _responses_item(part: ReasoningPart) -> bool:
    """Whether a part with an id may be a Responses item: OpenRouter's entries carry ids too."""
    return not part.issuer or part.issuer in RESPONSES_KINDS
