"""Each provider that verifies reasoning signatures leaves out the ones another vendor issued
(`ReasoningPart.issuer`), and keeps its own and those of unknown issuer (older clients). The history
holds what the `gemini` and `gemini-openai` kinds fold a thought signature into: a reasoning part
with empty text and Google's signature, which Claude (Anthropic, Vertex, Bedrock) refuses as an
invalid signature. Empty text alone proves nothing: Claude's `display: "omitted"` thinking is empty
and signed, and must go back in tool-use loops."""

from __future__ import annotations

import pytest

from provider_gateway.domain import (
    Message,
    ReasoningPart,
    Role,
    TextPart,
    ToolCall,
    ToolCallPart,
    ToolResultPart,
)
from provider_gateway.providers.anthropic.codec import convert_messages
from provider_gateway.providers.bedrock.codec import converse_messages
from provider_gateway.providers.bedrock.replay_rules import replay_rules
from provider_gateway.providers.gemini import codec as gemini

SIGNATURE = "CiQB0e2Kb1some-thought-signature=="
BEDROCK_CLAUDE = "anthropic.claude-sonnet-4-20250514-v1:0"


def history(reasoning: ReasoningPart) -> list[Message]:
    call = ToolCall("get_weather-0a1b2c3d4e5f_0", "get_weather", '{"city":"Paris"}')
    return [
        Message(Role.USER, (TextPart("weather in Paris?"),)),
        Message(Role.ASSISTANT, (reasoning, ToolCallPart(call))),
        Message(Role.TOOL, (ToolResultPart(call.id, "18C"),)),
    ]


def sent_to_anthropic(reasoning: ReasoningPart) -> bool:
    messages, _ = convert_messages(history(reasoning), caching=False)
    return SIGNATURE in str(messages)


def sent_to_bedrock(reasoning: ReasoningPart, model: str = BEDROCK_CLAUDE) -> bool:
    _, messages = converse_messages(history(reasoning), False, replay_rules(model))
    return SIGNATURE in str(messages)


def sent_to_gemini(reasoning: ReasoningPart) -> bool:
    contents, _ = gemini.convert_messages(history(reasoning))
    return SIGNATURE in str(contents)


@pytest.mark.parametrize("issuer", ["gemini", "bedrock", "openai"])
def test_claude_on_the_anthropic_api_leaves_out_another_vendors_signature(issuer: str) -> None:
    assert not sent_to_anthropic(ReasoningPart("", SIGNATURE, issuer=issuer))


@pytest.mark.parametrize("issuer", ["anthropic", ""])
def test_claude_on_the_anthropic_api_gets_its_own_or_unknown_signature_even_with_empty_text(
    issuer: str,
) -> None:
    messages, _ = convert_messages(history(ReasoningPart("", SIGNATURE, issuer=issuer)), caching=False)
    assert messages[1]["content"][0] == {"type": "thinking", "thinking": "", "signature": SIGNATURE}


def test_claude_on_the_anthropic_api_leaves_out_another_vendors_redacted_thinking() -> None:
    assert not sent_to_anthropic(ReasoningPart("", SIGNATURE, redacted=True, issuer="bedrock"))
    assert sent_to_anthropic(ReasoningPart("", SIGNATURE, redacted=True, issuer="anthropic"))


@pytest.mark.parametrize("issuer", ["gemini", "anthropic"])
def test_claude_on_bedrock_leaves_out_another_vendors_signature(issuer: str) -> None:
    assert not sent_to_bedrock(ReasoningPart("", SIGNATURE, issuer=issuer))


@pytest.mark.parametrize("issuer", ["bedrock", ""])
def test_claude_on_bedrock_gets_its_own_or_unknown_signature(issuer: str) -> None:
    assert sent_to_bedrock(ReasoningPart("", SIGNATURE, issuer=issuer))


def test_a_bedrock_model_that_verifies_nothing_gets_reasoning_as_before() -> None:
    """Only Claude verifies signatures on Bedrock: other models' reasoning goes as it went."""
    assert sent_to_bedrock(ReasoningPart("thought", SIGNATURE, issuer="gemini"), "deepseek.r1-v1:0")


@pytest.mark.parametrize(
    ("issuer", "sent"), [("anthropic", False), ("bedrock", False), ("gemini", True), ("", True)]
)
def test_gemini_gets_only_its_own_or_unknown_thought_signature(issuer: str, sent: bool) -> None:
    assert sent_to_gemini(ReasoningPart("", SIGNATURE, issuer=issuer)) is sent
