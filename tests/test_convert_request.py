"""chat_request_from_proto builds the domain request from the fields a request sets (one
ListFields): whatever a request sets or leaves unset, the result is what reading every field says."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provider_gateway import domain as d
from provider_gateway.server import convert
from provider_gateway.v1 import provider_service_pb2 as pb

texts = st.text(max_size=6)


@st.composite
def chat_requests(draw: Any) -> pb.ChatRequest:
    request = pb.ChatRequest(model=draw(texts), provider=draw(texts))
    request.fallbacks.extend(draw(st.lists(texts, max_size=2)))
    for _ in range(draw(st.integers(0, 2))):
        request.messages.add(role=pb.ROLE_USER).content.add(text=draw(texts))
    for name in draw(st.lists(st.sampled_from(["lookup", "f"]), max_size=2)):
        request.tools.add(name=name, description=draw(texts))
    if draw(st.booleans()):
        request.tool_choice.mode = draw(st.sampled_from(list(convert.TOOL_CHOICE)))
        request.tool_choice.name = draw(texts)
    for name in ("temperature", "top_p"):
        if draw(st.booleans()):
            setattr(request, name, draw(st.sampled_from([0.0, 0.5, 1.0])))  # 0 is set, not absent
    if draw(st.booleans()):
        request.max_tokens = draw(st.sampled_from([0, 1, 64]))
    request.stop.extend(draw(st.lists(texts, max_size=2)))
    if draw(st.booleans()):
        request.reasoning.SetInParent()
        request.reasoning.budget_tokens = draw(st.sampled_from([0, 1024]))
        request.reasoning.effort = draw(st.sampled_from(list(convert.EFFORT)))
    if draw(st.booleans()):
        request.response_format.SetInParent()
        request.response_format.type = draw(st.sampled_from(list(convert.FORMAT)))
        if draw(st.booleans()):
            request.response_format.json_schema.update({"type": "object", "n": 1})
    if draw(st.booleans()):
        request.provider_options.update(draw(st.dictionaries(texts, st.integers(0, 3), max_size=2)))
    request.metadata.update(draw(st.dictionaries(texts, texts, max_size=2)))
    return request


def read_field_by_field(request: pb.ChatRequest) -> d.ChatRequest:
    """The oracle: every field read through its accessor, presence by HasField."""

    def optional(name: str) -> Any:
        return getattr(request, name) if request.HasField(name) else None

    reasoning = response_format = tool_choice = None
    if request.HasField("reasoning"):
        r = request.reasoning
        reasoning = d.ReasoningOptions(r.enabled, convert.EFFORT[r.effort], r.budget_tokens)
    if request.HasField("response_format"):
        f = request.response_format
        schema = convert.struct_to_dict(f.json_schema) if f.HasField("json_schema") else None
        response_format = d.ResponseFormat(convert.FORMAT[f.type], f.schema_name, schema, f.strict)
    if request.HasField("tool_choice"):
        tool_choice = d.ToolChoice(convert.TOOL_CHOICE[request.tool_choice.mode], request.tool_choice.name)
    return d.ChatRequest(
        model=request.model,
        provider=request.provider,
        fallbacks=list(request.fallbacks),
        messages=convert.messages_from_proto(request.messages),
        tools=convert.tools_from_proto(request.tools),
        tool_choice=tool_choice,
        temperature=optional("temperature"),
        top_p=optional("top_p"),
        max_tokens=optional("max_tokens"),
        stop=list(request.stop),
        reasoning=reasoning,
        response_format=response_format,
        provider_options=convert.struct_to_dict(request.provider_options),
        metadata=dict(request.metadata),
    )


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(chat_requests())
def test_the_domain_request_is_what_every_field_says(request: pb.ChatRequest) -> None:
    assert convert.chat_request_from_proto(request) == read_field_by_field(request)


def test_a_zero_temperature_is_kept_and_an_unset_one_is_none() -> None:
    request = pb.ChatRequest(model="m", temperature=0.0)
    assert convert.chat_request_from_proto(request).temperature == 0.0
    assert convert.chat_request_from_proto(pb.ChatRequest(model="m")).temperature is None


@st.composite
def complete_requests(draw: Any) -> pb.CompleteRequest:
    request = pb.CompleteRequest(model=draw(texts), provider=draw(texts), prompt=draw(texts))
    request.fallbacks.extend(draw(st.lists(texts, max_size=2)))
    for name in ("temperature", "top_p"):
        if draw(st.booleans()):
            setattr(request, name, draw(st.sampled_from([0.0, 0.5, 1.0])))
    if draw(st.booleans()):
        request.max_tokens = draw(st.sampled_from([0, 1, 64]))
    request.stop.extend(draw(st.lists(texts, max_size=2)))
    if draw(st.booleans()):
        request.provider_options.update(draw(st.dictionaries(texts, st.integers(0, 3), max_size=2)))
    request.metadata.update(draw(st.dictionaries(texts, texts, max_size=2)))
    return request


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(complete_requests())
def test_the_domain_prompt_request_is_what_every_field_says(request: pb.CompleteRequest) -> None:
    def optional(name: str) -> Any:
        return getattr(request, name) if request.HasField(name) else None

    assert convert.completion_request_from_proto(request) == d.CompletionRequest(
        model=request.model,
        prompt=request.prompt,
        provider=request.provider,
        fallbacks=list(request.fallbacks),
        temperature=optional("temperature"),
        top_p=optional("top_p"),
        max_tokens=optional("max_tokens"),
        stop=list(request.stop),
        provider_options=convert.struct_to_dict(request.provider_options),
        metadata=dict(request.metadata),
    )
