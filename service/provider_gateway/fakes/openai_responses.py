"""The OpenAI Responses API (`POST /v1/responses`) as OpenAI documents it, byte for byte: SSE events
with an `event:` line naming the type, a `data:` line with the JSON (its `type` and an increasing
`sequence_number`), no `[DONE]`; or, unary, the whole `response` object. Shapes follow the `openai`
SDK's `types/responses/` (../shared/docs/wire-reference-2.md section 2).

`Script` describes one answer (reasoning summary, text, function calls, usage, how it ends) and
renders it both ways; `serve` answers the gateway's requests with a plausible one: reasoning when
the request asks for it, a call of the first tool when tools are given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from provider_gateway.fakes import logprobs as lp
from provider_gateway.fakes.chat_completions import CREATED
from provider_gateway.fakes.server import RecordedRequest, Reply

SUMMARY = ("**Checking the weather**\n\nThe user", " wants Paris.")
TEXT = ("Let me", " look that up.")
ENCRYPTED = "gAAAAABfake-encrypted-reasoning=="


@dataclass(slots=True)
class Script:
    model: str = "o4-mini"
    summary: tuple[str, ...] = ()  # one summary part, in deltas
    text: tuple[str, ...] = TEXT
    calls: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)  # call_id, name, deltas
    input_tokens: int = 1234
    cached_tokens: int = 1000
    output_tokens: int = 20
    reasoning_tokens: int = 8
    status: str = "completed"  # or "incomplete" (max_output_tokens) or "failed"
    encrypted: str = ENCRYPTED
    top_logprobs: int | None = None  # logprobs asked (`include` of message.output_text.logprobs)

    def _logprobs(self, start: int = 0, end: int | None = None) -> list[dict[str, Any]]:
        """The entries of text deltas `start` to `end` (each delta one token); none unless asked."""
        if self.top_logprobs is None:
            return []
        return lp.openai_entries(list(self.text[start:end]), self.top_logprobs, start)

    # --- items ----------------------------------------------------------------------------------

    def _reasoning_item(self, done: bool) -> dict[str, Any]:
        item: dict[str, Any] = {"id": "rs_fake1", "type": "reasoning", "summary": []}
        if done:
            item["summary"] = [{"type": "summary_text", "text": "".join(self.summary)}]
            item["encrypted_content"] = self.encrypted
        return item

    def _message_item(self, done: bool) -> dict[str, Any]:
        content = [
            {
                "type": "output_text",
                "text": "".join(self.text),
                "annotations": [],
                "logprobs": self._logprobs(),
            }
        ]
        return {
            "id": "msg_fake1",
            "type": "message",
            "status": "completed" if done else "in_progress",
            "role": "assistant",
            "content": content if done else [],
        }

    def _call_item(self, n: int, done: bool) -> dict[str, Any]:
        call_id, name, deltas = self.calls[n]
        return {
            "id": f"fc_fake{n}",
            "type": "function_call",
            "status": "completed" if done else "in_progress",
            "arguments": "".join(deltas) if done else "",
            "call_id": call_id,
            "name": name,
        }

    def items(self, done: bool = True) -> list[dict[str, Any]]:
        out = [self._reasoning_item(done)] if self.summary else []
        if self.text:
            out.append(self._message_item(done))
        out += [self._call_item(n, done) for n in range(len(self.calls))]
        return out

    def usage(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.input_tokens + self.output_tokens,
        }

    def response(self, status: str | None = None) -> dict[str, Any]:
        """The `response` object: in progress (no output yet), or final."""
        status = status or self.status
        final = status != "in_progress"
        body: dict[str, Any] = {
            "id": "resp_fake1",
            "object": "response",
            "created_at": CREATED,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "max_output_tokens": None,
            "model": self.model,
            "output": self.items() if final else [],
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": {"effort": "medium", "summary": "auto"},
            "store": False,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": self.usage() if final else None,
            "metadata": {},
        }
        if status == "incomplete":
            body["incomplete_details"] = {"reason": "max_output_tokens"}
        if status == "failed":
            body["error"] = {"code": "server_error", "message": "The model failed to generate a response."}
            body["usage"] = None
        if final:
            body["completed_at"] = CREATED + 2
        return body

    # --- the stream ---------------------------------------------------------------------------

    def events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = [
            {"type": "response.created", "response": self.response("in_progress")},
            {"type": "response.in_progress", "response": self.response("in_progress")},
        ]
        index = 0
        if self.summary:
            events += self._reasoning_events(index)
            index += 1
        if self.text:
            events += self._text_events(index)
            index += 1
        for n in range(len(self.calls)):
            events += self._call_events(index, n)
            index += 1
        terminal = {"completed": "response.completed", "incomplete": "response.incomplete"}
        events.append({"type": terminal.get(self.status, "response.failed"), "response": self.response()})
        return [event | {"sequence_number": n} for n, event in enumerate(events)]

    def _reasoning_events(self, index: int) -> list[dict[str, Any]]:
        item_id = "rs_fake1"
        part = {"item_id": item_id, "output_index": index, "summary_index": 0}
        text = "".join(self.summary)
        return [
            {
                "type": "response.output_item.added",
                "output_index": index,
                "item": self._reasoning_item(False),
            },
            {
                "type": "response.reasoning_summary_part.added",
                **part,
                "part": {"type": "summary_text", "text": ""},
            },
            *(
                {"type": "response.reasoning_summary_text.delta", **part, "delta": d, "obfuscation": "x"}
                for d in self.summary
            ),
            {"type": "response.reasoning_summary_text.done", **part, "text": text},
            {
                "type": "response.reasoning_summary_part.done",
                **part,
                "part": {"type": "summary_text", "text": text},
            },
            {"type": "response.output_item.done", "output_index": index, "item": self._reasoning_item(True)},
        ]

    def _text_events(self, index: int) -> list[dict[str, Any]]:
        where = {"item_id": "msg_fake1", "output_index": index, "content_index": 0}
        text = "".join(self.text)
        done_part = {"type": "output_text", "text": text, "annotations": [], "logprobs": self._logprobs()}
        return [
            {"type": "response.output_item.added", "output_index": index, "item": self._message_item(False)},
            {
                "type": "response.content_part.added",
                **where,
                "part": done_part | {"text": "", "logprobs": []},
            },
            *(
                {
                    "type": "response.output_text.delta",
                    **where,
                    "delta": d,
                    "logprobs": self._logprobs(i, i + 1),
                }
                for i, d in enumerate(self.text)
            ),
            {"type": "response.output_text.done", **where, "text": text, "logprobs": self._logprobs()},
            {"type": "response.content_part.done", **where, "part": done_part},
            {"type": "response.output_item.done", "output_index": index, "item": self._message_item(True)},
        ]

    def _call_events(self, index: int, n: int) -> list[dict[str, Any]]:
        where = {"item_id": f"fc_fake{n}", "output_index": index}
        deltas = self.calls[n][2]
        return [
            {"type": "response.output_item.added", "output_index": index, "item": self._call_item(n, False)},
            *({"type": "response.function_call_arguments.delta", **where, "delta": d} for d in deltas),
            {"type": "response.function_call_arguments.done", **where, "arguments": "".join(deltas)},
            {"type": "response.output_item.done", "output_index": index, "item": self._call_item(n, True)},
        ]

    def stream_reply(self, *, then: str = "end", upto: int | None = None) -> Reply:
        events = self.events()[:upto]
        return Reply.sse([sse_event(e) for e in events], then=then, done=False)

    def unary_reply(self) -> Reply:
        return Reply.json(self.response())


def sse_event(event: dict[str, Any]) -> bytes:
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def error_event(code: str, message: str, sequence_number: int = 0) -> bytes:
    return sse_event(
        {"type": "error", "code": code, "message": message, "param": None, "sequence_number": sequence_number}
    )


def serve(request: RecordedRequest) -> Reply:
    """The gateway's requests: a key, an `input` list; reasoning and tools shape the answer."""
    if "authorization" not in request.headers and "api-key" not in request.headers:
        return Reply.error(401, {"error": {"message": "missing API key", "type": "invalid_request_error"}})
    body = request.json()
    if not isinstance(body.get("input"), list | str) or not body["input"]:
        return Reply.error(
            400, {"error": {"message": "'input' is required", "type": "invalid_request_error"}}
        )
    script = Script(model=str(body.get("model", "o4-mini")))
    if body.get("reasoning"):
        script.summary = SUMMARY
    tools = body.get("tools") or []
    if tools:
        script.calls = [("call_fake1", str(tools[0].get("name", "f")), ('{"city":', '"Paris"}'))]
    if "message.output_text.logprobs" in (body.get("include") or []):
        script.top_logprobs = int(body.get("top_logprobs") or 0)
    return script.stream_reply() if body.get("stream") else script.unary_reply()
