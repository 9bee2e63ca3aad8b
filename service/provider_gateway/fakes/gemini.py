"""A fake Gemini API (AI Studio `v1beta` and Vertex AI `publishers/google`) that checks requests.

Run by hand: `python -m provider_gateway.fakes.gemini --port 8082`; models are named after scenarios
(see `vendor_base`). Streams use `\\r\\n` line ends, as Google's servers do.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
from typing import Any

from aiohttp import web

from provider_gateway.fakes import conversation as conv
from provider_gateway.fakes import logprobs as lp
from provider_gateway.fakes.structured import instance_of
from provider_gateway.fakes.vendor_base import FakeVendor, error_status, json_response, scenario_of

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
RETRY_DELAY = "7s"
PART_KINDS = ("text", "inlineData", "fileData", "functionCall", "functionResponse")
GENERATION_KEYS = {
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "thinkingConfig",
    "candidateCount",
    "responseLogprobs",
    "logprobs",
}


def status_body(status: int, message: str = "") -> dict[str, Any]:
    name = STATUS_NAMES.get(status, "UNKNOWN")
    error: dict[str, Any] = {"code": status, "message": message or f"fake {name}", "status": name}
    if status == 429:
        error["details"] = [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": RETRY_DELAY},
        ]
    return {"error": error}


def key_invalid_body() -> dict[str, Any]:
    """What AI Studio answers for a bad key: 400 INVALID_ARGUMENT, the reason only in ErrorInfo."""
    body = status_body(400, "API key not valid. Please pass a valid API key.")
    body["error"]["details"] = [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        }
    ]
    return body


def _chunk(
    parts: list[dict[str, Any]],
    model: str,
    finish: str = "",
    usage: str = "",
    logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One GenerateContentResponse; `usage` is "" (partial counts), "final" or "reasoning";
    `logprobs`: the candidate's `logprobsResult`, when asked."""
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if logprobs is not None:
        candidate["logprobsResult"] = logprobs
    if finish:
        candidate["finishReason"] = finish
    chunk: dict[str, Any] = {
        "candidates": [candidate],
        "modelVersion": model,
        "responseId": "fake-response-1",
    }
    thoughts = 7 if usage == "reasoning" else 0
    chunk["usageMetadata"] = {
        "promptTokenCount": conv.INPUT_TOKENS,
        "cachedContentTokenCount": conv.CACHE_READ_TOKENS,
        "candidatesTokenCount": conv.OUTPUT_TOKENS - thoughts if usage else 2,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": conv.INPUT_TOKENS}],
        "totalTokenCount": conv.INPUT_TOKENS + conv.OUTPUT_TOKENS,
        **({"thoughtsTokenCount": thoughts} if thoughts else {}),
    }
    return chunk


def structured_text(body: Any) -> str | None:
    """What Gemini answers a `responseJsonSchema` request with: JSON text matching the schema."""
    config = body.get("generationConfig") if isinstance(body, dict) else None
    if isinstance(config, dict) and "responseJsonSchema" in config:
        return json.dumps(instance_of(config["responseJsonSchema"]))
    return None


def top_logprobs(body: Any) -> int | None:
    """The top candidates asked (`generationConfig.logprobs`), or None when no logprobs were."""
    config = body.get("generationConfig") if isinstance(body, dict) else None
    if not isinstance(config, dict) or not config.get("responseLogprobs"):
        return None
    return int(config.get("logprobs") or 0)


def frames_for(
    scenario: str, model: str, text: str | None = None, top: int | None = None
) -> tuple[list[str], str]:
    """SSE frames for one scenario, or for `text` (a structured answer) in two chunks; with `top`
    (logprobs asked), each text chunk is one token and carries its `logprobsResult`."""

    def frame(data: Any) -> str:
        return f"data: {data if isinstance(data, str) else json.dumps(data)}\r\n\r\n"

    frames: list[str] = []
    if scenario == "reasoning":
        frames += [frame(_chunk([{"text": c, "thought": True}], model)) for c in conv.REASONING_CHUNKS]
    chunks = conv.TEXT_CHUNKS if text is None else (text[:5], text[5:])
    for i, text in enumerate(chunks):
        scored = None if top is None else lp.gemini_result([text], top, i)
        frames.append(frame(_chunk([{"text": text}], model, logprobs=scored)))
        if i == 0 and scenario == "malformed":
            return [*frames, "data: {not json\r\n\r\n"], ""
        if i == 0 and scenario == "midstream-error":
            return [*frames, frame(status_body(503, "The model is overloaded."))], ""
        if i == 0 and scenario in ("cut", "hang"):
            return frames, scenario
    last: list[dict[str, Any]] = []
    if scenario == "tools":
        last = [{"functionCall": {"name": conv.TOOL_NAME, "args": conv.TOOL_ARGS}}]
    frames.append(
        frame(_chunk(last, model, finish="STOP", usage="reasoning" if scenario == "reasoning" else "final"))
    )
    return frames, ""


def generate_body(
    scenario: str, model: str, text: str | None = None, top: int | None = None
) -> dict[str, Any]:
    """The documented unary GenerateContentResponse for the conversation `frames_for` streams."""
    chunks = conv.TEXT_CHUNKS if text is None else (text[:5], text[5:])
    scored = None if top is None else lp.gemini_result(list(chunks), top)
    parts: list[dict[str, Any]] = []
    if scenario == "reasoning":
        parts.append({"text": "".join(conv.REASONING_CHUNKS), "thought": True})
    parts.append({"text": "".join(conv.TEXT_CHUNKS) if text is None else text})
    if scenario == "tools":
        parts.append({"functionCall": {"name": conv.TOOL_NAME, "args": conv.TOOL_ARGS}})
    usage = "reasoning" if scenario == "reasoning" else "final"
    return _chunk(parts, model, finish="STOP", usage=usage, logprobs=scored)


class FakeGemini(FakeVendor):
    def __init__(self, api_key: str = "test-gemini-key", vertex_token: str = "test-vertex-token") -> None:
        super().__init__()
        self.api_key = api_key
        self.vertex_token = vertex_token

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1beta/models/{model_action}", self.studio),
            web.get("/v1beta/models", self.models),
            web.post(
                "/v1/projects/{project}/locations/{location}/publishers/google/models/{model_action}",
                self.vertex,
            ),
        ]

    async def studio(self, request: web.Request) -> web.StreamResponse:
        recorded = await self.record(request)
        if request.headers.get("x-goog-api-key") != self.api_key:
            return json_response(key_invalid_body(), 400)
        model, _, action = request.match_info["model_action"].partition(":")
        return await self._dispatch(request, recorded.body, model, action, f"models/{model}")

    async def vertex(self, request: web.Request) -> web.StreamResponse:
        recorded = await self.record(request)
        if request.headers.get("authorization") != f"Bearer {self.vertex_token}":
            return json_response(status_body(401, "Request had invalid authentication credentials."), 401)
        self.check(request.match_info["location"] != "", "vertex: location missing")
        model, _, action = request.match_info["model_action"].partition(":")
        return await self._dispatch(request, recorded.body, model, action, "")

    async def _dispatch(
        self, request: web.Request, body: Any, model: str, action: str, model_path: str
    ) -> web.StreamResponse:
        if action in ("streamGenerateContent", "generateContent"):
            self._check_generate(body, action)
            scenario = scenario_of(model)
            status = error_status(scenario)
            if status is not None:
                return json_response(status_body(status), status)
            if action == "generateContent":
                self.check("alt" not in request.query, "generateContent: no alt=sse")
                overloaded = json_response(status_body(503, "The model is overloaded."), 503)
                answer = generate_body(scenario, model, structured_text(body), top_logprobs(body))
                return await self.whole(request, answer, scenario, overloaded)
            frames, ending = frames_for(scenario, model, structured_text(body), top_logprobs(body))
            self.check(request.query.get("alt") == "sse", "streamGenerateContent: alt=sse expected")
            return await self.stream(request, frames, ending=ending)
        if action == "countTokens":
            contents = body.get("contents") or (body.get("generateContentRequest") or {}).get("contents")
            self.check(isinstance(contents, list) and bool(contents), "countTokens: contents missing")
            if "generateContentRequest" in body:
                self.check(
                    body["generateContentRequest"].get("model") == model_path or not model_path,
                    "countTokens: model",
                )
            return json_response({"totalTokens": 42})
        if action == "batchEmbedContents":
            requests = body.get("requests") if isinstance(body, dict) else None
            if not self.check(isinstance(requests, list) and bool(requests), "batchEmbedContents: requests"):
                return json_response(status_body(400), 400)
            for item in requests or []:
                self.check(item.get("model") == model_path, f"batchEmbedContents: model must be {model_path}")
                self.check(
                    bool((item.get("content") or {}).get("parts")), "batchEmbedContents: content.parts"
                )
            dims = int((requests or [{}])[0].get("outputDimensionality") or 4)
            return json_response(
                {"embeddings": [{"values": [0.25 * (i + 1)] * dims} for i in range(len(requests or []))]}
            )
        if action == "predict" and not model_path:  # Vertex's text embedding models
            return self._predict(body, model)
        self.problems.append(f"unknown action {action!r}")
        return json_response(status_body(404), 404)

    def _predict(self, body: Any, model: str) -> web.Response:
        instances = body.get("instances") if isinstance(body, dict) else None
        if not self.check(isinstance(instances, list) and bool(instances), "predict: instances"):
            return json_response(status_body(400), 400)
        for item in instances or []:
            self.check(isinstance(item.get("content"), str), "predict: instances[].content must be text")
        status = error_status(scenario_of(model))
        if status is not None:
            return json_response(status_body(status), status)
        if model.startswith("gemini-embedding") and len(instances or []) > 1:
            message = "Unable to submit request because the model supports only 1 instance per request."
            return json_response(status_body(400, message), 400)
        unknown = set(body.get("parameters") or {}) - {"outputDimensionality", "autoTruncate"}
        self.check(not unknown, f"predict: unknown parameters {sorted(unknown)}")
        dims = int((body.get("parameters") or {}).get("outputDimensionality") or 4)
        predictions = [
            {
                "embeddings": {
                    "values": [0.25 * (i + 1)] * dims,
                    "statistics": {"token_count": len(item["content"].split()), "truncated": False},
                }
            }
            for i, item in enumerate(instances or [])
        ]
        return json_response({"predictions": predictions, "metadata": {"billableCharacterCount": 10}})

    def _check_generate(self, body: Any, where: str) -> None:
        if not self.check_fields(body, {"contents": list}, where):
            return
        for content in body["contents"]:
            self.check(content.get("role") in ("user", "model"), f"{where}: role must be user or model")
            parts = content.get("parts")
            self.check(isinstance(parts, list) and bool(parts), f"{where}: parts must be a non-empty list")
            for part in parts or []:
                kinds = [k for k in PART_KINDS if k in part]
                self.check(len(kinds) == 1, f"{where}: a part holds exactly one of {PART_KINDS}, got {kinds}")
                if "inlineData" in part:
                    inline = part["inlineData"]
                    self.check(bool(inline.get("mimeType")), f"{where}: inlineData.mimeType")
                    try:
                        base64.b64decode(inline.get("data", ""), validate=True)
                    except (binascii.Error, ValueError):
                        self.problems.append(f"{where}: inlineData.data is not base64")
                if "functionResponse" in part:
                    response = part["functionResponse"]
                    self.check(bool(response.get("name")), f"{where}: functionResponse.name")
                    self.check(
                        isinstance(response.get("response"), dict), f"{where}: functionResponse.response"
                    )
                if "functionCall" in part:
                    self.check(
                        isinstance(part["functionCall"].get("args"), dict), f"{where}: functionCall.args"
                    )
        system = body.get("systemInstruction")
        if system is not None:
            self.check(bool(system.get("parts")), f"{where}: systemInstruction.parts")
        unknown = set(body.get("generationConfig") or {}) - GENERATION_KEYS
        self.check(not unknown, f"{where}: unknown generationConfig keys {sorted(unknown)}")
        for tool in body.get("tools") or []:
            self.check(
                isinstance(tool.get("functionDeclarations"), list), f"{where}: tools[].functionDeclarations"
            )
        mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode")
        self.check(mode in (None, "AUTO", "ANY", "NONE"), f"{where}: functionCallingConfig.mode {mode}")

    async def models(self, request: web.Request) -> web.Response:
        await self.record(request)
        if request.headers.get("x-goog-api-key") != self.api_key:
            return json_response(key_invalid_body(), 400)
        return json_response(
            {
                "models": [
                    {
                        "name": "models/gemini-2.5-flash",
                        "displayName": "Gemini 2.5 Flash",
                        "inputTokenLimit": 1048576,
                        "outputTokenLimit": 65536,
                        "supportedGenerationMethods": ["generateContent", "countTokens"],
                        "thinking": True,
                    },
                    {
                        "name": "models/text-embedding-004",
                        "displayName": "Text Embedding 004",
                        "inputTokenLimit": 2048,
                        "outputTokenLimit": 1,
                        "supportedGenerationMethods": ["embedContent"],
                    },
                ]
            }
        )


async def _serve(port: int) -> None:
    fake = FakeGemini()
    print(f"fake gemini on {await fake.start(port)} (x-goog-api-key {fake.api_key})", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8082)
    asyncio.run(_serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
