"""Recorded Gemini API answers (tests/replay/gemini: streamGenerateContent over SSE with the
`\\r\\n\\r\\n` separators Google sends, whole generateContent bodies, an error status) served byte for
byte from a fake upstream on 127.0.0.1, through the real gateway, compared with what Google's
official `google-genai` SDK makes of the same bytes. Where they disagree, the gateway is wrong."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from made_up_ids_support import untagged_view
from replay.sdk_clients import google_client
from replay.support import (
    CORPUS,
    VERTEX_MODELS,
    Reasoning,
    View,
    ask,
    figures,
    gateway_stream,
    gateway_unary,
    pieces,
    recordings,
    replay,
    replay_gateway,
    retry_after_s,
    vertex_gateway,
)

from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.v1 import provider_service_pb2 as pb

# google-genai's own aiohttp session subclass warns on import; nothing of the gateway's.
pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")

MODEL = "gemini-2.5-flash"
STREAM_PATH = f"/v1beta/models/{MODEL}:streamGenerateContent"
UNARY_PATH = f"/v1beta/models/{MODEL}:generateContent"

# The gateway's contract maps finishReason to one enum (raw_finish_reason keeps Google's word):
# STOP after function calls is TOOL_CALLS, as every other vendor says it; safety stops (recitation
# and personal data included, and an image model's filters on what it drew) are CONTENT_FILTER, as
# is a prompt blocked (promptFeedback.blockReason; Vertex AI's Model Armor and jailbreak filters too); a malformed or unexpected function call, which
# the client cannot run, an unsupported language and an image model drawing nothing are OTHER.
FINISH = {
    "STOP": pb.FINISH_REASON_STOP,
    "MAX_TOKENS": pb.FINISH_REASON_LENGTH,
    "SAFETY": pb.FINISH_REASON_CONTENT_FILTER,
    "RECITATION": pb.FINISH_REASON_CONTENT_FILTER,
    "PROHIBITED_CONTENT": pb.FINISH_REASON_CONTENT_FILTER,
    "SPII": pb.FINISH_REASON_CONTENT_FILTER,
    "IMAGE_SAFETY": pb.FINISH_REASON_CONTENT_FILTER,
    "IMAGE_PROHIBITED_CONTENT": pb.FINISH_REASON_CONTENT_FILTER,
    "IMAGE_RECITATION": pb.FINISH_REASON_CONTENT_FILTER,
    "MODEL_ARMOR": pb.FINISH_REASON_CONTENT_FILTER,
    "JAILBREAK": pb.FINISH_REASON_CONTENT_FILTER,
    "NO_IMAGE": pb.FINISH_REASON_OTHER,
    "IMAGE_OTHER": pb.FINISH_REASON_OTHER,
    "MALFORMED_FUNCTION_CALL": pb.FINISH_REASON_OTHER,
    "OTHER": pb.FINISH_REASON_OTHER,
    "LANGUAGE": pb.FINISH_REASON_OTHER,
    "UNEXPECTED_TOOL_CALL": pb.FINISH_REASON_OTHER,
    "FINISH_REASON_UNSPECIFIED": pb.FINISH_REASON_UNSPECIFIED,
}
# google.rpc status names as gRPC codes (the gateway's errors keep the upstream's meaning).
ERROR_CODES = {
    "RESOURCE_EXHAUSTED": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "INTERNAL": grpc.StatusCode.UNAVAILABLE,
}

# An error status as a gRPC code, by its HTTP status (docs/vendor-providers.md, Gemini's "Errors").
HTTP_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


@pytest.fixture(scope="module")
async def upstreams() -> AsyncIterator[dict[str, tuple[FakeUpstream, Any]]]:
    """The Gemini API, and Gemini on Vertex AI (the same GenerateContentResponse bytes): each a
    fake and a gateway."""
    async with replay_gateway("gemini") as direct, vertex_gateway() as vertex:
        yield {"gemini": direct, "vertex": vertex}


VERTEX_GEMINI = VERTEX_MODELS.format(publisher="google", model=MODEL)
# host -> (the gateway's upstream path for a stream, for a whole answer)
HOSTS = {
    "gemini": (STREAM_PATH, UNARY_PATH),
    "vertex": (f"{VERTEX_GEMINI}:streamGenerateContent", f"{VERTEX_GEMINI}:generateContent"),
}


def sdk_client(fake: FakeUpstream, path: Path | None = None) -> genai.Client:
    """The Gemini API client; for a `vertex_` recording google-genai's Vertex AI client, which
    reads Vertex's fields as Vertex names them (`citations`, `finishMessage`...) at `VERTEX_GEMINI`."""
    return google_client(fake, vertex=path is not None and path.name.startswith("vertex_"))


def sdk_paths(path: Path) -> tuple[str, str]:
    """Where `sdk_client(fake, path)` asks for a stream, for a whole answer."""
    return HOSTS["vertex"] if path.name.startswith("vertex_") else (STREAM_PATH, UNARY_PATH)


def dump(value: Any) -> dict[str, Any]:
    """An SDK object as Google's JSON names it."""
    return value.model_dump(mode="json", by_alias=True, exclude_none=True)  # type: ignore[no-any-return]


def to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


class SdkView:
    """Folds the SDK's GenerateContentResponse chunks into a view, the gateway's contract applied:
    a thought signature closes the reasoning block before it (on a thought, a text or a function
    call part alike); a call without Google's `id` gets `name-N`, its N-th call of that name."""

    def __init__(self) -> None:
        self.view = View()
        self.thought = ""
        self.per_name: dict[str, int] = {}

    def chunk(self, response: types.GenerateContentResponse) -> None:
        if response.usage_metadata is not None:
            self.usage(response.usage_metadata)
        feedback = response.prompt_feedback
        if feedback is not None and feedback.block_reason is not None:  # the prompt was refused
            self.view.raw_finish_reason = feedback.block_reason.value
            self.view.raw_content.append(("promptFeedback", dump(feedback)))  # with its reasons
        candidate = (response.candidates or [None])[0]
        if candidate is None:
            return
        for part in (candidate.content.parts if candidate.content else None) or []:
            self.part(part)
        for name in ("grounding_metadata", "citation_metadata", "url_context_metadata"):
            if (value := getattr(candidate, name)) is not None:  # no typed event: passed on whole
                self.view.raw_content.append((to_camel(name), dump(value)))
        if candidate.finish_reason is not None:
            self.view.raw_finish_reason = candidate.finish_reason.value
            # Why it stopped, which Finish has no field for: passed on whole (`finishMessage` too,
            # which google-genai drops: see `said_why`).
            if (
                FINISH[candidate.finish_reason.value] == pb.FINISH_REASON_CONTENT_FILTER
                and candidate.safety_ratings
            ):
                ratings = [dump(rating) for rating in candidate.safety_ratings]
                self.view.raw_content.append(("safetyRatings", {"safetyRatings": ratings}))

    def part(self, part: types.Part) -> None:
        if part.function_call is not None:
            self.signature(part)
            call = part.function_call
            name = call.name or ""
            n = self.per_name.get(name, 0)
            self.per_name[name] = n + 1
            self.view.tool_calls.append((call.id or f"{name}-{n}", name, call.args or {}))
            return
        if part.text is None:  # code execution, inline data...: no typed event, passed on whole
            fields = dump(part)
            if part.inline_data is not None and part.inline_data.data is not None:
                # pydantic writes bytes in URL-safe base64; Google's JSON has the standard alphabet
                fields["inlineData"]["data"] = base64.b64encode(part.inline_data.data).decode()
            self.view.raw_content.append((next(k for k in fields if k != "thoughtSignature"), fields))
            self.signature(part)
            return
        if part.thought:
            self.thought += part.text or ""
        else:
            self.view.text += part.text or ""
        self.signature(part)

    def signature(self, part: types.Part) -> None:
        if part.thought_signature:
            signature = base64.b64encode(part.thought_signature).decode()
            self.view.reasoning.append(Reasoning(self.thought, signature))
            self.thought = ""

    def usage(self, usage: types.GenerateContentResponseUsageMetadata) -> None:
        thoughts = usage.thoughts_token_count or 0
        # The gateway's normalised usage: thoughts are billed as output, so output includes them;
        # tool results (search, code execution, URL context) are "provided back to the model as
        # input" (google-genai's UsageMetadata), so input includes them.
        self.view.usage = figures(
            input=(usage.prompt_token_count or 0) + (usage.tool_use_prompt_token_count or 0),
            output=(usage.candidates_token_count or 0) + thoughts,
            cache_read=usage.cached_content_token_count or 0,
            reasoning=thoughts,
        )
        self.view.usage_raw = usage.model_dump(mode="json", by_alias=True, exclude_none=True)
        # "the sum of prompt_token_count, candidates_token_count, tool_use_prompt_token_count, and
        # thoughts_token_count" (google-genai): the normalised total is Google's own
        assert usage.total_token_count is None or self.view.usage["total"] == usage.total_token_count

    def done(self) -> View:
        if self.thought:
            self.view.reasoning.append(Reasoning(self.thought))
        view = self.view
        view.finish_reason = FINISH[view.raw_finish_reason]
        if view.tool_calls and view.finish_reason == pb.FINISH_REASON_STOP:
            view.finish_reason = pb.FINISH_REASON_TOOL_CALLS
        return view


def said_why(view: View) -> list[str]:
    """The `finishMessage`s the gateway passed on, taken out of its view. google-genai's Candidate
    type has `finish_message` and Google documents the field ("the reason the model stopped
    generating tokens in more detail"), but the SDK's converters from the wire (models.py
    `_Candidate_from_mldev`) never copy it: it is checked against the recorded bytes instead."""
    said = [raw["finishMessage"] for name, raw in view.raw_content if name == "finishMessage"]
    view.raw_content = [(name, raw) for name, raw in view.raw_content if name != "finishMessage"]
    return said


def recorded_why(path: Path) -> list[str]:
    """Every candidate's `finishMessage` in a recording (SSE `data:` lines, or one JSON body)."""
    text = path.read_text()
    bodies = [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")] or [text]
    chunks = [json.loads(body) for body in bodies]
    return [
        c["finishMessage"] for chunk in chunks for c in chunk.get("candidates") or [] if "finishMessage" in c
    ]


async def sdk_stream(
    fake: FakeUpstream, path: Path | None = None
) -> tuple[SdkView, genai_errors.APIError | None]:
    folded = SdkView()
    try:
        async for chunk in await sdk_client(fake, path).aio.models.generate_content_stream(
            model=MODEL, contents="Go on."
        ):
            folded.chunk(chunk)
    except genai_errors.APIError as error:
        return folded, error
    return folded, None


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("path", recordings("gemini", ".sse"), ids=lambda p: p.stem)
async def test_stream_matches_sdk(upstreams: dict[str, Any], host: str, path: Path) -> None:
    fake, stub = upstreams[host]
    fake.script(HOSTS[host][0], replay(path, "text/event-stream"))
    fake.script(sdk_paths(path)[0], replay(path, "text/event-stream"))
    ours, error = await gateway_stream(stub, ask(f"{host}/{MODEL}"))
    ours = untagged_view(ours)  # the SDK view numbers calls `name-N`
    assert said_why(ours) == recorded_why(path)
    theirs, their_error = await sdk_stream(fake, path)
    if their_error is None:
        assert error is None, error.details() if error else ""
        assert ours == theirs.done()
        return
    # An error chunk mid-stream: the same content before it, then Google's status and message
    # (never a clean end).
    assert error is not None, "the stream ended cleanly where the SDK raised"
    assert error.code() == ERROR_CODES[str(their_error.status)]
    assert str(their_error.message) in error.details()
    assert ours.text == theirs.view.text


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize(
    "path", [p for p in recordings("gemini", ".json") if len(p.suffixes) == 1], ids=lambda p: p.stem
)
async def test_whole_answer_matches_sdk(upstreams: dict[str, Any], host: str, path: Path) -> None:
    fake, stub = upstreams[host]
    fake.script(HOSTS[host][1], replay(path, "application/json"))
    fake.script(sdk_paths(path)[1], replay(path, "application/json"))
    ours = untagged_view(await gateway_unary(stub, ask(f"{host}/{MODEL}")))
    assert said_why(ours) == recorded_why(path)
    theirs = SdkView()
    theirs.chunk(await sdk_client(fake, path).aio.models.generate_content(model=MODEL, contents="Go on."))
    assert ours == theirs.done()


# Stream endings. Gemini's stream has no end marker but the finishReason its last chunk carries
# ("If empty, the model has not stopped generating": google-genai's FinishReason). A body that ends
# without one is cut short: google-genai yields what came, the gateway reports UNAVAILABLE (never a
# clean end; Google's gemini-cli likewise rejects such a stream, NO_FINISH_REASON). A finishReason
# that names no reason (FINISH_REASON_UNSPECIFIED) ends the stream as UNSPECIFIED, never STOP.


def candidate_chunk(text: str, finish: str | None = None, usage: bool = False) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    chunk: dict[str, Any] = {"candidates": [candidate] if text or finish else [], "modelVersion": MODEL}
    if usage:
        chunk["usageMetadata"] = {"promptTokenCount": 6, "candidatesTokenCount": 5, "totalTokenCount": 11}
    return chunk


def chunks_reply(*chunks: dict[str, Any]) -> Reply:
    body = "".join(f"data: {json.dumps(chunk)}\r\n\r\n" for chunk in chunks)
    return Reply(status=200, chunks=pieces(body.encode()), content_type="text/event-stream")


def script_both(upstreams: dict[str, Any], host: str, reply: Reply) -> tuple[FakeUpstream, Any]:
    fake, stub = upstreams[host]
    fake.script(HOSTS[host][0], reply)
    fake.script(STREAM_PATH, reply)
    return fake, stub


ENDED = {
    "unspecified": [candidate_chunk("Half"), candidate_chunk(" of it", "FINISH_REASON_UNSPECIFIED", usage=True)],
    "usage-after-stop": [candidate_chunk("Half"), candidate_chunk(" of it", "STOP"), candidate_chunk("", usage=True)],
}  # fmt: skip


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("case", ENDED)
async def test_a_stream_ends_with_the_reason_google_gave(
    upstreams: dict[str, Any], host: str, case: str
) -> None:
    fake, stub = script_both(upstreams, host, chunks_reply(*ENDED[case]))
    ours, error = await gateway_stream(stub, ask(f"{host}/{MODEL}"))
    ours = untagged_view(ours)  # the SDK view numbers calls `name-N`
    theirs, their_error = await sdk_stream(fake)
    assert their_error is None
    assert error is None, error.details() if error else ""
    assert ours == theirs.done()
    assert ours.text == "Half of it"


@pytest.mark.parametrize("host", HOSTS)
async def test_a_body_ending_without_a_finish_reason_is_cut_short(
    upstreams: dict[str, Any], host: str
) -> None:
    reply = chunks_reply(candidate_chunk("Half"), candidate_chunk(" of it", usage=True))
    fake, stub = script_both(upstreams, host, reply)
    ours, error = await gateway_stream(stub, ask(f"{host}/{MODEL}"))
    ours = untagged_view(ours)  # the SDK view numbers calls `name-N`
    theirs, their_error = await sdk_stream(fake)
    assert their_error is None  # google-genai takes it, without a finish_reason
    assert theirs.view.raw_finish_reason == ""
    assert error is not None, "a stream cut short ended cleanly"
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "before a finishReason" in error.details()
    assert ours.text == theirs.view.text == "Half of it"


# Log-probabilities, asked for (`ChatRequest.logprobs`): each chunk's `logprobsResult` (its chosen
# tokens, the most likely ones at each step) is what google-genai reads; proto3 JSON leaves a zero
# out, so a `logProbability` left out is 0.0 (a certain token), as the gateway documents.

Scored = tuple[str, float, tuple[tuple[str, float], ...]]


def sdk_scored(response: types.GenerateContentResponse) -> list[Scored]:
    candidate = (response.candidates or [None])[0]
    result = candidate.logprobs_result if candidate is not None else None
    if result is None:
        return []
    steps = result.top_candidates or []
    return [
        (
            chosen.token or "",
            chosen.log_probability or 0.0,
            tuple((c.token or "", c.log_probability or 0.0) for c in steps[i].candidates or []),
        )
        for i, chosen in enumerate(result.chosen_candidates or [])
    ]


def our_scored(entries: Any) -> list[Scored]:
    return [(e.token, e.logprob, tuple((t.token, t.logprob) for t in e.top_logprobs)) for e in entries]


def scored_ask(model: str) -> pb.ChatRequest:
    request = ask(model)
    request.logprobs.CopyFrom(pb.LogprobsOptions(enabled=True, top_logprobs=2))
    return request


@pytest.mark.parametrize("host", HOSTS)
async def test_streamed_logprobs_match_sdk(upstreams: dict[str, Any], host: str) -> None:
    fake, stub = script_both(upstreams, host, replay(CORPUS / "gemini" / "logprobs.sse", "text/event-stream"))
    ours: list[Scored] = []
    text = ""
    async for event in stub.ChatStream(scored_ask(f"{host}/{MODEL}"), timeout=20):
        if event.WhichOneof("event") == "text_delta":
            text += event.text_delta.text
            ours += our_scored(event.text_delta.logprobs)
    theirs: list[Scored] = []
    async for chunk in await sdk_client(fake).aio.models.generate_content_stream(
        model=MODEL, contents="Go on."
    ):
        theirs += sdk_scored(chunk)
    assert ours == theirs
    assert "".join(token for token, _, _ in ours) == text  # every token scored, in order


@pytest.mark.parametrize("host", HOSTS)
async def test_whole_answer_logprobs_match_sdk(upstreams: dict[str, Any], host: str) -> None:
    fake, stub = upstreams[host]
    fake.script(HOSTS[host][1], replay(CORPUS / "gemini" / "logprobs.json", "application/json"))
    fake.script(UNARY_PATH, replay(CORPUS / "gemini" / "logprobs.json", "application/json"))
    response = await stub.Chat(scored_ask(f"{host}/{MODEL}"), timeout=20)
    theirs = await sdk_client(fake).aio.models.generate_content(model=MODEL, contents="Go on.")
    assert our_scored(response.logprobs) == sdk_scored(theirs)
    assert response.text == theirs.text


# After the streams above: a 429 holds the provider for its retry delay.
@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize(
    "path", [p for p in recordings("gemini", ".json") if len(p.suffixes) == 2], ids=lambda p: p.stem
)
async def test_error_status_matches_sdk(host: str, path: Path) -> None:
    """`name.<http status>.json`: a google.rpc.Status body answered with that status. Each on a
    gateway of its own: a 429's RetryInfo holds the deployment for its delay."""
    async with replay_gateway("gemini") if host == "gemini" else vertex_gateway() as (fake, stub):
        await error_matches_sdk(fake, stub, host, path)


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize(
    "path", [p for p in recordings("gemini", ".json") if len(p.suffixes) == 2], ids=lambda p: p.stem
)
async def test_whole_answer_error_matches_stream(host: str, path: Path) -> None:
    """The same error answering `:generateContent`: the code, the words and the delay a stream's
    error has (google-genai raises the same for both)."""
    status = int(path.suffixes[0].lstrip("."))
    async with replay_gateway("gemini") if host == "gemini" else vertex_gateway() as (fake, stub):
        fake.script(HOSTS[host][0], replay(path, "application/json", status))
        _, streamed = await gateway_stream(stub, ask(f"{host}/{MODEL}"))
    async with replay_gateway("gemini") if host == "gemini" else vertex_gateway() as (fake, stub):
        fake.script(HOSTS[host][1], replay(path, "application/json", status))
        with pytest.raises(grpc.aio.AioRpcError) as whole:
            await stub.Chat(ask(f"{host}/{MODEL}"), timeout=20)
        fake.script(sdk_paths(path)[1], replay(path, "application/json", status))
        with pytest.raises(genai_errors.APIError) as raised:
            await sdk_client(fake, path).aio.models.generate_content(model=MODEL, contents="Go on.")
    assert streamed is not None
    assert whole.value.code() == streamed.code()
    assert str(raised.value.message) in whole.value.details()
    assert retry_after_s(whole.value) == retry_after_s(streamed)


async def error_matches_sdk(fake: FakeUpstream, stub: Any, host: str, path: Path) -> None:
    status = int(path.suffixes[0].lstrip("."))
    fake.script(HOSTS[host][0], replay(path, "application/json", status))
    fake.script(sdk_paths(path)[0], replay(path, "application/json", status))
    _, error = await gateway_stream(stub, ask(f"{host}/{MODEL}"))
    with pytest.raises(genai_errors.APIError) as raised:
        async for _ in await sdk_client(fake, path).aio.models.generate_content_stream(
            model=MODEL, contents="Go on."
        ):
            pass
    theirs = raised.value
    assert error is not None
    # The HTTP status decides, as on every HTTP provider: a 5xx is retryable UNAVAILABLE, Google's 504
    # DEADLINE_EXCEEDED (its own time limit, not the caller's deadline) included. A 400 whose
    # ErrorInfo.reason says the key is bad is UNAUTHENTICATED (docs/vendor-providers.md); another 400
    # is INVALID_ARGUMENT whatever Google's status word (FAILED_PRECONDITION for a user's location).
    reasons = {d.get("reason") for d in theirs.details["error"].get("details", [])}
    if status >= 500:
        expected = grpc.StatusCode.UNAVAILABLE
    elif reasons & {"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED"}:
        expected = grpc.StatusCode.UNAUTHENTICATED
    else:
        expected = HTTP_CODES[status]
    assert error.code() == expected
    assert str(theirs.message) in error.details()
    assert '"status"' not in (error.details() or "")  # Google's words, not the JSON around them
    # A prompt over the model's limit: the context window, said so (as for every vendor).
    over = "exceeds the maximum number of tokens" in str(theirs.message)
    assert ("context window" in (error.details() or "")) == over
    # What to change: an API disabled in the project is enabled there (at the activation URL
    # Google gives), which no other key of that project cures.
    infos = [d for d in theirs.details["error"].get("details", []) if d.get("reason") == "SERVICE_DISABLED"]
    if infos:
        said = infos[0]["metadata"]
        project = said["consumer"].removeprefix("projects/")
        assert (
            f"enable the {said['serviceTitle']} in Google Cloud project {project} at {said['activationUrl']}"
            in (error.details() or "")
        )
        assert "check the provider key" not in (error.details() or "")
    # An account without the IAM permission (Vertex): a role is granted to it, no key cures it.
    denied = [
        d for d in theirs.details["error"].get("details", []) if d.get("reason") == "IAM_PERMISSION_DENIED"
    ]
    if denied:
        permission = denied[0]["metadata"]["permission"]
        assert f"the credentials' account lacks {permission}" in (error.details() or "")
        assert "roles/aiplatform.user" in (error.details() or "")
        assert "check the provider key" not in (error.details() or "")
    # RetryInfo's delay ("17s") is the client's retry-after-ms; no RetryInfo, no delay.
    delays = [d["retryDelay"] for d in theirs.details["error"].get("details", []) if "retryDelay" in d]
    assert retry_after_s(error) == (float(delays[0].removesuffix("s")) if delays else None)
