"""A lean OpenAI-compatible upstream for benchmarks, run in its own process.

Serves POST /v1/chat/completions (JSON or SSE) with a configurable number of tokens and delay
between them, and GET /stats with the requests served and the TCP connections they came on, so
connection reuse is measured on the upstream's side of the wire, independent of the gateway.

    python benchmarks/fake_openai.py --port 0 --tokens 20 --delay-ms 0 [--end-gap-ms 5]
prints `listening on 127.0.0.1:PORT` once ready.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import weakref

from aiohttp import web


def chunk(text: str | None, finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    choices = (
        [] if usage else [{"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}]
    )
    body: dict[str, object] = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "bench-model",
        "choices": choices,
    }
    if usage:
        body["usage"] = usage
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


class Upstream:
    def __init__(self, tokens: int, delay_ms: float, end_gap_ms: float = 0.0) -> None:
        self.tokens = tokens
        self.delay = delay_ms / 1000
        # Between `data: [DONE]` and the chunked body's last chunk: two writes a vendor's server makes,
        # which reach a client apart across a real network (0: one after the other, as on loopback).
        self.end_gap = end_gap_ms / 1000
        self.requests = 0
        # The connections requests came on: a set of the live ones (an id() of a closed one can be
        # reused by a new one, which a set of ids would not count) and the count of all of them.
        self.live: weakref.WeakSet[object] = weakref.WeakSet()
        self.connections = 0
        self.words = [f" tok{i}" for i in range(tokens)]
        usage = {"prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": 10 + tokens}
        self.sse_chunks = [chunk(w) for w in self.words] + [chunk(None, "stop"), chunk(None, usage=usage)]
        self.json_body = json.dumps(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": 1,
                "model": "bench-model",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(self.words)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
        ).encode()

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if (connection := request.transport) not in self.live:
            self.live.add(connection)
            self.connections += 1
        body = await request.json()
        if not body.get("stream"):
            if self.delay:
                await asyncio.sleep(self.delay * self.tokens)
            return web.Response(body=self.json_body, content_type="application/json")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        for piece in self.sse_chunks:
            if self.delay:
                await asyncio.sleep(self.delay)
            await response.write(piece)
        await response.write(b"data: [DONE]\n\n")
        if self.end_gap:
            await asyncio.sleep(self.end_gap)
        await response.write_eof()
        return response

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "bench-model", "object": "model"}]})

    async def stats(self, request: web.Request) -> web.Response:
        if request.query.get("reset"):
            self.requests, self.connections, self.live = 0, 0, weakref.WeakSet()
        return web.json_response({"requests": self.requests, "connections": self.connections})


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--end-gap-ms", type=float, default=0.0)
    args = parser.parse_args()
    upstream = Upstream(args.tokens, args.delay_ms, args.end_gap_ms)
    app = web.Application()
    for prefix in ("", "/v1"):
        app.router.add_post(prefix + "/chat/completions", upstream.chat)
        app.router.add_get(prefix + "/models", upstream.models)
    app.router.add_get("/stats", upstream.stats)
    runner = web.AppRunner(app, access_log=None, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port, backlog=2048)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"listening on 127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
