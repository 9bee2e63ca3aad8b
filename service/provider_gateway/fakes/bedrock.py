"""A fake Bedrock endpoint for tests and benchmarks: runtime and control plane on 127.0.0.1.

It answers the real REST routes with the real wire formats, so botocore's own serializers and
parsers run unchanged: JSON bodies, AWS JSON errors with `x-amzn-ErrorType`, and binary
`application/vnd.amazon.eventstream` frames (prelude, headers, payload, both CRC32s). Every
request's SigV4 signature is recomputed with botocore's signer for the fake's credentials (an
implementation independent of the gateway's aws-sdk-signers); a Bedrock API key (`Authorization:
Bearer`) is compared with the one the fake was given. A bad signature or key gets Bedrock's 403.

Tests script replies with `push`; without a script the fake answers plausibly per model family,
and rejects InvokeModel bodies that lack the fields each family requires. Application inference
profiles (`application_profiles`: ARN -> the foundation model id it runs) answer
GetInferenceProfile as AWS does (or not at all, while `profiles_answer` is clear), and runtime
calls to one are answered as its model's family.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import json
import re
import struct
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from provider_gateway.fakes import bedrock_invoke_bodies as more_families

ACCESS_KEY = "AKIDFAKEBEDROCK"
SECRET_KEY = "fake-secret-key-for-tests"  # a dummy: the fake signs nothing, it only checks
EVENTSTREAM = "application/vnd.amazon.eventstream"
AMZ_DATE = "%Y%m%dT%H%M%SZ"
SKEW_ALLOWED = datetime.timedelta(minutes=5)  # Bedrock's window around its clock for X-Amz-Date
# Bedrock's tokens are opaque base64: `/`, `+` and `=` test the query's encoding and its signature.
PAGE_TOKEN = "eyJwYWdlIjo/+="
ERROR_STATUS = {
    "ThrottlingException": 429,
    "ModelNotReadyException": 429,
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
    "InvalidSignatureException": 403,
}
AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
    r"/aws4_request, SignedHeaders=(?P<signed>[^,]+), Signature=(?P<signature>[0-9a-f]{64})$"
)


# --- eventstream encoding (pure) ---------------------------------------------------------------


def encode_headers(headers: Mapping[str, str]) -> bytes:
    """String-typed (type 7) headers: name length, name, type, value length, value."""
    out = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        out += struct.pack("!B", len(raw_name)) + raw_name
        out += struct.pack("!BH", 7, len(raw_value)) + raw_value
    return bytes(out)


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One eventstream message: prelude (total and headers length, CRC), headers, payload, CRC."""
    encoded_headers = encode_headers(headers)
    total = 12 + len(encoded_headers) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded_headers))
    message = prelude + struct.pack("!I", binascii.crc32(prelude)) + encoded_headers + payload
    return message + struct.pack("!I", binascii.crc32(message))


def event_frame(event_type: str, body: Mapping[str, Any]) -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(headers, json.dumps(body).encode())


def exception_frame(exception_type: str, message: str) -> bytes:
    """An exception inside the stream; Bedrock names it by the stream member (`throttlingException`)."""
    headers = {
        ":exception-type": exception_type[:1].lower() + exception_type[1:],
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_message(headers, json.dumps({"message": message}).encode())


def chunk_frame(chunk: Mapping[str, Any]) -> bytes:
    """An InvokeModelWithResponseStream `chunk` event: the family's JSON, base64 in `bytes`."""
    return event_frame("chunk", {"bytes": base64.b64encode(json.dumps(chunk).encode()).decode()})


def converse_text_frames(
    texts: Sequence[str], *, stop: str = "end_turn", usage: Mapping[str, int] | None = None
) -> list[bytes]:
    frames = [event_frame("messageStart", {"role": "assistant"})]
    frames += [
        event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": t}}) for t in texts
    ]
    frames += [
        event_frame("contentBlockStop", {"contentBlockIndex": 0}),
        event_frame("messageStop", {"stopReason": stop}),
        event_frame(
            "metadata",
            {
                "usage": dict(usage or {"inputTokens": 11, "outputTokens": 5, "totalTokens": 16}),
                "metrics": {"latencyMs": 42},
            },
        ),
    ]
    return frames


def converse_problem(body: Mapping[str, Any]) -> str:
    """What Bedrock's Converse rejects in a body that the fake checks: tool blocks without tools."""
    blocks = [b for m in body.get("messages", []) for b in m.get("content", []) if isinstance(b, dict)]
    if "toolConfig" not in body and any("toolUse" in b or "toolResult" in b for b in blocks):
        return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
    return ""


# --- family bodies -----------------------------------------------------------------------------


def model_family(model_id: str) -> str:
    base = model_id.rsplit("/", 1)[-1]
    if family := more_families.family_of(base):
        return family
    for vendor, family in (
        ("anthropic.", "anthropic"),
        ("amazon.nova", "nova"),
        ("amazon.titan", "titan"),
        ("meta.", "llama"),
        ("mistral.", "mistral"),
        ("cohere.", "cohere"),
    ):
        if vendor in base:
            return family
    return "other"


REQUIRED_FIELDS = {
    "anthropic": ("anthropic_version", "max_tokens", "messages"),
    "nova": ("messages",),
    "titan": ("inputText",),
    "llama": ("prompt",),
    "mistral": ("prompt",),
    **more_families.REQUIRED_FIELDS,
}


def invoke_problem(family: str, body: Mapping[str, Any]) -> str:
    """Why Bedrock would reject this InvokeModel body, or ""."""
    if "embed" in family:
        return ""
    missing = [f for f in REQUIRED_FIELDS.get(family, ()) if f not in body]
    if missing:
        return f"Malformed input request: required key(s) {missing} not found"
    if family == "anthropic" and body["anthropic_version"] != "bedrock-2023-05-31":
        return "Malformed input request: anthropic_version must be bedrock-2023-05-31"
    if family == "cohere" and "message" not in body and "prompt" not in body and "texts" not in body:
        return "Malformed input request: message or prompt is required"
    return ""


def invoke_response(family: str, text: str) -> dict[str, Any]:
    """A whole InvokeModel response in the family's documented shape."""
    if family in more_families.REQUIRED_FIELDS:
        return more_families.response(family, text)
    if family == "anthropic":
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 9, "output_tokens": 4},
        }
    if family == "nova":
        return {
            "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 9, "outputTokens": 4, "totalTokens": 13},
        }
    if family == "titan":
        return {
            "inputTextTokenCount": 9,
            "results": [{"tokenCount": 4, "outputText": text, "completionReason": "FINISH"}],
        }
    if family == "llama":
        return {
            "generation": text,
            "prompt_token_count": 9,
            "generation_token_count": 4,
            "stop_reason": "stop",
        }
    if family == "mistral":
        return {"outputs": [{"text": text, "stop_reason": "stop"}]}
    return {"text": text, "finish_reason": "COMPLETE", "generation_id": "gen-fake"}


def invoke_stream_chunks(family: str, pieces: Sequence[str]) -> list[dict[str, Any]]:
    """InvokeModelWithResponseStream chunks in the family's documented shape."""
    if family in more_families.REQUIRED_FIELDS:
        return more_families.stream_chunks(family, pieces)
    metrics = {"amazon-bedrock-invocationMetrics": {"inputTokenCount": 9, "outputTokenCount": len(pieces)}}
    if family == "anthropic":
        return [
            {
                "type": "message_start",
                "message": {"id": "msg_fake", "usage": {"input_tokens": 9, "output_tokens": 1}},
            },
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            *(
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
                for p in pieces
            ),
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": len(pieces)},
            },
            {"type": "message_stop", **metrics},
        ]
    if family == "nova":
        return [
            {"messageStart": {"role": "assistant"}},
            *({"contentBlockDelta": {"delta": {"text": p}, "contentBlockIndex": 0}} for p in pieces),
            {"contentBlockStop": {"contentBlockIndex": 0}},
            {"messageStop": {"stopReason": "end_turn"}},
            {"metadata": {"usage": {"inputTokens": 9, "outputTokens": len(pieces)}}, **metrics},
        ]
    if family == "titan":
        chunks: list[dict[str, Any]] = [
            {"outputText": p, "index": 0, "totalOutputTextTokenCount": i + 1, "completionReason": None}
            for i, p in enumerate(pieces)
        ]
        chunks[0]["inputTextTokenCount"] = 9
        chunks[-1] |= {"completionReason": "FINISH", **metrics}
        return chunks
    if family == "llama":
        chunks = [
            {
                "generation": p,
                "prompt_token_count": None,
                "generation_token_count": i + 1,
                "stop_reason": None,
            }
            for i, p in enumerate(pieces)
        ]
        chunks[0]["prompt_token_count"] = 9
        chunks[-1] |= {"stop_reason": "stop", **metrics}
        return chunks
    if family == "mistral":
        chunks = [{"outputs": [{"text": p, "stop_reason": None}]} for p in pieces]
        chunks[-1] = {"outputs": [{"text": pieces[-1], "stop_reason": "stop"}], **metrics}
        return chunks
    return [
        *({"is_finished": False, "event_type": "text-generation", "text": p} for p in pieces),
        {
            "is_finished": True,
            "event_type": "stream-end",
            "finish_reason": "COMPLETE",
            "response": {"meta": {"billed_units": {"input_tokens": 9, "output_tokens": len(pieces)}}},
            **metrics,
        },
    ]


# --- the server --------------------------------------------------------------------------------


@dataclass(slots=True)
class Reply:
    """A scripted answer to the next runtime request.

    `error` = (exception type, message) answers with an AWS JSON error. `headers` adds response headers. `frames` answers a
    streaming route with these eventstream frames; `hang` then keeps the stream open until the
    client disconnects. `body` answers a unary route with this JSON.
    """

    error: tuple[str, str] | None = None
    frames: Sequence[bytes] | None = None
    body: Mapping[str, Any] | None = None
    hang: bool = False
    headers: Mapping[str, str] | None = None  # extra response headers (InvokeModel's token counts)


@dataclass(slots=True)
class SeenRequest:
    operation: str
    model_id: str
    body: dict[str, Any]
    region: str
    service: str
    signature_valid: bool
    headers: dict[str, str] = field(default_factory=dict)
    client_port: int = 0  # the client's TCP port: equal ports mean a reused connection
    request_line: str = ""  # method and path as sent (before any decoding)
    raw_body: bytes = b""


class FakeBedrock:
    """Runs on 127.0.0.1 and a free port; use as `async with FakeBedrock() as fake: fake.url`."""

    def __init__(
        self,
        *,
        access_key: str = ACCESS_KEY,
        secret_key: str = SECRET_KEY,
        bearer_token: str = "",
        clock_offset: datetime.timedelta = datetime.timedelta(0),
    ) -> None:
        self.credentials = Credentials(access_key, secret_key)
        self.clock_offset = clock_offset  # AWS's clock minus this host's: a skewed client's view
        self.bearer_token = bearer_token  # a Bedrock API key this fake accepts instead of SigV4
        self.profile_pages: list[list[dict[str, Any]]] = []  # ListInferenceProfiles pages, when set
        self.application_profiles: dict[str, str] = {}  # ARN -> the foundation model id it runs
        self.profile_error: tuple[str, str] | None = None  # GetInferenceProfile's answer, when set
        # GetInferenceProfile answers only while this is set: clear() it for a control plane that
        # hangs (a VPC with only the runtime's endpoint), set() it to let the held lookups answer.
        self.profiles_answer = asyncio.Event()
        self.profiles_answer.set()
        self.replies: deque[Reply] = deque()
        self.seen: list[SeenRequest] = []
        self.disconnected = asyncio.Event()
        self.streams_open = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        app = web.Application()
        app.router.add_post("/model/{model_id}/{operation}", self._runtime)
        app.router.add_get("/foundation-models", self._foundation_models)
        app.router.add_get("/inference-profiles", self._inference_profiles)
        app.router.add_get("/inference-profiles/{identifier}", self._inference_profile)
        self.app = app

    async def __aenter__(self) -> FakeBedrock:
        # handler_cancellation: a client that goes away cancels the handler, which we record.
        self._runner = web.AppRunner(self.app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def push(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def last(self, operation: str = "") -> SeenRequest:
        return next(r for r in reversed(self.seen) if not operation or r.operation == operation)

    # --- signature -----------------------------------------------------------------------------

    def _check_signature(self, request: web.Request, body: bytes) -> tuple[bool, str, str]:
        """(valid, region, service): SigV4 recomputed with the secret, or the API key compared."""
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            return bool(self.bearer_token) and authorization == f"Bearer {self.bearer_token}", "", ""
        match = AUTHORIZATION.match(authorization)
        if match is None or match["key"] != self.credentials.access_key:
            return False, "", ""
        region, service = match["region"], match["service"]
        signed = match["signed"].split(";")
        if any(name not in request.headers for name in signed):
            return False, region, service
        # botocore's signer takes the query as already canonically encoded (its serializer's form);
        # AWS re-encodes what it receives, so do the same: a client may send `/` or `%2F` alike.
        path, _, query = request.raw_path.partition("?")
        pairs = sorted(p.partition("=")[::2] for p in query.split("&")) if query else []
        canonical = "&".join(
            f"{quote(unquote(k), safe='-_.~')}={quote(unquote(v), safe='-_.~')}" for k, v in pairs
        )
        url = f"http://{request.headers['Host']}{path}" + (f"?{canonical}" if canonical else "")
        aws_request = AWSRequest(
            method=request.method, url=url, data=body, headers={h: request.headers[h] for h in signed}
        )
        aws_request.context["timestamp"] = request.headers.get("X-Amz-Date", "")
        signer = SigV4Auth(self.credentials, service, region)
        expected = signer.signature(
            signer.string_to_sign(aws_request, signer.canonical_request(aws_request)), aws_request
        )
        return expected == match["signature"], region, service

    def _stale_date(self, request: web.Request) -> str:
        """Bedrock's message for an X-Amz-Date more than 5 minutes from its clock, else ""."""
        signed = request.headers.get("X-Amz-Date", "")
        if not signed or request.headers.get("Authorization", "").startswith("Bearer "):
            return ""
        try:
            when = datetime.datetime.strptime(signed, AMZ_DATE).replace(tzinfo=datetime.UTC)
        except ValueError:
            return ""
        now = datetime.datetime.now(datetime.UTC) + self.clock_offset
        if when < now - SKEW_ALLOWED:
            return f"Signature expired: {signed} is now earlier than {(now - SKEW_ALLOWED):{AMZ_DATE}} ({now:{AMZ_DATE}} - 5 min.)"
        if when > now + SKEW_ALLOWED:
            return f"Signature not yet current: {signed} is still later than {(now + SKEW_ALLOWED):{AMZ_DATE}} ({now:{AMZ_DATE}} + 5 min.)"
        return ""

    def _refusal(self, request: web.Request, seen: SeenRequest) -> web.Response | None:
        """Bedrock's 403 for a request dated out of its window or signed wrongly, else None."""
        if stale := self._stale_date(request):
            return error_response("InvalidSignatureException", stale)
        if not seen.signature_valid:
            return error_response(
                "InvalidSignatureException", "The request signature we calculated does not match"
            )
        return None

    async def _record(self, request: web.Request, operation: str, model_id: str) -> SeenRequest:
        raw = await request.read()
        valid, region, service = self._check_signature(request, raw)
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"_raw": raw.decode(errors="replace")}
        peer = request.transport.get_extra_info("peername") if request.transport else None
        port = peer[1] if peer else 0
        seen = SeenRequest(
            operation,
            model_id,
            body,
            region,
            service,
            valid,
            dict(request.headers),
            port,
            f"{request.method} {request.raw_path}",
            raw,
        )
        self.seen.append(seen)
        return seen

    # --- routes --------------------------------------------------------------------------------

    async def _runtime(self, request: web.Request) -> web.StreamResponse:
        operation, model_id = request.match_info["operation"], request.match_info["model_id"]
        seen = await self._record(request, operation, model_id)
        if (refused := self._refusal(request, seen)) is not None:
            return refused
        reply = self.replies.popleft() if self.replies else None
        if reply is not None and reply.error is not None:
            return error_response(*reply.error)
        if operation in ("converse", "converse-stream") and (problem := converse_problem(seen.body)):
            return error_response("ValidationException", problem)
        family = model_family(self.application_profiles.get(model_id, model_id))
        scripted = reply is not None and reply.frames is not None
        problem = invoke_problem(family, seen.body) if operation == "invoke-with-response-stream" else ""
        if problem and not scripted:
            return error_response("ValidationException", problem)
        if operation in ("converse-stream", "invoke-with-response-stream"):
            frames = (
                reply.frames
                if reply is not None and reply.frames is not None
                else default_frames(operation, family)
            )
            return await self._stream(request, frames, hang=reply is not None and reply.hang)
        if reply is not None and reply.body is not None:
            return web.json_response(dict(reply.body), headers=dict(reply.headers or {}))
        return self._default_unary(operation, family, seen)

    def _default_unary(self, operation: str, family: str, seen: SeenRequest) -> web.Response:
        if operation == "converse":
            return web.json_response(
                {
                    "output": {"message": {"role": "assistant", "content": [{"text": "Hello from Bedrock"}]}},
                    "stopReason": "end_turn",
                    "usage": {"inputTokens": 11, "outputTokens": 4, "totalTokens": 15},
                    "metrics": {"latencyMs": 40},
                }
            )
        if operation == "count-tokens":
            return web.json_response({"inputTokens": count_words(seen.body)})
        if operation != "invoke":
            return error_response("ValidationException", f"unknown operation {operation}")
        if "titan-embed" in seen.model_id:
            text = str(seen.body.get("inputText", ""))
            dims = int(seen.body.get("dimensions", 4))
            return web.json_response(
                {"embedding": fake_vector(text, dims), "inputTextTokenCount": len(text.split())}
            )
        if "cohere.embed" in seen.model_id:
            texts = [str(t) for t in seen.body.get("texts", [])]
            dims = int(seen.body.get("output_dimension", 4))  # Embed v4's; v3 has no such field
            return web.json_response(
                {"id": "emb", "embeddings": {"float": [fake_vector(t, dims) for t in texts]}}
            )
        if problem := invoke_problem(family, seen.body):
            return error_response("ValidationException", problem)
        # Bedrock reports InvokeModel's token counts in headers too (the fake's are the body's).
        counts = {"X-Amzn-Bedrock-Input-Token-Count": "9", "X-Amzn-Bedrock-Output-Token-Count": "4"}
        return web.json_response(invoke_response(family, f"Hello from {family}"), headers=counts)

    async def _stream(
        self, request: web.Request, frames: Sequence[bytes], *, hang: bool
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": EVENTSTREAM, "x-amzn-RequestId": "fake-request"}
        )
        await response.prepare(request)
        self.streams_open += 1
        try:
            for frame in frames:
                await response.write(frame)
            if hang:
                await asyncio.wait_for(asyncio.Event().wait(), timeout=60)
            await response.write_eof()
        except (asyncio.CancelledError, ConnectionResetError):
            self.disconnected.set()
            raise
        finally:
            self.streams_open -= 1
        return response

    async def _foundation_models(self, request: web.Request) -> web.Response:
        seen = await self._record(request, "list-foundation-models", "")
        if (refused := self._refusal(request, seen)) is not None:
            return refused
        summaries = [
            {
                "modelId": "anthropic.claude-3-5-sonnet-20241022-v2:0",
                "modelName": "Claude 3.5 Sonnet v2",
                "providerName": "Anthropic",
                "inputModalities": ["TEXT", "IMAGE"],
                "outputModalities": ["TEXT"],
                "responseStreamingSupported": True,
            },
            {
                "modelId": "amazon.titan-embed-text-v2:0",
                "modelName": "Titan Text Embeddings V2",
                "providerName": "Amazon",
                "inputModalities": ["TEXT"],
                "outputModalities": ["EMBEDDING"],
            },
        ]
        return web.json_response({"modelSummaries": summaries})

    async def _inference_profiles(self, request: web.Request) -> web.Response:
        seen = await self._record(request, "list-inference-profiles", "")
        if (refused := self._refusal(request, seen)) is not None:
            return refused
        if self.profile_pages:  # paged: page i's nextToken names page i + 1
            index = int(request.query.get("nextToken", PAGE_TOKEN + "0").removeprefix(PAGE_TOKEN))
            page: dict[str, Any] = {"inferenceProfileSummaries": self.profile_pages[index]}
            if index + 1 < len(self.profile_pages):
                page["nextToken"] = f"{PAGE_TOKEN}{index + 1}"
            return web.json_response(page)
        profile = {
            "inferenceProfileId": "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
            "inferenceProfileName": "US Claude 3.5 Sonnet v2",
            "status": "ACTIVE",
            "type": "SYSTEM_DEFINED",
        }
        return web.json_response({"inferenceProfileSummaries": [profile]})

    async def _inference_profile(self, request: web.Request) -> web.Response:
        """GetInferenceProfile, by ARN or id: the members botocore's `GetInferenceProfileResponse`
        requires, for an application profile made from one foundation model."""
        identifier = request.match_info["identifier"]
        seen = await self._record(request, "get-inference-profile", identifier)
        if (refused := self._refusal(request, seen)) is not None:
            return refused
        try:
            await asyncio.wait_for(self.profiles_answer.wait(), timeout=60)
        except asyncio.CancelledError:  # the client went away
            self.disconnected.set()
            raise
        if self.profile_error is not None:
            return error_response(*self.profile_error)
        arn = next((a for a in self.application_profiles if identifier in (a, a.rpartition("/")[2])), "")
        if not arn:
            return error_response(
                "ResourceNotFoundException", "The specified inference profile does not exist"
            )
        region = arn.split(":")[3]
        model_arn = f"arn:aws:bedrock:{region}::foundation-model/{self.application_profiles[arn]}"
        return web.json_response(
            {
                "inferenceProfileName": "app-profile",
                "inferenceProfileArn": arn,
                "inferenceProfileId": arn.rpartition("/")[2],
                "models": [{"modelArn": model_arn}],
                "status": "ACTIVE",
                "type": "APPLICATION",
                "createdAt": "2026-01-02T03:04:05Z",
                "updatedAt": "2026-01-02T03:04:05Z",
            }
        )


def default_frames(operation: str, family: str) -> list[bytes]:
    if operation == "converse-stream":
        return converse_text_frames(["Hello", " from", " Bedrock"])
    return [chunk_frame(c) for c in invoke_stream_chunks(family, ["Hello", " from", f" {family}"])]


def error_response(error_type: str, message: str) -> web.Response:
    """The AWS JSON error shape: the type in `x-amzn-ErrorType`, the text in `message`."""
    return web.json_response(
        {"message": message},
        status=ERROR_STATUS.get(error_type, 400),
        headers={"x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/"},
    )


def count_words(value: Any, key: str = "") -> int:
    """The fake's token count: the number of words in every `text` field of the input."""
    if isinstance(value, str):
        return len(value.split()) if key == "text" else 0
    if isinstance(value, Mapping):
        return sum(count_words(v, k) for k, v in value.items())
    if isinstance(value, list):
        return sum(count_words(v, key) for v in value)
    return 0


def fake_vector(text: str, dims: int) -> list[float]:
    seed = sum(text.encode()) or 1
    return [((seed * (i + 1)) % 97) / 97 for i in range(dims)]
