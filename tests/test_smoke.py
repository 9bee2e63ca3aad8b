"""The foundation works end to end: a real server, a real channel, the mock provider."""

from __future__ import annotations

from provider_gateway.v1 import provider_service_pb2 as pb


def user(text: str) -> pb.Message:
    return pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text=text)])


async def test_chat_stream_streams_mock_tokens_then_finish(gateway) -> None:
    events = [
        e async for e in gateway.stub.ChatStream(pb.ChatRequest(model="mock/echo", messages=[user("Hi")]))
    ]
    kinds = [e.WhichOneof("event") for e in events]
    assert set(kinds[:-2]) == {"text_delta"}  # 12 tokens, joined into fewer messages when in hand
    assert kinds[-2:] == ["usage", "finish"]
    assert events[-2].usage.output_tokens == 12
    text = "".join(e.text_delta.text for e in events)
    assert text.startswith("Mock answer: Hi")
    finish = events[-1].finish
    assert (finish.provider, finish.model, finish.reason) == ("mock", "echo", pb.FINISH_REASON_STOP)
