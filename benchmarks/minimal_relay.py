"""Baseline: the least a Python gRPC gateway can do. A bare grpc.aio server relaying an OpenAI-style
upstream through one aiohttp session, with no validation, routing, retries, limits, telemetry, logs
or error mapping: Chat makes one JSON request, ChatStream relays each read's deltas as one message.

It is the floor of this stack (grpcio's asyncio server plus aiohttp on one event loop) on the
machine at hand; benchmarks/run.py measures the gateway beside it, so the gateway's own cost is
the difference, and a target below this floor is a target for another stack, not for the code.
It runs the stack as the gateway does (since 2026-12-07): tasks started eagerly, the service
served through a generic handler only (server/event_loop.py, server/registration.py), and the
usage in the finish and events in hand together batched, as the clients ask for them: one message
a stream when the whole answer comes in one read, two otherwise; the last message goes with the
status in one gRPC batch (server/last_message.py).

    python benchmarks/minimal_relay.py --upstream http://127.0.0.1:PORT/v1
prints `listening on 127.0.0.1:PORT` once ready.

With `--no-upstream` it is grpc.aio alone: each stream answers, at once and from memory, the two
messages the relay would send (benchmarks/fake_openai.py's 20 tokens, then the finish with the
usage). What a stream costs there is what the gRPC side of any gateway on this stack costs, so its
throughput at 50 streams bounds every gateway's from above, the upstream leg not yet counted.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import grpc
import orjson

from provider_gateway.server.event_loop import eager_asyncio_loop
from provider_gateway.server.last_message import is_last, mark_last
from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc

SERVICE = "provider_gateway.v1.ProviderService"
HEADERS = {"authorization": "Bearer sk-bench", "content-type": "application/json"}


def delta_texts(lines: list[bytes], usage: pb.Usage) -> list[str]:
    """The texts of whole `data: {...}` lines of an OpenAI chat stream; a usage they carry goes to
    `usage`. The relays' whole decoding: no event other than these, no error, no check."""
    texts = []
    for line in lines:
        if line.startswith(b"data: {"):
            data = orjson.loads(line[6:])
            if data.get("usage"):
                usage.input_tokens = data["usage"]["prompt_tokens"]
                usage.output_tokens = data["usage"]["completion_tokens"]
            for choice in data["choices"]:
                if text := choice["delta"].get("content"):
                    texts.append(text)
    return texts


def text_event(texts: list[str]) -> pb.StreamEvent:
    return pb.StreamEvent(text_delta=pb.TextDelta(text="".join(texts)))


def finish_events(request: pb.ChatRequest, last: list[str], usage: pb.Usage) -> list[pb.StreamEvent]:
    """The stream's last messages: the final read's text (if any) and the finish with the usage, as
    one `batch` message when the client asked for `batch_events` (both clients do), as the gateway
    sends what it has in hand together."""
    finish = pb.StreamEvent(finish=pb.Finish(reason=pb.FINISH_REASON_STOP, usage=usage))
    if not last:
        messages = [finish]
    elif request.stream_options.batch_events:
        messages = [pb.StreamEvent(batch=pb.EventBatch(events=[text_event(last), finish]))]
    else:
        messages = [text_event(last), finish]
    mark_last(messages[-1])  # the upstream has ended: it goes with the status, as the gateway's
    return messages


class MinimalRelay(pb_grpc.ProviderServiceServicer):
    def __init__(self, upstream: str) -> None:
        self.url = upstream.rstrip("/") + "/chat/completions"
        self.session: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None:  # made inside the running loop, as aiohttp needs
            self.session = aiohttp.ClientSession()
        return self.session

    @staticmethod
    def _body(request: pb.ChatRequest, stream: bool) -> bytes:
        messages = [{"role": "user", "content": m.content[0].text} for m in request.messages]
        return orjson.dumps({"model": request.model, "messages": messages, "stream": stream})

    async def Chat(self, request: pb.ChatRequest, context: Any) -> pb.ChatResponse:
        async with self._session().post(
            self.url, data=self._body(request, False), headers=HEADERS
        ) as response:
            body = orjson.loads(await response.read())
        usage = body["usage"]
        return pb.ChatResponse(
            text=body["choices"][0]["message"]["content"],
            usage=pb.Usage(input_tokens=usage["prompt_tokens"], output_tokens=usage["completion_tokens"]),
            finish=pb.Finish(reason=pb.FINISH_REASON_STOP),
        )

    async def ChatStream(self, request: pb.ChatRequest, context: Any) -> AsyncIterator[pb.StreamEvent]:
        usage = pb.Usage()
        last: list[str] = []  # the text of a read that also ended the answer
        async with self._session().post(
            self.url, data=self._body(request, True), headers=HEADERS
        ) as response:
            async for chunk in response.content.iter_any():
                texts = delta_texts(chunk.split(b"\n"), usage)
                if b"data: [DONE]" in chunk:
                    last = texts
                elif texts:
                    yield text_event(texts)
        # As the gateway answers a client asking for usage_in_finish (both clients do).
        for message in finish_events(request, last, usage):
            yield message


class GrpcAlone(pb_grpc.ProviderServiceServicer):
    """The relay's answers without the upstream: what the gRPC side alone costs a stream."""

    TEXT = "".join(f" tok{i}" for i in range(20))  # fake_openai.py's answer at --tokens 20

    async def ChatStream(self, request: pb.ChatRequest, context: Any) -> AsyncIterator[pb.StreamEvent]:
        usage = pb.Usage(input_tokens=10, output_tokens=20)
        for message in finish_events(request, [self.TEXT], usage):
            yield message


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", help="the upstream's base URL, .../v1")
    parser.add_argument("--no-upstream", action="store_true", help="grpc.aio alone: answer from memory")
    args = parser.parse_args()
    if args.no_upstream == bool(args.upstream):
        parser.error("give either --upstream URL or --no-upstream")
    await serve(GrpcAlone() if args.no_upstream else MinimalRelay(args.upstream))


def last_with_status(
    stream: Callable[[pb.ChatRequest, Any], AsyncIterator[pb.StreamEvent]],
) -> Callable[[pb.ChatRequest, Any], Awaitable[bytes | None]]:
    """ChatStream served as the gateway's edge serves it (server/last_message.py): a unary-response
    handler that writes each message but the one marked last, and returns that one, which gRPC
    sends with the status in one batch."""

    async def handler(request: pb.ChatRequest, context: Any) -> bytes | None:
        held = None
        async for message in stream(request, context):
            if is_last(message):
                held = message.SerializeToString()
            else:
                await context.write(message.SerializeToString())
        if held is None:  # grpc.aio cannot end a call OK without a message from here
            await context.abort(grpc.StatusCode.INTERNAL, "no finish")
        return held

    return handler


async def serve(servicer: pb_grpc.ProviderServiceServicer) -> None:
    """Serve `servicer` through a generic handler on a free loopback port until killed; print
    `listening on HOST:PORT`."""
    server = grpc.aio.server()
    handlers = {
        "ChatStream": grpc.unary_unary_rpc_method_handler(
            last_with_status(servicer.ChatStream), request_deserializer=pb.ChatRequest.FromString
        )
    }
    if isinstance(servicer, MinimalRelay):
        handlers["Chat"] = grpc.unary_unary_rpc_method_handler(
            servicer.Chat,
            request_deserializer=pb.ChatRequest.FromString,
            response_serializer=pb.ChatResponse.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(), loop_factory=eager_asyncio_loop)
