"""OpenAI Chat Completions wire format, the family base: request bodies from domain types, and
what every host's answers share (usage, in-stream errors, embeddings, models).

Pure: no I/O. `ChatWire` serves every preset as OpenAI documents the API, the preset's switches
selecting the quirks; a host whose API differs in kind subclasses it (`mistral.MistralWire`) and
overrides only the hooks where it differs.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

from provider_gateway.domain import (
    ChatRequest,
    EmbedResult,
    ImagePart,
    Message,
    ModelInfo,
    ReasoningPart,
    ResponseFormat,
    ResponseFormatType,
    Role,
    StreamEvent,
    TextPart,
    ToolCallPart,
    ToolChoiceMode,
    ToolResultPart,
    Usage,
)
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.http.errors import error_from_response
from provider_gateway.providers.issuers import GEMINI, issued_by
from provider_gateway.providers.openai.content import decode_content, family_chunk
from provider_gateway.providers.openai.logprobs import refuse_on_reasoning_models
from provider_gateway.providers.openai.presets import Preset
from provider_gateway.providers.openai.reasoning_details import sent_details
from provider_gateway.providers.owned_options import owned, refuse_owned
from provider_gateway.providers.shapes import shape_checked
from provider_gateway.providers.structured_output import unhonoured
from provider_gateway.providers.tool_ids import hashed_tool_id
from provider_gateway.providers.vendor_wire import served_tier
from provider_gateway.wire import json_text

# o1, o3, o4 families and gpt-5, also behind a vendor prefix ("openai/o3-mini" on OpenRouter).
_REASONING_MODEL = re.compile(r"^(?:[\w.-]+/)?(?:o[134](?:$|-)|gpt-5)")
_DEEPSEEK_REASONER = re.compile(r"deepseek-(?:reasoner|r1)", re.IGNORECASE)
MAX_TOOL_ID = 40  # the longest tool-call id OpenAI Chat Completions has taken back
# Body fields the gateway owns (Chat Completions and legacy Completions, every preset): a caller's
# provider_options may not change what is asked, how it streams, nor its size (owned_options.py).
OWNED_FIELDS = owned(
    "model", "messages", "prompt", "stream", "stream_options",
    "max_tokens", "max_completion_tokens", "n", "best_of",
    "temperature", "top_p", "stop", "reasoning_effort",
    "tools", "tool_choice", "functions", "function_call", "response_format", "user", "metadata",
    "logprobs", "top_logprobs",
)  # fmt: skip


def is_reasoning_model(model: str) -> bool:
    return bool(_REASONING_MODEL.match(model))


def image_url(part: ImagePart) -> str:
    """The image as the URL Chat Completions takes: its own, or the bytes as a data: URL."""
    if part.data:
        return f"data:{part.media_type or 'image/png'};base64,{base64.b64encode(part.data).decode('ascii')}"
    return part.url


def host_options(options: dict[str, Any], fields: frozenset[str] = OWNED_FIELDS) -> Mapping[str, Any]:
    """The caller's escape hatch for host-specific fields (seed, logit_bias...); owned ones refused."""
    return refuse_owned(options, fields)


def function_tools(request: ChatRequest) -> list[dict[str, Any]]:
    """Tool declarations as OpenAI documents them (Ollama takes the same); none for tool_choice none."""
    if request.tool_choice and request.tool_choice.mode is ToolChoiceMode.NONE:
        return []
    return [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": dict(t.parameters)},
        }
        for t in request.tools
    ]


def json_schema_format(fmt: ResponseFormat) -> dict[str, Any]:
    """`name`, `schema` and `strict` of a JSON-schema format (Chat Completions nests them in
    `json_schema`, the Responses API puts them in `text.format` directly)."""
    schema: dict[str, Any] = {"name": fmt.schema_name or "response", "schema": dict(fmt.json_schema or {})}
    if fmt.strict:
        schema["strict"] = True
    return schema


# OpenAI's `service_tier` words ([OAI-SDK] chat_completion.py, responses/service_tier.py) in
# Usage.service_tier's: `auto` (the Responses API's `response.completed` says it) is the project's
# default tier, standard unless the project is set otherwise; a `fast` request is served and
# reported `priority`; Groq says `on_demand` for its standard tier. `scale` (prepaid) stays.
OPENAI_TIERS = {"default": "standard", "auto": "standard", "on_demand": "standard", "fast": "priority"}


def normalise_usage(raw: dict[str, Any]) -> Usage:
    """OpenAI-family usage: prompt_tokens already includes cached tokens (a subset)."""
    prompt = int(raw.get("prompt_tokens") or 0)
    details = raw.get("prompt_tokens_details") or {}
    cached = int(details.get("cached_tokens") or raw.get("prompt_cache_hit_tokens") or 0)
    completion_details = raw.get("completion_tokens_details") or {}
    completion = int(raw.get("completion_tokens") or 0)
    reasoning = int(completion_details.get("reasoning_tokens") or 0)
    if reasoning and raw.get("total_tokens") == prompt + completion + reasoning:
        # x.ai counts reasoning apart from completion_tokens (its total adds the two); elsewhere
        # it is a part of completion_tokens, as output_tokens wants it.
        completion += reasoning
    return Usage(
        input_tokens=prompt,
        output_tokens=completion,
        cache_read_tokens=cached,
        reasoning_tokens=reasoning,
        raw=dict(raw),
    )


def stream_error(provider: str, error: Any) -> GatewayError:
    """An error object inside a stream (OpenRouter sends `{"error": {"code": 502, "message": ...}}`)."""
    code = error.get("code") if isinstance(error, dict) else None
    status = code if isinstance(code, int) and 400 <= code < 600 else 500
    mapped = error_from_response(provider, status, {}, json_text.dumps({"error": error}))
    mapped.message = f"error inside the stream: {mapped.message}"
    mapped.args = (mapped.message,)
    return mapped


def thought_signature(message: Message) -> str:
    """The first reasoning signature of an assistant turn: Gemini wants it back on the turn's
    first tool call, where it came (as the `gemini` kind sends `thoughtSignature`). A redacted
    block's data, a Responses API item (`id`) or a signature another vendor issued (after a
    fallback: Gemini refuses it) is not Gemini's."""
    return next(
        (
            p.signature
            for p in message.content
            if isinstance(p, ReasoningPart)
            and p.signature
            and not (p.redacted or p.id)
            and issued_by(p.issuer, GEMINI)
        ),
        "",
    )


def _lone_text(message: Message) -> str | None:
    """The text of a message of one text part (nearly every turn), read without a scan of its
    parts; None for any other message."""
    content = message.content
    if len(content) == 1 and type(part := content[0]) is TextPart:
        return part.text
    return None


# Finish reasons with which a host says it cut the answer short itself, and what they mean.
CUT_BY_HOST = {"insufficient_system_resource": "the host's inference system ran out of resources"}


class ChatWire:
    """Chat Completions as OpenAI documents it; each hook is a place where a host may differ."""

    def __init__(self, preset: Preset) -> None:
        self.preset = preset

    # --- request -------------------------------------------------------------------------------

    def chat_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """The `/chat/completions` body for this request on this host."""
        body: dict[str, Any] = {"model": request.model, "messages": self.messages(request)}
        self.sampling(request, body)
        if request.stop:
            body["stop"] = list(request.stop)
        if tools := function_tools(request):
            body["tools"] = tools
            if request.tool_choice:
                mode = request.tool_choice.mode
                body["tool_choice"] = (
                    {"type": "function", "function": {"name": request.tool_choice.name}}
                    if mode is ToolChoiceMode.TOOL
                    else mode.value
                )
        fmt = request.response_format
        if fmt and fmt.type is ResponseFormatType.JSON_OBJECT:
            body["response_format"] = {"type": "json_object"}
        elif fmt and fmt.type is ResponseFormatType.JSON_SCHEMA:
            body["response_format"] = {"type": "json_schema", "json_schema": json_schema_format(fmt)}
        if request.logprobs is not None:
            self.logprobs(request, body)
        if stream:
            body["stream"] = True
            if self.preset.stream_usage:
                body["stream_options"] = {"include_usage": True}
        if request.provider_options:
            body.update(host_options(request.provider_options))
        return body

    def sampling(self, request: ChatRequest, body: dict[str, Any]) -> None:
        """Token limit, sampling and reasoning: OpenAI's reasoning models take other fields, and
        refuse sampling (FAILED_PRECONDITION here rather than the host's 400 or a silent drop)."""
        reasoning_model = is_reasoning_model(request.model)
        if request.max_tokens is not None:
            body["max_completion_tokens" if reasoning_model else "max_tokens"] = request.max_tokens
        for field, value in (("temperature", request.temperature), ("top_p", request.top_p)):
            if value is not None and reasoning_model:
                raise unhonoured(field, "OpenAI", request.model, "reasoning models take no sampling settings")
            if value is not None:
                body[field] = value
        self.reasoning(request, body, reasoning_model)

    def reasoning(self, request: ChatRequest, body: dict[str, Any], reasoning_model: bool) -> None:
        """`reasoning_effort` as the preset's host takes it (Preset.reasoning); a model that cannot
        reason is refused."""
        options = request.reasoning
        if options is None or not (options.enabled or options.effort):
            return
        field = "reasoning.effort" if options.effort else "reasoning.enabled"
        style = self.preset.reasoning
        if style == "openai" and not reasoning_model:
            raise unhonoured(field, "OpenAI", request.model, "only reasoning models (o-series, gpt-5) reason")
        if style == "model" and not _DEEPSEEK_REASONER.search(request.model):
            raise unhonoured(field, "DeepSeek", request.model, "only deepseek-reasoner (R1) reasons")
        if style == "effort" or options.effort:
            body["reasoning_effort"] = options.effort or "medium"

    def logprobs(self, request: ChatRequest, body: dict[str, Any]) -> None:
        """`logprobs` and `top_logprobs`, where the model gives them (refused where it does not)."""
        assert request.logprobs is not None
        if self.preset.reasoning == "openai":
            refuse_on_reasoning_models(request, is_reasoning_model(request.model))
        if self.preset.reasoning == "model" and _DEEPSEEK_REASONER.search(request.model):
            raise unhonoured("logprobs", "DeepSeek", request.model, "deepseek-reasoner gives no logprobs")
        body["logprobs"] = True
        if request.logprobs.top_logprobs:
            body["top_logprobs"] = request.logprobs.top_logprobs

    def messages(self, request: ChatRequest) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for message in request.messages:
            if message.role is Role.SYSTEM:
                role = "developer" if is_reasoning_model(request.model) else "system"
                out.append({"role": role, "content": message.text})
                continue
            if _lone_text(message) is None:  # a lone text part carries no tool result: no scan
                out.extend(
                    {"role": "tool", "tool_call_id": self.tool_id(p.tool_call_id), "content": p.content}
                    for p in message.content
                    if isinstance(p, ToolResultPart)
                )
            if message.role is Role.ASSISTANT:
                out.append(self.assistant(message, request.model))
            elif user := self.user(message):
                out.append(user)
        if self.preset.deepseek_messages and _DEEPSEEK_REASONER.search(request.model):
            out = _deepseek_reasoner_rules(out)
        return out

    def assistant(self, message: Message, model: str) -> dict[str, Any]:
        calls = [p.call for p in message.content if isinstance(p, ToolCallPart)]
        entry: dict[str, Any] = {"role": "assistant", "content": self.assistant_content(message)}
        if calls:
            entry["tool_calls"] = [
                {
                    "id": self.tool_id(c.id),
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments_json},
                }
                for c in calls
            ]
            # Reasoning is replayed only where required: DeepSeek's thinking mode wants the
            # reasoning_content of tool-call turns back (400 otherwise) and ignores it elsewhere,
            # Gemini 3 its thought signature; other hosts reject or ignore unknown message fields.
            reasoning = "".join(p.text for p in message.content if isinstance(p, ReasoningPart))
            if self.preset.deepseek_messages and reasoning:
                entry["reasoning_content"] = reasoning
            if self.preset.thought_signatures and (signature := thought_signature(message)):
                entry["tool_calls"][0]["extra_content"] = {"google": {"thought_signature": signature}}
        # OpenRouter wants every turn's reasoning state back, unmodified (not only tool-call turns).
        if self.preset.reasoning_details and (details := sent_details(message, model)):
            call_ids = {c.id for c in calls}
            for detail in details:  # tied to its call by the call's id, which the host gets shortened
                if detail.get("id") in call_ids:
                    detail["id"] = self.tool_id(detail["id"])
            entry["reasoning_details"] = details
        return entry

    def assistant_content(self, message: Message) -> Any:
        return message.text or None

    def user(self, message: Message) -> dict[str, Any] | None:
        entry: dict[str, Any] = {"role": "user"}
        text = _lone_text(message)
        if text is not None:
            entry["content"] = text
        elif not (parts := [p for p in message.content if isinstance(p, TextPart | ImagePart)]):
            return None
        elif all(isinstance(p, TextPart) for p in parts):
            entry["content"] = message.text
        else:
            entry["content"] = [
                {"type": "text", "text": p.text}
                if isinstance(p, TextPart)
                else {"type": "image_url", "image_url": {"url": image_url(p)}}
                for p in parts
            ]
        if message.name:
            entry["name"] = message.name
        return entry

    def tool_id(self, call_id: str) -> str:
        """A tool-call id as this host takes it in requests. OpenAI has refused ids over 40
        characters (`string_above_max_length`), and made-up ids (`name-<hex>_N`) pass that with a
        long tool name: a longer id keeps its first characters and a hash of the whole, a pure
        function of the id so that a call and its result still match."""
        return call_id if len(call_id) <= MAX_TOOL_ID else hashed_tool_id(call_id, call_id, MAX_TOOL_ID)

    # --- answers -------------------------------------------------------------------------------

    def content(self, value: Any, provider: str) -> list[StreamEvent]:
        """A delta's or message's `content` as events (text parts still pass the <think> split).
        A string is text on every host: `ChatStreamParser.stream_chunk` reads one without this hook."""
        return decode_content(value, provider, family_chunk)

    def arguments(self, value: Any) -> str:
        """A tool call's `arguments` as JSON text. OpenAI documents a string; some compatible
        servers (older Ollama /v1, vLLM parsers) send the object itself, which is not dropped."""
        if type(value) is str:  # nearly every fragment: one type check
            return value
        return json_text.dumps(value).decode() if isinstance(value, dict | list) else ""

    def answer_tool_id(self, call_id: str, made_up: str) -> str:
        """A tool-call id from an answer as the client gets it (and sends back); `made_up` (unique
        to the answer: `made_up_ids`) for a call the host gave no id."""
        return call_id or made_up

    def usage(self, raw: dict[str, Any]) -> Usage:
        usage = normalise_usage(raw)
        if self.preset.thoughts_in_total:
            beyond = int(raw.get("total_tokens") or 0) - usage.input_tokens - usage.output_tokens
            hidden = beyond
            if usage.reasoning_tokens:  # reported too: no more than that (the total also counts a
                hidden = min(hidden, usage.reasoning_tokens)  # grounded answer's tool-use prompt)
            if hidden > 0:  # output the answer does not show: counted as output, as it is billed
                usage.output_tokens += hidden
                usage.reasoning_tokens = max(usage.reasoning_tokens, hidden)
            if (rest := beyond - max(hidden, 0)) > 0:  # the tool-use prompt: input, as the gemini
                usage.input_tokens += rest  # kind counts toolUsePromptTokenCount
        return usage

    def service_tier(self, answer: Mapping[str, Any]) -> str:
        """The tier a chunk or whole answer says it was served on (its top-level `service_tier`,
        beside the usage rather than in it), in Usage.service_tier's words."""
        return served_tier(answer.get("service_tier"), OPENAI_TIERS)

    def check_finish(self, reason: str, provider: str) -> None:
        """Raise for a finish reason that reports a failure rather than an end: DeepSeek's
        `insufficient_system_resource` (its inference system ran out of capacity and cut the
        answer), on any host that relays it. A cut answer is an error, never a clean end: retryable
        UNAVAILABLE, as an overloaded upstream is (another deployment, or a retry, answers whole)."""
        if reason in CUT_BY_HOST:
            raise GatewayError(
                ErrorKind.UNAVAILABLE,
                f"{provider} cut the answer short: {CUT_BY_HOST[reason]} (finish_reason {reason}); "
                "retry, or route to another deployment",
                provider=provider,
                retryable=True,
            )


def _deepseek_reasoner_rules(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """System prompt as the first user message; consecutive same-role text messages merged."""
    merged: list[dict[str, Any]] = []
    for message in messages:
        message = dict(message)
        if message["role"] in ("system", "developer"):
            message["role"] = "user"
        previous = merged[-1] if merged else None
        mergeable = message["role"] in ("user", "assistant") and "tool_calls" not in message
        if (
            previous is not None
            and mergeable
            and previous["role"] == message["role"]
            and "tool_calls" not in previous
            and isinstance(previous.get("content"), str)
            and isinstance(message.get("content"), str)
        ):
            previous["content"] = f"{previous['content']}\n\n{message['content']}"
        else:
            merged.append(message)
    return merged


@shape_checked
def parse_embeddings(answer: Any, model: str, *, provider: str = "") -> EmbedResult:
    """`/embeddings`: rows carry their input's `index`; usage has only `prompt_tokens`."""
    rows = sorted(answer.get("data") or [], key=lambda row: int(row.get("index", 0)))
    usage = answer.get("usage") or {}
    return EmbedResult(
        vectors=[[float(x) for x in row["embedding"]] for row in rows],
        usage=Usage(input_tokens=int(usage.get("prompt_tokens") or 0), raw=dict(usage)),
        model=str(answer.get("model") or model),
    )


@shape_checked
def parse_models(answer: Any, *, provider: str = "") -> list[ModelInfo]:
    return [ModelInfo(id=str(row["id"])) for row in answer.get("data") or [] if "id" in row]
