"""A lean OpenAI-compatible upstream for benchmarks, run in its own process.

Serves POST /v1/chat/completions (JSON or SSE) with a configurable number of tokens and delay
between them, and GET /stats with the requests served and the TCP connections they came on, so
connection reuse is measured on the upstream's side of the wire, independent of the gateway.

    python benchmarks/fake_openai.py --port 0 --tokens 20 --delay-ms 0
prints `listening on 127.0.0.1:PORT` once ready.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json

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
    def __init__(self, tokens: int, delay_ms: float) -> None:
        self.tokens = tokens
        self.delay = delay_ms / 1000
        self.requests = 0
        self.connections: set[int] = set()
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
        self.connections.add(id(request.protocol))
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
        await response.write_eof()
        return response

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "bench-model", "object": "model"}]})

    async def stats(self, request: web.Request) -> web.Response:
        if request.query.get("reset"):
            self.requests, self.connections = 0, set()
        return web.json_response({"requests": self.requests, "connections": len(self.connections)})


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    upstream = Upstream(args.tokens, args.delay_ms)
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
