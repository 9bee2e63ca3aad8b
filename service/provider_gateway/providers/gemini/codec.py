"""Gemini `generateContent` wire format (AI Studio and Vertex share it): pure, no I/O.

A stream's chunks and the unary answer are the same GenerateContentResponse, so the stream's
decoder reads a whole `generateContent` answer as its one chunk (`response`).

Gemini 2 function calls carry no id, so ids are made up as `name-<tag>_N` (N counts calls of that
name in the response, the tag is the answer's own: `made_up_ids`); a tool result names its
function, which is found from the earlier call with the same id. Gemini 3 issues `functionCall.id`:
that id is the client's, and goes back on the call and on its `functionResponse`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from provider_gateway.domain import (
    ChatRequest,
    ChatResponse,
    CountTokensRequest,
    EmbedRequest,
    FinishReason,
    ImagePart,
    Message,
    ModelInfo,
    ProviderFinish,
    RawContent,
    ReasoningDelta,
    ReasoningPart,
    ResponseFormatType,
    Role,
    StreamEvent,
    TextDelta,
    TextPart,
    TokenLogprob,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallPart,
    ToolCallStart,
    ToolChoiceMode,
    ToolResultPart,
    Usage,
    UsageEvent,
)
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.http.errors import KEY_SLACK, google_retry_delay, redact
from provider_gateway.providers.base import fold
from provider_gateway.providers.embed_dimensions import fixed_width
from provider_gateway.providers.issuers import GEMINI, issued_by
from provider_gateway.providers.logprobs import with_logprobs
from provider_gateway.providers.made_up_ids import answer_tag, is_made_up
from provider_gateway.providers.owned_options import owned
from provider_gateway.providers.shapes import shape_checked
from provider_gateway.providers.vendor_wire import (
    arguments_object,
    malformed,
    merge_provider_options,
    served_tier,
)

FINISH_REASONS = {
    "STOP": FinishReason.STOP,
    "MAX_TOKENS": FinishReason.LENGTH,
    "SAFETY": FinishReason.CONTENT_FILTER,
    "RECITATION": FinishReason.CONTENT_FILTER,
    "BLOCKLIST": FinishReason.CONTENT_FILTER,
    "PROHIBITED_CONTENT": FinishReason.CONTENT_FILTER,
    "SPII": FinishReason.CONTENT_FILTER,
    # An image model's filters on what it drew: the image counterparts of the stops above.
    "IMAGE_SAFETY": FinishReason.CONTENT_FILTER,
    "IMAGE_PROHIBITED_CONTENT": FinishReason.CONTENT_FILTER,
    "IMAGE_RECITATION": FinishReason.CONTENT_FILTER,
    # Vertex AI's own filters: Model Armor's screening (of the prompt, a blockReason, or of the
    # answer, a finishReason) and its jailbreak detection (a blockReason) refuse as the safety
    # filters do.
    "MODEL_ARMOR": FinishReason.CONTENT_FILTER,
    "JAILBREAK": FinishReason.CONTENT_FILTER,
}

# Part fields with a typed event; a part with none of the content ones (text, functionCall) is
# content the gateway has no event for (executableCode, codeExecutionResult, inlineData...): it
# reaches the client whole as RawContent named by its field, never dropped.
TYPED_PART_FIELDS = frozenset({"text", "thought", "thoughtSignature", "functionCall"})
# A candidate's metadata about its content (search grounding, recitation sources, fetched URLs),
# passed on whole as RawContent named by the field.
CANDIDATE_METADATA = ("groundingMetadata", "citationMetadata", "urlContextMetadata")
# Why an answer stopped or was refused, in Google's words, which Finish has no field for: also
# passed on as RawContent named by the field (a prompt's `promptFeedback` when it was blocked, a
# candidate's `finishMessage`, and its `safetyRatings` when a filter stopped it).
FILTERED = frozenset(name for name, reason in FINISH_REASONS.items() if reason is FinishReason.CONTENT_FILTER)

# google.rpc.Code names as Gemini reports them in `error.status`.
STATUS_KINDS = {
    "INVALID_ARGUMENT": ErrorKind.INVALID_ARGUMENT,
    "FAILED_PRECONDITION": ErrorKind.FAILED_PRECONDITION,
    "OUT_OF_RANGE": ErrorKind.INVALID_ARGUMENT,
    "UNAUTHENTICATED": ErrorKind.UNAUTHENTICATED,
    "PERMISSION_DENIED": ErrorKind.PERMISSION_DENIED,
    "NOT_FOUND": ErrorKind.NOT_FOUND,
    "RESOURCE_EXHAUSTED": ErrorKind.RESOURCE_EXHAUSTED,
    "UNAVAILABLE": ErrorKind.UNAVAILABLE,
    "INTERNAL": ErrorKind.UNAVAILABLE,
    "DEADLINE_EXCEEDED": ErrorKind.DEADLINE_EXCEEDED,
    "ABORTED": ErrorKind.ABORTED,
    "CANCELLED": ErrorKind.CANCELLED,
}
HTTP_KINDS = {
    400: ErrorKind.INVALID_ARGUMENT,
    401: ErrorKind.UNAUTHENTICATED,
    403: ErrorKind.PERMISSION_DENIED,
    404: ErrorKind.NOT_FOUND,
    429: ErrorKind.RESOURCE_EXHAUSTED,
}
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"
# AI Studio answers a bad key with 400 INVALID_ARGUMENT; only ErrorInfo.reason says what it is.
KEY_REASONS = {"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED"}
VERTEX_DOMAIN = "aiplatform.googleapis.com"  # ErrorInfo.domain of Vertex AI's own errors
MAX_METADATA = 300  # of one ErrorInfo metadata value quoted in a message (an activation URL fits)


# --- request --------------------------------------------------------------------------------------


def _function_response(part: ToolResultPart, names: Mapping[str, str]) -> dict[str, Any]:
    name = part.name or names.get(part.tool_call_id) or part.tool_call_id.rsplit("-", 1)[0]
    try:
        parsed = json.loads(part.content)
    except json.JSONDecodeError:
        parsed = None
    # `response` must be an object: wrap anything else, the shape Google's SDKs use.
    response = parsed if isinstance(parsed, dict) else {"content": part.content}
    if part.is_error:
        response = {"error": response}
    return {"functionResponse": {"name": name, "response": response, **_issued_id(part.tool_call_id)}}


def _issued_id(call_id: str) -> dict[str, str]:
    """`id` for a call or its result when Gemini issued it: Gemini 3 wants its ids back ("return the
    response with the matching id", google-genai's FunctionCall.id); a made-up one it never saw."""
    return {} if not call_id or is_made_up(call_id) else {"id": call_id}


def _parts(message: Message, names: dict[str, str]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    signature = ""
    for part in message.content:
        if isinstance(part, TextPart):
            if part.text:  # an empty part is an error upstream
                parts.append({"text": part.text})
        elif isinstance(part, ImagePart):
            if part.url:
                parts.append({"fileData": {"mimeType": part.media_type or "image/jpeg", "fileUri": part.url}})
            else:
                data = base64.b64encode(part.data).decode("ascii")
                parts.append({"inlineData": {"mimeType": part.media_type, "data": data}})
        elif isinstance(part, ToolCallPart):
            call = part.call
            names[call.id] = call.name
            parts.append(
                {"functionCall": {"name": call.name, "args": arguments_object(call), **_issued_id(call.id)}}
            )
        elif isinstance(part, ToolResultPart):
            parts.append(_function_response(part, names))
        elif isinstance(part, ReasoningPart):
            if issued_by(part.issuer, GEMINI):  # Gemini refuses a signature another vendor issued
                signature = signature or part.signature
            if part.text:
                parts.append({"text": part.text, "thought": True})
    if signature:
        # Gemini wants the signature back on the part it came with: the first function call
        # (thinking models reject a later turn without it), else the text.
        target = next((p for p in parts if "functionCall" in p), None) or next(
            (p for p in parts if "text" in p), None
        )
        if target is not None:
            target["thoughtSignature"] = signature
    return parts


def convert_messages(messages: list[Message]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Domain messages -> (`contents`, `systemInstruction`); the assistant's role is `model`."""
    names: dict[str, str] = {}
    system = [m.text for m in messages if m.role is Role.SYSTEM]
    contents: list[dict[str, Any]] = []
    for message in messages:
        if message.role is Role.SYSTEM:
            continue
        role = "model" if message.role is Role.ASSISTANT else "user"
        parts = _parts(message, names)
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    instruction = {"parts": [{"text": "\n\n".join(system)}]} if system else None
    return contents, instruction


def _tools(tools: list[Tool]) -> list[dict[str, Any]]:
    declarations = []
    for tool in tools:
        declaration: dict[str, Any] = {"name": tool.name, "description": tool.description}
        if tool.parameters:
            declaration["parameters"] = dict(tool.parameters)
        declarations.append(declaration)
    return [{"functionDeclarations": declarations}]


def _tool_config(request: ChatRequest) -> dict[str, Any] | None:
    choice = request.tool_choice
    if choice is None or choice.mode is ToolChoiceMode.AUTO:
        return None
    if choice.mode is ToolChoiceMode.NONE:
        config: dict[str, Any] = {"mode": "NONE"}
    elif choice.mode is ToolChoiceMode.TOOL:
        config = {"mode": "ANY", "allowedFunctionNames": [choice.name]}
    else:
        config = {"mode": "ANY"}
    return {"functionCallingConfig": config}


def _generation_config(request: ChatRequest) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if request.max_tokens is not None:
        config["maxOutputTokens"] = request.max_tokens
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    if request.stop:
        config["stopSequences"] = list(request.stop)
    fmt = request.response_format
    if fmt and fmt.type is not ResponseFormatType.TEXT:
        config["responseMimeType"] = "application/json"
        if fmt.type is ResponseFormatType.JSON_SCHEMA and fmt.json_schema:
            config["responseJsonSchema"] = dict(
                fmt.json_schema
            )  # JSON Schema, not the OpenAPI subset of responseSchema
    if request.logprobs is not None:
        config["responseLogprobs"] = True
        if request.logprobs.top_logprobs:
            config["logprobs"] = request.logprobs.top_logprobs
    reasoning = request.reasoning
    if reasoning and reasoning.enabled:
        thinking: dict[str, Any] = {"includeThoughts": True}
        if reasoning.budget_tokens:
            thinking["thinkingBudget"] = reasoning.budget_tokens
        config["thinkingConfig"] = thinking
    return config


# Body fields the gateway owns (owned_options.py), Gemini API and Vertex alike; the API takes
# snake_case too, which the comparison covers.
OWNED_FIELDS = owned(
    "contents", "systemInstruction", "tools", "toolConfig",
    *(f"generationConfig.{name}" for name in (
        "maxOutputTokens", "candidateCount", "temperature", "topP", "stopSequences",
        "responseMimeType", "responseSchema", "responseJsonSchema", "thinkingConfig",
        "responseLogprobs", "logprobs",
    )),
)  # fmt: skip


def build_generate_body(request: ChatRequest) -> dict[str, Any]:
    contents, system = convert_messages(request.messages)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = system
    if request.tools:
        body["tools"] = _tools(request.tools)
        tool_config = _tool_config(request)
        if tool_config:
            body["toolConfig"] = tool_config
    config = _generation_config(request)
    if config:
        body["generationConfig"] = config
    return merge_provider_options(body, request.provider_options, OWNED_FIELDS)


def build_count_body(request: CountTokensRequest, model_path: str) -> dict[str, Any]:
    """`:countTokens` takes bare `contents`, or a whole generate request when system or tools matter."""
    messages = request.messages or [Message(Role.USER, (TextPart(request.text),))]
    contents, system = convert_messages(messages)
    if not system and not request.tools:
        return {"contents": contents}
    inner: dict[str, Any] = {"model": model_path, "contents": contents}
    if system:
        inner["systemInstruction"] = system
    if request.tools:
        inner["tools"] = _tools(request.tools)
    return {"generateContentRequest": inner}


def build_embed_body(request: EmbedRequest, model_path: str) -> dict[str, Any]:
    if request.dimensions and request.model.endswith("embedding-001") and "gemini" not in request.model:
        # Google: `outputDimensionality` is for the models since 2024, not models/embedding-001.
        raise fixed_width("Gemini", request.model, "embedding-001 has one width (768)")
    requests = []
    for text in request.inputs:
        item: dict[str, Any] = {"model": model_path, "content": {"parts": [{"text": text}]}}
        if request.dimensions:
            item["outputDimensionality"] = request.dimensions
        requests.append(item)
    return {"requests": requests}


# --- responses ------------------------------------------------------------------------------------


# The served tier in usageMetadata, in Usage.service_tier's words: the Gemini API's `serviceTier`
# (google-genai's ServiceTier; its docs also write SERVICE_TIER_PRIORITY) or Vertex AI's
# `trafficType` (TrafficType); provisioned throughput and off-peak traffic stay as they came.
GEMINI_TIERS = {
    "service_tier_standard": "standard",
    "service_tier_flex": "flex",
    "service_tier_priority": "priority",
    "unspecified": "",
    "service_tier_unspecified": "",
    "on_demand": "standard",
    "on_demand_priority": "priority",
    "on_demand_flex": "flex",
    "traffic_type_unspecified": "",
}


def normalise_usage(raw: Mapping[str, Any]) -> Usage:
    """`promptTokenCount` already includes cached tokens; thoughts are billed as output, so added.
    Tool results (search, code execution, URL context: `toolUsePromptTokenCount`) go back to the
    model as input, apart from the prompt, so they are added to the input: the total is then
    Google's `totalTokenCount`. The usageMetadata is kept whole in `raw`, its per-modality lists
    included."""
    thoughts = int(raw.get("thoughtsTokenCount") or 0)
    tool_results = int(raw.get("toolUsePromptTokenCount") or 0)
    return Usage(
        input_tokens=int(raw.get("promptTokenCount") or 0) + tool_results,
        output_tokens=int(raw.get("candidatesTokenCount") or 0) + thoughts,
        cache_read_tokens=int(raw.get("cachedContentTokenCount") or 0),
        reasoning_tokens=thoughts,
        raw=dict(raw),
        service_tier=(  # an unspecified serviceTier leaves the word to Vertex's trafficType
            served_tier(raw.get("serviceTier"), GEMINI_TIERS)
            or served_tier(raw.get("trafficType"), GEMINI_TIERS)
        ),
    )


def error_info_reason(body: Any) -> str:
    """`ErrorInfo.reason` from a google.rpc.Status body ("" when absent)."""
    return str(_detail(body, ERROR_INFO_TYPE).get("reason") or "")


def service_disabled_advice(body: Any, secrets: Iterable[str] = ()) -> str:
    """What to do about a 403 whose ErrorInfo.reason is SERVICE_DISABLED ("" for any other body):
    the API (the Generative Language API, Vertex AI's) is off in the key's or credentials' Google
    Cloud project, and is enabled there, at the activation URL Google gives when it gives one. No
    other key of that project helps, so the message does not send the user to the key. Each value
    quoted is masked (the provider's `secrets` too) before it is cut, as `vendor_said` does."""
    said = _error_info_metadata(body, "SERVICE_DISABLED", secrets)
    if said is None:
        return ""
    service = said("serviceTitle") or said("service") or "API"
    project = said("consumer").removeprefix("projects/")
    where = f" in Google Cloud project {project}" if project else " in the Google Cloud project of the key"
    url = said("activationUrl")
    how = f" at {url}" if url.startswith("https://") else " (APIs & Services in the Cloud console)"
    return (
        f"enable the {service}{where}{how}, then retry (an API just enabled takes a few minutes to "
        f"answer); the key is not at fault"
    )


def iam_denied_advice(body: Any, secrets: Iterable[str] = ()) -> str:
    """What to do about a 403 whose ErrorInfo.reason is IAM_PERMISSION_DENIED (Vertex AI; "" for
    any other body): the credentials are valid but their account lacks a permission on the model,
    or the model is not in that project and region. A role is granted; another key does not help."""
    said = _error_info_metadata(body, "IAM_PERMISSION_DENIED", secrets)
    if said is None or _detail(body, ERROR_INFO_TYPE).get("domain") != VERTEX_DOMAIN:
        return ""  # the role named below is Vertex AI's
    permission = said("permission") or "the permission named below"
    resource = said("resource")
    on = f" on {resource}" if resource else ""
    return (
        f"the credentials' account lacks {permission}{on}: grant it a role that has it (Vertex AI "
        f"User, roles/aiplatform.user), or check the project and region configured (the model may "
        f"not exist there)"
    )


def _error_info_metadata(body: Any, reason: str, secrets: Iterable[str]) -> Callable[[str], str] | None:
    """A reader of the ErrorInfo's metadata values when its reason is `reason` (None otherwise):
    each value masked (the provider's `secrets` too) before it is cut, as `vendor_said` does."""
    info = _detail(body, ERROR_INFO_TYPE)
    if info.get("reason") != reason:
        return None
    metadata = info.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}

    def said(name: str) -> str:
        value = metadata.get(name)
        if not isinstance(value, str):
            return ""
        return redact(value.strip()[: MAX_METADATA + KEY_SLACK], secrets)[:MAX_METADATA]

    return said


def _detail(body: Any, type_url: str) -> Mapping[str, Any]:
    error = body.get("error") if isinstance(body, Mapping) else None
    details = error.get("details") if isinstance(error, Mapping) else None
    for detail in details or []:
        if isinstance(detail, Mapping) and detail.get("@type") == type_url:
            return detail
    return {}


@shape_checked
def error_from_body(body: Any, *, status: int | None = None, provider: str = "") -> GatewayError:
    """A google.rpc.Status error body as a GatewayError, RetryInfo included."""
    error = body.get("error") if isinstance(body, Mapping) else None
    error = error if isinstance(error, Mapping) else {}
    code_name = str(error.get("status") or "")
    kind = STATUS_KINDS.get(code_name) or HTTP_KINDS.get(status or 0, ErrorKind.UNAVAILABLE)
    if error_info_reason(body) in KEY_REASONS:
        kind = ErrorKind.UNAUTHENTICATED
    message = str(error.get("message") or code_name or f"HTTP {status}")
    if advice := service_disabled_advice(body):
        message = f"{advice}: {message}"
    elif kind in (ErrorKind.UNAUTHENTICATED, ErrorKind.PERMISSION_DENIED):
        message = f"{message} (check the provider key or token)"
    return GatewayError(
        kind,
        f"gemini {code_name or status}: {message}",
        provider=provider,
        retry_after=google_retry_delay(body),
        upstream_status=status or code_name,
    )


@dataclass(slots=True)
class GenerateStreamDecoder:
    """Each stream chunk is a whole GenerateContentResponse; usage is cumulative (keep the last)."""

    provider: str = ""
    logprobs: bool = False  # asked for: each candidate's `logprobsResult` goes on its text
    usage_raw: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    response_id: str = ""
    finish_reason: str = ""
    tool_calls: int = 0
    _per_name: dict[str, int] = field(default_factory=dict)
    _tag: str = ""  # drawn at the answer's first made-up id

    @shape_checked
    def feed(self, chunk: Any) -> list[StreamEvent]:
        if not isinstance(chunk, Mapping):
            raise malformed(self.provider, "event data is not a JSON object")
        if "error" in chunk:
            raise error_from_body(chunk, provider=self.provider)
        self.model = str(chunk.get("modelVersion") or self.model)
        self.response_id = str(chunk.get("responseId") or self.response_id)
        if isinstance(chunk.get("usageMetadata"), Mapping):
            self.usage_raw = dict(chunk["usageMetadata"])
        events: list[StreamEvent] = []
        feedback = chunk.get("promptFeedback")
        if isinstance(feedback, Mapping) and feedback.get("blockReason"):
            self.finish_reason = str(feedback["blockReason"])
            events.append(RawContent("promptFeedback", dict(feedback)))
        candidates = chunk.get("candidates") or []
        candidate = candidates[0] if candidates and isinstance(candidates[0], Mapping) else {}
        for part in (candidate.get("content") or {}).get("parts") or []:
            events.extend(self._part(part))
        if self.logprobs and isinstance(candidate.get("logprobsResult"), Mapping):
            events = with_logprobs(events, candidate_logprobs(candidate["logprobsResult"]))
        for name in CANDIDATE_METADATA:
            if isinstance(candidate.get(name), Mapping):
                events.append(RawContent(name, _metadata(name, candidate[name])))
        if candidate.get("finishReason"):
            self.finish_reason = str(candidate["finishReason"])
            events.extend(_why_stopped(candidate, self.finish_reason))
        return events

    def _part(self, part: Mapping[str, Any]) -> list[StreamEvent]:
        if "functionCall" in part:
            call = part["functionCall"] or {}
            name = str(call.get("name") or "")
            call_id = str(call.get("id") or self._made_up_id(name))
            arguments = json.dumps(call.get("args") or {}, separators=(",", ":"))
            index = self.tool_calls
            self.tool_calls += 1
            signed: list[StreamEvent] = []
            if part.get("thoughtSignature"):
                signed.append(ReasoningDelta("", signature=str(part["thoughtSignature"])))
            return [
                *signed,
                ToolCallStart(index, call_id, name),
                ToolCallDelta(index, arguments),
                ToolCallEnd(index, ToolCall(call_id, name, arguments)),
            ]
        text = str(part.get("text") or "")
        signature = str(part.get("thoughtSignature") or "")
        untyped = "text" not in part and next((k for k in part if k not in TYPED_PART_FIELDS), "")
        if untyped:
            signed = [ReasoningDelta("", signature=signature)] if signature else []
            return [*signed, RawContent(untyped, dict(part))]
        if part.get("thought"):
            return [ReasoningDelta(text, signature=signature)] if text or signature else []
        events: list[StreamEvent] = [TextDelta(text)] if text else []
        if signature:  # newer models sign the turn on a text part: keep it for the next request
            events.append(ReasoningDelta("", signature=signature))
        return events

    def _made_up_id(self, name: str) -> str:
        """`name-<tag>_N` for a call without an id: unique in the conversation (`made_up_ids`)."""
        n = self._per_name.get(name, 0)
        self._per_name[name] = n + 1
        self._tag = self._tag or answer_tag()
        return f"{name}-{self._tag}_{n}"

    @shape_checked
    def response(self, body: Any) -> ChatResponse:
        """A whole `generateContent` answer: one chunk, then the stream's end. A whole body without
        a finishReason is an answer whose end Google did not name (google-genai reads it with
        `finish_reason` None): UNSPECIFIED, as the stream's `FINISH_REASON_UNSPECIFIED`. A stream
        without one is cut (adapter.py): only there can the missing reason mean missing bytes."""
        events = self.feed(body)
        if not self.finish_reason and "candidates" not in body:
            raise malformed(self.provider, "an answer without candidates or a blockReason")
        return fold([*events, *self.end()])

    @shape_checked
    def end(self) -> list[StreamEvent]:
        reason = FINISH_REASONS.get(self.finish_reason, FinishReason.OTHER)
        if not self.finish_reason or self.finish_reason == "FINISH_REASON_UNSPECIFIED":
            reason = FinishReason.UNSPECIFIED  # Google said no reason: never an invented STOP
        if self.tool_calls and reason is FinishReason.STOP:
            reason = FinishReason.TOOL_CALLS  # Gemini says STOP after function calls
        return [
            UsageEvent(normalise_usage(self.usage_raw)),
            ProviderFinish(reason, self.finish_reason, self.model, self.response_id),
        ]


def _why_stopped(candidate: Mapping[str, Any], reason: str) -> list[StreamEvent]:
    """A stopped candidate's explanation: its `finishMessage` (what was malformed in a function
    call...), and the `safetyRatings` that name the category when a filter stopped it."""
    events: list[StreamEvent] = []
    if isinstance(message := candidate.get("finishMessage"), str) and message:
        events.append(RawContent("finishMessage", {"finishMessage": message}))
    if reason in FILTERED and isinstance(ratings := candidate.get("safetyRatings"), list) and ratings:
        events.append(RawContent("safetyRatings", {"safetyRatings": ratings}))
    return events


def _metadata(name: str, value: Mapping[str, Any]) -> dict[str, Any]:
    """A candidate's metadata as passed on. The Gemini API names the recitation sources
    `citationSources`, Vertex AI `citations`: google-genai reads either as `citations`, and so does
    the client here, whichever host answered."""
    metadata = dict(value)
    if name == "citationMetadata" and "citationSources" in metadata and "citations" not in metadata:
        metadata["citations"] = metadata.pop("citationSources")
    return metadata


def candidate_logprobs(result: Mapping[str, Any]) -> tuple[TokenLogprob, ...]:
    """A `logprobsResult`: `chosenCandidates[i]` is the i-th token, `topCandidates[i].candidates`
    the most likely ones at its step ([GENAI] `LogprobsResult`). proto3 JSON leaves a zero out,
    so a missing `logProbability` is 0.0 (a certain token). Gemini gives no bytes."""
    steps = result.get("topCandidates") or []
    return tuple(
        TokenLogprob(
            _token(chosen),
            _logprob(chosen),
            None,
            tuple(TokenLogprob(_token(c), _logprob(c)) for c in (steps[i].get("candidates") or []))
            if i < len(steps)
            else (),
        )
        for i, chosen in enumerate(result.get("chosenCandidates") or [])
    )


def _token(candidate: Mapping[str, Any]) -> str:
    return str(candidate.get("token") or "")


def _logprob(candidate: Mapping[str, Any]) -> float:
    return float(candidate.get("logProbability") or 0.0)


@shape_checked
def parse_models(body: Any, *, provider: str = "") -> list[ModelInfo]:
    models = []
    for item in (body.get("models") if isinstance(body, Mapping) else None) or []:
        if not isinstance(item, Mapping) or not item.get("name"):
            continue
        methods = item.get("supportedGenerationMethods") or []
        models.append(
            ModelInfo(
                id=str(item["name"]).removeprefix("models/"),
                display_name=str(item.get("displayName") or ""),
                context_window=int(item.get("inputTokenLimit") or 0),
                max_output_tokens=int(item.get("outputTokenLimit") or 0),
                vision="generateContent" in methods,
                tools="generateContent" in methods,
                reasoning=bool(item.get("thinking")),
                embeddings="embedContent" in methods,
            )
        )
    return models


@shape_checked
def parse_embeddings(answer: Any, *, provider: str = "") -> list[list[float]]:
    """`:batchEmbedContents`: `{"embeddings": [{"values": [...]}, ...]}`, no usage."""
    return [list(map(float, e.get("values") or [])) for e in answer.get("embeddings") or []]
