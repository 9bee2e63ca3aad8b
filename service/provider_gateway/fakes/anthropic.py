"""A fake Anthropic API (and Claude on Vertex's rawPredict endpoints) that checks what it is sent.

Run by hand: `python -m provider_gateway.fakes.anthropic --port 8081`, then configure a provider
`kind = "anthropic"` with `base_url = "http://127.0.0.1:8081"` and any model named after a scenario
(see `vendor_base`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import itertools
import json
from typing import Any

from aiohttp import web

from provider_gateway.fakes import conversation as conv
from provider_gateway.fakes.structured import instance_of
from provider_gateway.fakes.vendor_base import FakeVendor, error_status, json_response, scenario_of, sse

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
RETRY_AFTER_S = "3"


def error_body(status: int, message: str = "") -> dict[str, Any]:
    kind = ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message or f"fake {kind}"}}


def _usage(output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": conv.INPUT_TOKENS - conv.CACHE_READ_TOKENS,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": conv.CACHE_READ_TOKENS,
        "output_tokens": output_tokens,
    }


def message_body(scenario: str, model: str) -> dict[str, Any]:
    """The documented unary Message (`stream: false`) for the conversation `message_frames` streams."""
    content: list[dict[str, Any]] = []
    if scenario == "reasoning":
        thinking = "".join(conv.REASONING_CHUNKS)
        content.append({"type": "thinking", "thinking": thinking, "signature": "fake-signature"})
    content.append({"type": "text", "text": "".join(conv.TEXT_CHUNKS)})
    stop_reason = "end_turn"
    if scenario in ("tools", "tools-max-tokens"):
        cut = scenario == "tools-max-tokens"
        # max_tokens: the input as far as it was generated (the stream's half arguments)
        tool_input = {"city": conv.TOOL_ARGS["city"]} if cut else conv.TOOL_ARGS
        content.append(
            {"type": "tool_use", "id": "toolu_fake_1", "name": conv.TOOL_NAME, "input": tool_input}
        )
        stop_reason = "max_tokens" if cut else "tool_use"
    return {
        "id": "msg_fake_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": _usage(conv.OUTPUT_TOKENS),
    }


def structured_answer(body: Any) -> dict[str, Any] | None:
    """The one content block Claude answers a structured request with: JSON text for
    `output_config.format`, or, for a `tool_choice` forcing a tool, only that tool's call."""
    output = (body.get("output_config") or {}).get("format") if isinstance(body, dict) else None
    if isinstance(output, dict) and output.get("type") == "json_schema":
        return {"type": "text", "text": json.dumps(instance_of(output.get("schema")))}
    choice = body.get("tool_choice") if isinstance(body, dict) else None
    if isinstance(choice, dict) and choice.get("type") == "tool":
        tools: list[dict[str, Any]] = body.get("tools") or []
        tool = next((t for t in tools if t.get("name") == choice.get("name")), {})
        arguments = instance_of(tool.get("input_schema"))
        return {"type": "tool_use", "id": "toolu_fake_forced", "name": choice.get("name"), "input": arguments}
    return None


def structured_message(block: dict[str, Any], model: str) -> dict[str, Any]:
    stop_reason = "tool_use" if block["type"] == "tool_use" else "end_turn"
    return {
        "id": "msg_fake_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [block],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": _usage(conv.OUTPUT_TOKENS),
    }


def structured_frames(block: dict[str, Any], model: str) -> list[str]:
    """The stream of `structured_message`: the block's JSON in two deltas."""
    message = structured_message(block, model)
    tool = block["type"] == "tool_use"
    text = json.dumps(block["input"]) if tool else block["text"]
    opened = {**block, "input": {}} if tool else {**block, "text": ""}
    kind = "input_json_delta" if tool else "text_delta"
    field = "partial_json" if tool else "text"
    start = {**message, "content": [], "stop_reason": None, "usage": _usage(1)}
    frames = [
        sse({"type": "message_start", "message": start}, "message_start"),
        sse({"type": "content_block_start", "index": 0, "content_block": opened}, "content_block_start"),
    ]
    for piece in (text[:5], text[5:]):
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": kind, field: piece}}
        frames.append(sse(delta, "content_block_delta"))
    stop = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    return [
        *frames,
        sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse({"type": "message_delta", "delta": stop, "usage": {"output_tokens": 5}}, "message_delta"),
        sse({"type": "message_stop"}, "message_stop"),
    ]


def message_frames(scenario: str, model: str) -> tuple[list[str], str]:
    """SSE frames for one scenario, and how the stream ends."""
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_fake_1",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _usage(1),
        },
    }
    frames = [sse(start, "message_start")]
    if scenario == "early-error":
        return [*frames, sse({"type": "ping"}, "ping"), sse(error_body(529, "Overloaded"), "error")], ""
    index = 0
    if scenario == "reasoning":
        frames.append(
            sse(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "thinking", "thinking": ""},
                },
                "content_block_start",
            )
        )
        for chunk in conv.REASONING_CHUNKS:
            delta = {"type": "thinking_delta", "thinking": chunk}
            frames.append(
                sse({"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta")
            )
        sig = {"type": "signature_delta", "signature": "fake-signature"}
        frames.append(sse({"type": "content_block_delta", "index": 0, "delta": sig}, "content_block_delta"))
        frames.append(sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
        index = 1
    frames.append(
        sse(
            {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
            "content_block_start",
        )
    )
    frames.append(sse({"type": "ping"}, "ping"))
    for i, chunk in enumerate(conv.TEXT_CHUNKS):
        frames.append(
            sse(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "text_delta", "text": chunk},
                },
                "content_block_delta",
            )
        )
        if i == 0 and scenario == "malformed":
            return [*frames, "event: content_block_delta\ndata: {not json\n\n"], ""
        if i == 0 and scenario == "midstream-error":
            return [*frames, sse(error_body(529, "Overloaded"), "error")], ""
        if i == 0 and scenario in ("cut", "hang"):
            return frames, scenario
    frames.append(sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
    stop_reason = "end_turn"
    if scenario in ("tools", "tools-max-tokens"):
        cut = scenario == "tools-max-tokens"
        index += 1
        block = {"type": "tool_use", "id": "toolu_fake_1", "name": conv.TOOL_NAME, "input": {}}
        frames.append(
            sse(
                {"type": "content_block_start", "index": index, "content_block": block}, "content_block_start"
            )
        )
        half = len(conv.TOOL_ARGS_JSON) // 2
        pieces = ["", conv.TOOL_ARGS_JSON[:half], conv.TOOL_ARGS_JSON[half:]]
        for piece in pieces[:2] if cut else pieces:
            delta = {"type": "input_json_delta", "partial_json": piece}
            frames.append(
                sse({"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta")
            )
        if not cut:  # max_tokens: the stop reason comes with no content_block_stop
            frames.append(sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
        stop_reason = "max_tokens" if cut else "tool_use"
    frames.append(
        sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": conv.OUTPUT_TOKENS},
            },
            "message_delta",
        )
    )
    frames.append(sse({"type": "message_stop"}, "message_stop"))
    return frames, "cut" if scenario == "cut-after-end" else ""


class FakeAnthropic(FakeVendor):
    """Anthropic's Messages, Text Completions, count and models endpoints; Claude-on-Vertex too."""

    def __init__(self, api_key: str = "test-anthropic-key", vertex_token: str = "test-vertex-token") -> None:
        super().__init__()
        self.api_key = api_key
        self.vertex_token = vertex_token

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/messages", self.messages),
            web.post("/v1/messages/count_tokens", self.count_tokens),
            web.post("/v1/complete", self.complete),
            web.get("/v1/models", self.models),
            web.post(
                "/v1/projects/{project}/locations/{location}/publishers/anthropic/models/{model_action}",
                self.vertex_raw_predict,
            ),
        ]

    def _check_headers(self, request: web.Request) -> web.Response | None:
        if request.headers.get("x-api-key") != self.api_key:
            return json_response(error_body(401, "invalid x-api-key"), 401)
        self.check(
            request.headers.get("anthropic-version") == "2023-06-01", "anthropic-version must be 2023-06-01"
        )
        if request.method == "POST":
            self.check(
                "json" in request.headers.get("content-type", ""), "content-type must be application/json"
            )
        return None

    def _check_messages_body(self, body: Any, where: str) -> None:
        if not self.check_fields(body, {"messages": list, "max_tokens": int}, where):
            return
        messages = body["messages"]
        roles = [m.get("role") for m in messages]
        self.check(bool(roles) and roles[0] == "user", f"{where}: the first message must be from the user")
        self.check(all(a != b for a, b in itertools.pairwise(roles)), f"{where}: roles must alternate")
        for m in messages:
            self.check(isinstance(m.get("content"), list | str), f"{where}: content must be a list or string")
            for block in m.get("content") if isinstance(m.get("content"), list) else []:
                self._check_block(block, where)
        system = body.get("system")
        if system is not None:
            self.check(
                isinstance(system, list) and all(b.get("type") == "text" for b in system),
                f"{where}: system must be a list of text blocks",
            )
        cached = sum(
            1
            for m in messages
            for b in (m["content"] if isinstance(m["content"], list) else [])
            if "cache_control" in b
        ) + sum(1 for b in system or [] if "cache_control" in b)
        self.check(cached <= 4, f"{where}: at most 4 cache_control breakpoints, got {cached}")
        if "thinking" in body:
            self.check(body.get("temperature", 1) == 1, f"{where}: temperature must be 1 with thinking")
            self.check(
                body["thinking"].get("type") == "enabled"
                and isinstance(body["thinking"].get("budget_tokens"), int),
                f"{where}: thinking must be {{type: enabled, budget_tokens}}",
            )
        choice = body.get("tool_choice")
        if choice is not None:
            self.check("tools" in body, f"{where}: tool_choice without tools")
            self.check(
                choice.get("type") in ("auto", "any", "tool", "none"), f"{where}: bad tool_choice {choice}"
            )

    def _check_block(self, block: Any, where: str) -> None:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "image":
            source = block.get("source") or {}
            if source.get("type") == "base64":
                self.check(bool(source.get("media_type")), f"{where}: image without media_type")
                try:
                    base64.b64decode(source.get("data", ""), validate=True)
                except (binascii.Error, ValueError):
                    self.problems.append(f"{where}: image data is not base64")
            else:
                self.check(source.get("type") == "url", f"{where}: image source must be base64 or url")
        elif kind == "tool_use":
            self.check(isinstance(block.get("input"), dict), f"{where}: tool_use.input must be an object")
        elif kind == "tool_result":
            self.check(bool(block.get("tool_use_id")), f"{where}: tool_result without tool_use_id")
        else:
            self.check(
                kind in ("text", "thinking", "redacted_thinking", "document"),
                f"{where}: unknown block {kind}",
            )

    async def _respond(
        self, request: web.Request, model: str, body: Any, *, stream: bool
    ) -> web.StreamResponse:
        scenario = scenario_of(model)
        status = error_status(scenario)
        if status is not None:
            headers = {"retry-after": RETRY_AFTER_S} if status == 429 else None
            return json_response(error_body(status), status, headers)
        if (block := structured_answer(body)) is not None:
            if not stream:
                return json_response(structured_message(block, model))
            frames = structured_frames(block, model)
            if scenario == "cut":  # the connection drops after the first half of the JSON
                return await self.stream(request, frames[:3], ending="cut")
            return await self.stream(request, frames)
        if not stream:
            overloaded = json_response(error_body(529, "Overloaded"), 529)
            return await self.whole(request, message_body(scenario, model), scenario, overloaded)
        frames, ending = message_frames(scenario, model)
        return await self.stream(request, frames, ending=ending)

    async def messages(self, request: web.Request) -> web.StreamResponse:
        recorded = await self.record(request)
        if (denied := self._check_headers(request)) is not None:
            return denied
        body = recorded.body
        self._check_messages_body(body, "/v1/messages")
        self.check(
            isinstance(body, dict) and isinstance(body.get("model"), str), "/v1/messages: model missing"
        )
        self.check(
            isinstance(body, dict) and body.get("stream", False) in (True, False),
            "/v1/messages: stream must be a boolean",
        )
        model = str(body.get("model", "")) if isinstance(body, dict) else ""
        return await self._respond(
            request, model, body, stream=isinstance(body, dict) and body.get("stream") is True
        )

    async def vertex_raw_predict(self, request: web.Request) -> web.StreamResponse:
        recorded = await self.record(request)
        model, _, action = request.match_info["model_action"].partition(":")
        if request.headers.get("authorization") != f"Bearer {self.vertex_token}":
            return json_response(
                {"error": {"code": 401, "message": "bad token", "status": "UNAUTHENTICATED"}}, 401
            )
        body = recorded.body
        stream = isinstance(body, dict) and body.get("stream") is True
        expected = "streamRawPredict" if stream else "rawPredict"
        self.check(action == expected, f"vertex claude: action must be {expected}, got {action}")
        self._check_messages_body(body, "vertex claude")
        if isinstance(body, dict):
            self.check(
                body.get("anthropic_version") == "vertex-2023-10-16", "vertex claude: anthropic_version"
            )
            self.check("model" not in body, "vertex claude: the model goes in the URL, not the body")
        return await self._respond(request, model, body, stream=stream)

    async def complete(self, request: web.Request) -> web.StreamResponse:
        recorded = await self.record(request)
        if (denied := self._check_headers(request)) is not None:
            return denied
        body = recorded.body
        if not self.check_fields(
            body, {"model": str, "prompt": str, "max_tokens_to_sample": int}, "/v1/complete"
        ):
            return json_response(error_body(400), 400)
        prompt = body["prompt"]
        self.check(
            prompt.startswith("\n\nHuman: ") and prompt.endswith("\n\nAssistant:"),
            "/v1/complete: prompt must be '\\n\\nHuman: ...\\n\\nAssistant:'",
        )
        if body.get("stream") is not True:  # the documented unary completion
            return json_response(
                {
                    "type": "completion",
                    "id": "compl_fake_1",
                    "completion": "".join(conv.TEXT_CHUNKS),
                    "stop_reason": "stop_sequence",
                    "model": body["model"],
                }
            )
        frames = [
            sse(
                {"type": "completion", "completion": chunk, "stop_reason": None, "model": body["model"]},
                "completion",
            )
            for chunk in conv.TEXT_CHUNKS
        ]
        frames.insert(1, sse({"type": "ping"}, "ping"))
        if scenario_of(body["model"]) == "cut":  # the first piece, then the connection drops
            return await self.stream(request, frames[:2], ending="cut")
        frames.append(
            sse(
                {
                    "type": "completion",
                    "completion": "",
                    "stop_reason": "stop_sequence",
                    "model": body["model"],
                },
                "completion",
            )
        )
        return await self.stream(request, frames)

    async def count_tokens(self, request: web.Request) -> web.Response:
        recorded = await self.record(request)
        if (denied := self._check_headers(request)) is not None:
            return denied
        body = recorded.body
        self.check(isinstance(body, dict) and "max_tokens" not in body, "count_tokens: no max_tokens")
        self.check(
            isinstance(body, dict) and isinstance(body.get("messages"), list), "count_tokens: messages"
        )
        return json_response({"input_tokens": 42})

    async def models(self, request: web.Request) -> web.Response:
        await self.record(request)
        if (denied := self._check_headers(request)) is not None:
            return denied
        data = [
            {
                "type": "model",
                "id": "claude-sonnet-4-5",
                "display_name": "Claude Sonnet 4.5",
                "created_at": "2025-09-29T00:00:00Z",
            },
            {
                "type": "model",
                "id": "claude-haiku-4-5",
                "display_name": "Claude Haiku 4.5",
                "created_at": "2025-10-01T00:00:00Z",
            },
        ]
        return json_response(
            {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}
        )


async def _serve(port: int) -> None:
    fake = FakeAnthropic()
    print(f"fake anthropic on {await fake.start(port)} (x-api-key {fake.api_key})", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8081)
    asyncio.run(_serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
