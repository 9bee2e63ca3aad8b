"""A model whose chat template opens `<think>` in the prompt (DeepSeek-R1 and its distills, QwQ, on
vLLM, Ollama's OpenAI endpoint, Together...) answers `reasoning...</think>answer`. Named in
`prompt_opens_think`, its output up to the first `</think>` is reasoning, streamed as it comes;
any other model's `</think>` stays text, so an ordinary answer that holds the characters is not cut.
Real gateway, a vLLM provider on a fake upstream on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from replay.support import Reasoning, ask, gateway_stream, gateway_unary, replay_gateway

from provider_gateway.domain import ReasoningDelta, TextDelta
from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.providers.openai.presets import PRESETS
from provider_gateway.providers.openai.stream import ChatStreamParser
from provider_gateway.providers.openai.wires import wire_for

USAGE = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
OPENED = "vllm/deepseek-r1-distill-qwen-32b"  # matches the pattern configured below
PLAIN = "vllm/llama-3.3-70b"


@pytest.fixture(scope="module")
async def vllm() -> AsyncIterator[tuple[FakeUpstream, Any]]:
    async with replay_gateway("vllm", "/v1", extra='prompt_opens_think = ["deepseek-r1*"]') as upstream:
        yield upstream


def chunk(delta: dict[str, Any], finish: str | None = None, usage: bool = False) -> dict[str, Any]:
    body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
    return body | ({"usage": USAGE} if usage else {})


def streamed(*deltas: dict[str, Any], finish: str = "stop") -> Reply:
    return Reply.sse([*(chunk(d) for d in deltas), chunk({}, finish, usage=True)])


def texts(*pieces: str, finish: str = "stop") -> Reply:
    return streamed(*({"content": p} for p in pieces), finish=finish)


def whole(content: str, finish: str = "stop", **extra: Any) -> Reply:
    message = {"role": "assistant", "content": content, **extra}
    return Reply.json({
        "id": "c", "object": "chat.completion", "created": 1, "model": "m", "usage": USAGE,
        "choices": [{"index": 0, "finish_reason": finish, "message": message}]})  # fmt: skip


# The close tag split across chunks, as tokenisers cut it.
SPLIT_CLOSE = ("Plan", " it.</thi", "nk>\n\nAns", "wer")


async def test_a_stream_is_reasoning_up_to_the_first_close_tag(vllm: tuple[FakeUpstream, Any]) -> None:
    fake, stub = vllm
    fake.script("/v1/chat/completions", texts(*SPLIT_CLOSE), texts(*SPLIT_CLOSE))
    opened, error = await gateway_stream(stub, ask(OPENED))
    assert error is None, error.details()
    assert (opened.reasoning, opened.text) == ([Reasoning("Plan it.")], "\n\nAnswer")
    plain, error = await gateway_stream(stub, ask(PLAIN))  # not named: the tag is text
    assert error is None, error.details()
    assert (plain.reasoning, plain.text) == ([], "Plan it.</think>\n\nAnswer")
    assert (opened.usage, opened.finish_reason) == (plain.usage, plain.finish_reason)
    assert opened.usage["output"] == 7


async def test_a_whole_answer_is_split_at_the_close_tag(vllm: tuple[FakeUpstream, Any]) -> None:
    fake, stub = vllm
    fake.script(
        "/v1/chat/completions", whole("Plan it.</think>\n\nAnswer"), whole("Plan it.</think>\n\nAnswer")
    )
    opened = await gateway_unary(stub, ask(OPENED))
    assert (opened.reasoning, opened.text) == ([Reasoning("Plan it.")], "\n\nAnswer")
    plain = await gateway_unary(stub, ask(PLAIN))
    assert (plain.reasoning, plain.text) == ([], "Plan it.</think>\n\nAnswer")
    assert (opened.usage, opened.finish_reason) == (plain.usage, plain.finish_reason)


async def test_an_opening_tag_the_model_writes_anyway_is_not_reasoning(
    vllm: tuple[FakeUpstream, Any],
) -> None:
    fake, stub = vllm
    fake.script("/v1/chat/completions", texts("\n<th", "ink>Plan</think>", "Answer"))
    view, error = await gateway_stream(stub, ask(OPENED))
    assert error is None, error.details()
    assert (view.reasoning, view.text) == ([Reasoning("Plan")], "Answer")


async def test_reasoning_the_host_split_off_leaves_the_content_as_text(
    vllm: tuple[FakeUpstream, Any],
) -> None:
    """vLLM with a reasoning parser sends the block as `reasoning_content` and the answer alone."""
    fake, stub = vllm
    fake.script(
        "/v1/chat/completions",
        streamed({"reasoning_content": "Plan it."}, {"content": "Ans"}, {"content": "wer"}),
        whole("Answer", reasoning_content="Plan it."),
    )
    view, error = await gateway_stream(stub, ask(OPENED))
    assert error is None, error.details()
    assert (view.reasoning, view.text) == ([Reasoning("Plan it.")], "Answer")
    view = await gateway_unary(stub, ask(OPENED))
    assert (view.reasoning, view.text) == ([Reasoning("Plan it.")], "Answer")


def test_reasoning_is_relayed_as_each_chunk_arrives() -> None:
    """Nothing waits for the close tag: each chunk's reasoning is out before the next is read,
    bar a possible start of the tag (`</thi`), which the next chunk settles."""
    parser = ChatStreamParser("vllm", wire_for(PRESETS["vllm"]), prompt_opens_think=True)
    read = [parser.stream_chunk(chunk({"content": piece})) for piece in SPLIT_CLOSE]
    assert read == [
        [ReasoningDelta("Plan")],
        [ReasoningDelta(" it.")],
        [TextDelta("\n\nAns")],
        [TextDelta("wer")],
    ]


def test_a_model_that_never_closes_the_block_answers_reasoning_only() -> None:
    """Cut off while thinking (finish `length`): what came is the reasoning, as it streamed."""
    parser = ChatStreamParser("vllm", wire_for(PRESETS["vllm"]), prompt_opens_think=True)
    assert parser.stream_chunk(chunk({"content": "Still thinking about </th"})) == [
        ReasoningDelta("Still thinking about ")
    ]
    assert parser.close()[0] == ReasoningDelta("</th")


@pytest.mark.parametrize(
    "switch",
    [
        {"chat_template_kwargs": {"enable_thinking": False}},  # Qwen3, GLM on vLLM or SGLang
        {"chat_template_kwargs": {"thinking": False}},  # DeepSeek-V3.1
        {"enable_thinking": False},  # hosts that take the switch as a field of the body
        {"thinking": {"type": "disabled"}},
    ],
)
async def test_a_request_that_switches_thinking_off_gets_its_answer_as_text(
    vllm: tuple[FakeUpstream, Any], switch: dict[str, Any]
) -> None:
    """The template then closes the block in the prompt: no `</think>` comes, all is the answer."""
    fake, stub = vllm
    fake.script("/v1/chat/completions", texts("The answer", " is 4."), whole("The answer is 4."))
    request = ask(OPENED)
    request.provider_options.update(switch)
    streamed_view, error = await gateway_stream(stub, request)
    assert error is None, error.details()
    unary_view = await gateway_unary(stub, request)
    for view in (streamed_view, unary_view):
        assert (view.reasoning, view.text) == ([], "The answer is 4.")


@pytest.mark.parametrize("leave_on", ["enable_thinking_true", "reasoning_enabled_false"])
async def test_thinking_left_on_is_still_split(vllm: tuple[FakeUpstream, Any], leave_on: str) -> None:
    """`reasoning.enabled = false` sends the host nothing (Chat Completions has no field for it):
    the template still opens the block, and the reasoning must not reach the text."""
    fake, stub = vllm
    fake.script("/v1/chat/completions", texts("Plan.</think>", "Answer"))
    request = ask(OPENED)
    if leave_on == "enable_thinking_true":
        request.provider_options.update({"chat_template_kwargs": {"enable_thinking": True}})
    else:
        request.reasoning.SetInParent()  # given, with enabled false
    view, error = await gateway_stream(stub, request)
    assert error is None, error.details()
    assert (view.reasoning, view.text) == ([Reasoning("Plan.")], "Answer")


async def test_an_answer_ended_without_closing_the_block_is_also_the_text(
    vllm: tuple[FakeUpstream, Any],
) -> None:
    """A listed model that did not think after all ends with `stop` and no `</think>`: streamed as
    reasoning as it came (nothing waits), then given whole as the text, so the answer is not
    lost; the unary answer of the same bytes is the same."""
    fake, stub = vllm
    fake.script("/v1/chat/completions", texts("The answer", " is 4."), whole("The answer is 4."))
    streamed_view, error = await gateway_stream(stub, ask(OPENED))
    assert error is None, error.details()
    unary_view = await gateway_unary(stub, ask(OPENED))
    for view in (streamed_view, unary_view):
        assert (view.reasoning, view.text) == ([Reasoning("The answer is 4.")], "The answer is 4.")


async def test_an_answer_cut_off_inside_the_block_is_reasoning_only(vllm: tuple[FakeUpstream, Any]) -> None:
    fake, stub = vllm
    fake.script(
        "/v1/chat/completions",
        texts("Let me", " see", finish="length"),
        whole("Let me see", finish="length"),
    )
    streamed_view, error = await gateway_stream(stub, ask(OPENED))
    assert error is None, error.details()
    unary_view = await gateway_unary(stub, ask(OPENED))
    for view in (streamed_view, unary_view):
        assert (view.reasoning, view.text) == ([Reasoning("Let me see")], "")


async def test_whitespace_before_the_hosts_reasoning_field_leaves_the_content_as_text(
    vllm: tuple[FakeUpstream, Any],
) -> None:
    """A host with a reasoning parser that sends a newline as content first: the block is still
    the host's to split, and stream and unary give the same answer."""
    fake, stub = vllm
    fake.script(
        "/v1/chat/completions",
        streamed(
            {"role": "assistant", "content": "\n"}, {"reasoning_content": "Plan."}, {"content": "Answer"}
        ),
        whole("\nAnswer", reasoning_content="Plan."),
    )
    streamed_view, error = await gateway_stream(stub, ask(OPENED))
    assert error is None, error.details()
    unary_view = await gateway_unary(stub, ask(OPENED))
    for view in (streamed_view, unary_view):
        assert (view.reasoning, view.text) == ([Reasoning("Plan.")], "\nAnswer")


@pytest.mark.parametrize("output", ["\n\n", "<", " <thi", "<think"])
@pytest.mark.parametrize("finish", ["length", "stop"])
def test_an_output_of_whitespace_or_a_partial_tag_is_reasoning_too(output: str, finish: str) -> None:
    """Held back in case a tag follows, it is what the rest was, reasoning: the same rule as any
    other output that never closes the block (with `stop`, also the text)."""
    parser = ChatStreamParser("vllm", wire_for(PRESETS["vllm"]), prompt_opens_think=True)
    events = parser.stream_chunk(chunk({"content": output})) + parser.feed(chunk({}, finish))
    events += parser.close()
    said = [e for e in events if isinstance(e, ReasoningDelta | TextDelta)]
    assert said == [ReasoningDelta(output)] + ([TextDelta(output)] if finish == "stop" else [])
