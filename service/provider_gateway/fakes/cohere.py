"""A fake Cohere API (v2 chat and embed, v1 models and tokenize) that checks what it is sent.

Run by hand: `python -m provider_gateway.fakes.cohere --port 8083`; models are named after scenarios
(see `vendor_base`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from aiohttp import web

from provider_gateway.fakes import conversation as conv
from provider_gateway.fakes.structured import instance_of
from provider_gateway.fakes.vendor_base import FakeVendor, error_status, json_response, scenario_of, sse

RETRY_AFTER_S = "2"
USAGE = {
    "billed_units": {
        "input_tokens": conv.INPUT_TOKENS - conv.CACHE_READ_TOKENS,
        "output_tokens": conv.OUTPUT_TOKENS,
    },
    "tokens": {"input_tokens": conv.INPUT_TOKENS, "output_tokens": conv.OUTPUT_TOKENS},
    "cached_tokens": conv.CACHE_READ_TOKENS,
}


def structured_text(body: Any) -> str | None:
    """What Cohere answers a `response_format` with a `json_schema` with: JSON matching it."""
    fmt = body.get("response_format") if isinstance(body, dict) else None
    if isinstance(fmt, dict) and "json_schema" in fmt:
        return json.dumps(instance_of(fmt["json_schema"]))
    return None


def chat_frames(scenario: str, text: str | None = None) -> tuple[list[str], str]:
    """SSE events for one scenario, or for `text` (a structured answer) in two deltas."""

    def event(kind: str, **fields: Any) -> str:
        return sse({"type": kind, **fields}, kind)

    frames = [event("message-start", id="fake-cohere-1", delta={"message": {"role": "assistant"}})]
    if scenario == "reasoning":
        frames.append(
            event(
                "content-start", index=0, delta={"message": {"content": {"type": "thinking", "thinking": ""}}}
            )
        )
        frames += [
            event("content-delta", index=0, delta={"message": {"content": {"thinking": c}}})
            for c in conv.REASONING_CHUNKS
        ]
        frames.append(event("content-end", index=0))
    index = 1 if scenario == "reasoning" else 0
    frames.append(
        event("content-start", index=index, delta={"message": {"content": {"type": "text", "text": ""}}})
    )
    chunks = conv.TEXT_CHUNKS if text is None else (text[:5], text[5:])
    for i, text in enumerate(chunks):
        frames.append(event("content-delta", index=index, delta={"message": {"content": {"text": text}}}))
        if i == 0 and scenario == "malformed":
            return [*frames, "event: content-delta\ndata: {not json\n\n"], ""
        if i == 0 and scenario == "midstream-error":
            end = {"finish_reason": "ERROR", "error": "internal generation failure"}
            return [*frames, event("message-end", delta=end)], ""
        if i == 0 and scenario in ("cut", "hang"):
            return frames, scenario
    frames.append(event("content-end", index=index))
    finish = "COMPLETE"
    if scenario in ("tools", "tools-max-tokens"):
        cut = scenario == "tools-max-tokens"
        start = {
            "id": "fake_call_1",
            "type": "function",
            "function": {"name": conv.TOOL_NAME, "arguments": ""},
        }
        frames.append(event("tool-call-start", index=0, delta={"message": {"tool_calls": start}}))
        half = len(conv.TOOL_ARGS_JSON) // 2
        pieces = [conv.TOOL_ARGS_JSON[:half], conv.TOOL_ARGS_JSON[half:]]
        for piece in pieces[:1] if cut else pieces:
            delta = {"message": {"tool_calls": {"function": {"arguments": piece}}}}
            frames.append(event("tool-call-delta", index=0, delta=delta))
        if not cut:  # MAX_TOKENS: the message ends with no tool-call-end
            frames.append(event("tool-call-end", index=0))
        finish = "MAX_TOKENS" if cut else "TOOL_CALL"
    frames.append(event("message-end", delta={"finish_reason": finish, "usage": USAGE}))
    return frames, "cut" if scenario == "cut-after-end" else ""


def chat_body(scenario: str, text: str | None = None) -> dict[str, Any]:
    """The documented unary v2 chat answer for the conversation `chat_frames` streams."""
    content: list[dict[str, Any]] = []
    if scenario == "reasoning":
        content.append({"type": "thinking", "thinking": "".join(conv.REASONING_CHUNKS)})
    content.append({"type": "text", "text": "".join(conv.TEXT_CHUNKS) if text is None else text})
    message: dict[str, Any] = {"role": "assistant", "content": content}
    finish = "COMPLETE"
    if scenario in ("tools", "tools-max-tokens"):
        cut = scenario == "tools-max-tokens"
        arguments = conv.TOOL_ARGS_JSON[: len(conv.TOOL_ARGS_JSON) // 2] if cut else conv.TOOL_ARGS_JSON
        function = {"name": conv.TOOL_NAME, "arguments": arguments}
        message["tool_calls"] = [{"id": "fake_call_1", "type": "function", "function": function}]
        finish = "MAX_TOKENS" if cut else "TOOL_CALL"
    return {"id": "fake-cohere-1", "finish_reason": finish, "message": message, "usage": USAGE}


class FakeCohere(FakeVendor):
    def __init__(self, api_key: str = "test-cohere-key") -> None:
        super().__init__()
        self.api_key = api_key

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v2/chat", self.chat),
            web.post("/v2/embed", self.embed),
            web.get("/v1/models", self.models),
            web.post("/v1/tokenize", self.tokenize),
        ]

    def _denied(self, request: web.Request) -> web.Response | None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return json_response({"id": "fake", "message": "invalid api token"}, 401)
        return None

    async def chat(self, request: web.Request) -> web.StreamResponse:
        recorded = await self.record(request)
        if (denied := self._denied(request)) is not None:
            return denied
        body = recorded.body
        if not self.check_fields(body, {"model": str, "messages": list}, "/v2/chat"):
            return json_response({"message": "bad request"}, 400)
        self.check(body.get("stream") in (None, True, False), "/v2/chat: stream must be a boolean")
        for message in body["messages"]:
            role = message.get("role")
            self.check(role in ("system", "user", "assistant", "tool"), f"/v2/chat: role {role}")
            if role == "tool":
                self.check(bool(message.get("tool_call_id")), "/v2/chat: tool message without tool_call_id")
            content = message.get("content")
            for item in content if isinstance(content, list) else []:
                self.check(
                    item.get("type") in ("text", "image_url", "document", "thinking"),
                    f"/v2/chat: content {item}",
                )
                if item.get("type") == "image_url":
                    url = (item.get("image_url") or {}).get("url", "")
                    self.check(
                        url.startswith(("data:image/", "http")),
                        "/v2/chat: image_url.url must be a data or http URL",
                    )
            for call in message.get("tool_calls") or []:
                self.check(
                    isinstance((call.get("function") or {}).get("arguments"), str),
                    "/v2/chat: arguments string",
                )
        self.check(body.get("tool_choice") in (None, "REQUIRED", "NONE"), "/v2/chat: tool_choice")
        for tool in body.get("tools") or []:
            self.check(
                tool.get("type") == "function" and "name" in (tool.get("function") or {}), "/v2/chat: tools[]"
            )
        scenario = scenario_of(body["model"])
        status = error_status(scenario)
        if status is not None:
            headers = {"retry-after": RETRY_AFTER_S} if status == 429 else None
            return json_response({"id": "fake", "message": f"fake error {status}"}, status, headers)
        if body.get("stream") is not True:
            failed = {"id": "fake-cohere-1", "finish_reason": "ERROR", "message": {"role": "assistant"}}
            answer = chat_body(scenario, structured_text(body))
            return await self.whole(request, answer, scenario, json_response(failed))
        frames, ending = chat_frames(scenario, structured_text(body))
        return await self.stream(request, frames, ending=ending)

    async def embed(self, request: web.Request) -> web.Response:
        recorded = await self.record(request)
        if (denied := self._denied(request)) is not None:
            return denied
        body = recorded.body
        if not self.check_fields(
            body, {"model": str, "texts": list, "embedding_types": list, "input_type": str}, "/v2/embed"
        ):
            return json_response({"message": "bad request"}, 400)
        dims = int(body.get("output_dimension") or 4)
        vectors = [[0.5] * dims for _ in body["texts"]]
        return json_response(
            {
                "id": "e1",
                "embeddings": {"float": vectors},
                "texts": body["texts"],
                "meta": {"billed_units": {"input_tokens": 3}},
            }
        )

    async def models(self, request: web.Request) -> web.Response:
        await self.record(request)
        if (denied := self._denied(request)) is not None:
            return denied
        return json_response(
            {
                "models": [
                    {
                        "name": "command-a-03-2025",
                        "endpoints": ["chat"],
                        "context_length": 256000,
                        "features": ["tools"],
                    },
                    {"name": "embed-v4.0", "endpoints": ["embed"], "context_length": 128000, "features": []},
                ]
            }
        )

    async def tokenize(self, request: web.Request) -> web.Response:
        recorded = await self.record(request)
        if (denied := self._denied(request)) is not None:
            return denied
        body = recorded.body
        if not self.check_fields(body, {"text": str, "model": str}, "/v1/tokenize"):
            return json_response({"message": "bad request"}, 400)
        self.check(0 < len(body["text"]) <= 65536, "/v1/tokenize: text must be 1..65536 characters")
        words = body["text"].split()
        return json_response(
            {
                "tokens": list(range(len(words))),
                "token_strings": words,
                "meta": {"api_version": {"version": "1"}},
            }
        )


async def _serve(port: int) -> None:
    fake = FakeCohere()
    print(f"fake cohere on {await fake.start(port)} (Bearer {fake.api_key})", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8083)
    asyncio.run(_serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
