"""One answer scripted twice for the clients' batch tests: one event per message, and the same events
grouped into `StreamEvent.batch` messages (`StreamOptions.batch_events`), as a gateway sends what it
has in hand together. The answer has every kind a client rebuilds: reasoning blocks with their
issuer, text with logprobs, a tool call whose end leaves its arguments to the fragments, raw
content, and the usage in the finish only (the clients make their usage event from it)."""

from __future__ import annotations

from client_fakes import finish, raw_content, text

from provider_gateway.v1 import provider_service_pb2 as pb

SIGNATURE = "CiQBthought-signature"
USAGE = pb.Usage(input_tokens=12, output_tokens=7, total_tokens=19)


def batch(*events: pb.StreamEvent) -> pb.StreamEvent:
    return pb.StreamEvent(batch=pb.EventBatch(events=events))


def reasoning(piece: str = "", **fields: str) -> pb.StreamEvent:
    return pb.StreamEvent(reasoning_delta=pb.ReasoningDelta(text=piece, **fields))


def tool_call(index: int, call_id: str, name: str, *fragments: str) -> list[pb.StreamEvent]:
    """A tool call's start, argument fragments, and an end without arguments (as one too large for
    the gateway's send limit comes): the clients join the fragments."""
    return [
        pb.StreamEvent(tool_call_start=pb.ToolCallStart(index=index, id=call_id, name=name)),
        *(
            pb.StreamEvent(tool_call_delta=pb.ToolCallDelta(index=index, arguments_delta=fragment))
            for fragment in fragments
        ),
        pb.StreamEvent(tool_call_end=pb.ToolCallEnd(index=index, call=pb.ToolCall(id=call_id, name=name))),
    ]


LOGPROBS = [pb.TokenLogprob(token="Hello", logprob=-0.25)]
REASONING = [reasoning("Checking the weather."), reasoning(signature=SIGNATURE, issuer="gemini")]
TEXT = [pb.StreamEvent(text_delta=pb.TextDelta(text="Hello", logprobs=LOGPROBS)), text(" there")]
TOOL_CALL = tool_call(0, "call_1", "get_weather", '{"city": ', '"Paris"}')
REFERENCE = raw_content("reference", {"reference_ids": [1, 2]})
FINISH = finish(pb.FINISH_REASON_TOOL_CALLS, usage=USAGE)

ONE_PER_MESSAGE = [*REASONING, *TEXT, *TOOL_CALL, REFERENCE, FINISH]
BATCHED = [
    batch(*REASONING, TEXT[0]),
    TEXT[1],
    batch(*TOOL_CALL[:2]),
    batch(*TOOL_CALL[2:], REFERENCE, FINISH),  # the finish, last in its batch, ends the stream
]
# The same text batched with its usage event and finish, as a short answer goes under load.
SHORT = [text("Hi"), pb.StreamEvent(usage=USAGE), finish()]
SHORT_BATCHED = [batch(*SHORT)]
# A batch, then the end of the stream without a finish: the stream was cut.
CUT = [batch(*TEXT)]
