"""An application inference profile's ARN names no model: the gateway finds the model it runs (the
operator's `underlying_models`, else GetInferenceProfile, once per ARN) and sends the call as that
model's family takes it: a profile that runs Claude gets Claude's thinking and replay rules, one
that runs another model gets neither. Real gRPC API -> the gateway -> a fake Bedrock that answers
GetInferenceProfile as AWS does (botocore's own client and parser are the oracle for its shape).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from botocore.session import get_session
from conftest import use_fake_aws_credentials
from test_bedrock_grpc import (
    WAIT_S,
    WEATHER_TOOL,
    assert_signed,
    chat,
    collect,
    config,
    user,
    weather_history,
)
from test_bedrock_transport import wire, with_botocore

from provider_gateway.config import Section
from provider_gateway.domain import ChatRequest, Message, ReasoningOptions, Role, TextPart
from provider_gateway.errors import GatewayError
from provider_gateway.fakes.bedrock import FakeBedrock
from provider_gateway.http.pool import UpstreamPool
from provider_gateway.providers.bedrock import profiles
from provider_gateway.providers.bedrock.adapter import BedrockProvider
from provider_gateway.providers.bedrock.profiles import RETRY_AFTER_S, ProfileModels
from provider_gateway.v1 import provider_service_pb2 as pb

ARN = "arn:aws:bedrock:us-west-2:123456789012:application-inference-profile/a1b2c3d4e5f6"
CLAUDE = "anthropic.claude-sonnet-4-5-20250929-v1:0"
LLAMA = "meta.llama3-3-70b-instruct-v1:0"
THINKING = pb.ReasoningOptions(enabled=True, budget_tokens=2048)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_aws_credentials(monkeypatch)


@pytest.fixture(autouse=True)
def patient_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Calls wait for the lookup up to their deadline's share: on a loaded machine a lookup slower
    than `LOOKUP_WAIT_S` would send the first call as an unknown family (test_bedrock_profile_lookups.py)."""
    monkeypatch.setattr(profiles, "LOOKUP_WAIT_S", float(WAIT_S))


@pytest.fixture
async def fake(aws_env: None) -> AsyncIterator[FakeBedrock]:
    async with FakeBedrock() as running:
        yield running


def history_with_unsigned_reasoning() -> list[pb.Message]:
    """A tool round trip whose assistant turn holds reasoning another provider gave (no signature)."""
    turns = weather_history()
    call_turn = turns[1]
    turns[1] = pb.Message(
        role=pb.ROLE_ASSISTANT,
        content=[pb.ContentPart(reasoning=pb.Reasoning(text="Elsewhere's thought")), *call_turn.content],
    )
    return turns


def lookups(fake: FakeBedrock) -> int:
    return sum(seen.operation == "get-inference-profile" for seen in fake.seen)


def sent_blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [block for message in body["messages"] for block in message["content"]]


async def test_a_profile_that_runs_claude_is_sent_as_claude(fake: FakeBedrock, gateway_factory: Any) -> None:
    fake.application_profiles[ARN] = CLAUDE
    async with gateway_factory(config(fake.url)) as gw:
        request = chat(ARN, *history_with_unsigned_reasoning(), reasoning=THINKING, tools=[WEATHER_TOOL])
        await collect(gw.stub.ChatStream(request, timeout=WAIT_S))
        body = fake.last("converse-stream").body
        assert fake.last("converse-stream").model_id == ARN  # the profile is still what is called
        assert body["additionalModelRequestFields"]["thinking"] == {"type": "enabled", "budget_tokens": 2048}
        blocks = sent_blocks(body)
        assert {
            "toolResult": {"toolUseId": "tooluse_0", "content": [{"text": "18C"}], "status": "success"}
        } in blocks
        assert not any("reasoningContent" in block for block in blocks)  # unsigned: left out for Claude
        for _ in range(3):
            await gw.stub.Chat(request, timeout=WAIT_S)
            await collect(gw.stub.ChatStream(request, timeout=WAIT_S))
        assert lookups(fake) == 1
        assert "thinking" in fake.last("converse").body["additionalModelRequestFields"]
    assert_signed(fake)


async def test_a_profile_that_runs_another_model_gets_no_claude_fields(
    fake: FakeBedrock, gateway_factory: Any
) -> None:
    fake.application_profiles[ARN] = LLAMA
    async with gateway_factory(config(fake.url)) as gw:
        await gw.stub.Chat(
            chat(ARN, *history_with_unsigned_reasoning(), tools=[WEATHER_TOOL]), timeout=WAIT_S
        )
        blocks = sent_blocks(fake.last("converse").body)
        result = next(block["toolResult"] for block in blocks if "toolResult" in block)
        assert "status" not in result  # Converse refuses it for Llama
        assert {"reasoningContent": {"reasoningText": {"text": "Elsewhere's thought"}}} in blocks
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await gw.stub.Chat(chat(ARN, reasoning=THINKING), timeout=WAIT_S)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert lookups(fake) == 1


async def test_many_first_calls_at_once_share_one_lookup(fake: FakeBedrock, gateway_factory: Any) -> None:
    fake.application_profiles[ARN] = CLAUDE
    async with gateway_factory(config(fake.url)) as gw:
        calls = [gw.stub.Chat(chat(ARN, reasoning=THINKING), timeout=WAIT_S) for _ in range(6)]
        await asyncio.gather(*calls)
        assert lookups(fake) == 1
        assert all(
            "thinking" in s.body["additionalModelRequestFields"]
            for s in fake.seen
            if s.operation == "converse"
        )


async def test_the_operators_underlying_model_wins_and_nothing_is_looked_up(
    fake: FakeBedrock, gateway_factory: Any
) -> None:
    fake.application_profiles[ARN] = LLAMA  # what AWS would say: the operator's table is not asked to agree
    extra = f'underlying_models = {{ "{ARN}" = "{CLAUDE}" }}'
    async with gateway_factory(config(fake.url, extra=extra)) as gw:
        await gw.stub.Chat(chat(ARN, reasoning=THINKING), timeout=WAIT_S)
        assert "thinking" in fake.last("converse").body["additionalModelRequestFields"]
    assert lookups(fake) == 0


async def test_a_failed_lookup_sends_the_call_as_before_and_is_not_asked_again_at_once(
    fake: FakeBedrock, gateway_factory: Any
) -> None:
    """No bedrock:GetInferenceProfile permission: calls still work, as a model of no known family."""
    fake.application_profiles[ARN] = CLAUDE
    fake.profile_error = ("AccessDeniedException", "not authorized to perform bedrock:GetInferenceProfile")
    async with gateway_factory(config(fake.url)) as gw:
        for _ in range(3):
            response = await gw.stub.Chat(chat(ARN, *weather_history(), tools=[WEATHER_TOOL]), timeout=WAIT_S)
            assert response.text == "Hello from Bedrock"
        result = next(b["toolResult"] for b in sent_blocks(fake.last("converse").body) if "toolResult" in b)
        assert "status" not in result
        assert lookups(fake) == 1


async def test_completions_and_token_counts_follow_the_profiles_model(
    fake: FakeBedrock, gateway_factory: Any
) -> None:
    fake.application_profiles[ARN] = CLAUDE
    async with gateway_factory(config(fake.url)) as gw:
        response = await gw.stub.Complete(
            pb.CompleteRequest(model=f"bedrock/{ARN}", prompt="Say hi", max_tokens=9)
        )
        assert response.text == "Hello from anthropic"
        invoked = fake.last("invoke")
        assert (invoked.model_id, invoked.body["anthropic_version"]) == (ARN, "bedrock-2023-05-31")
        counted = await gw.stub.CountTokens(
            pb.CountTokensRequest(model=f"bedrock/{ARN}", messages=[user("one two")])
        )
        assert (counted.input_tokens, counted.estimated) == (2, False)
        assert fake.last("count-tokens").model_id == CLAUDE  # CountTokens takes the foundation model
        assert lookups(fake) == 1


async def test_the_lookup_is_botocores_request_and_the_fakes_answer_parses_as_botocores_shape(
    fake: FakeBedrock, gateway_factory: Any
) -> None:
    fake.application_profiles[ARN] = CLAUDE
    async with gateway_factory(config(fake.url)) as gw:
        await gw.stub.Chat(chat(ARN), timeout=WAIT_S)
    ours = wire(fake.last("get-inference-profile"))
    fake.seen.clear()
    parsed = await with_botocore(
        fake, "bedrock", lambda client: client.get_inference_profile(inferenceProfileIdentifier=ARN)
    )
    assert ours == wire(fake.last("get-inference-profile"))
    assert (
        ours["path"]
        == "/inference-profiles/arn:aws:bedrock:us-west-2:123456789012:application-inference-profile%2Fa1b2c3d4e5f6"
    )
    shape = get_session().get_service_model("bedrock").operation_model("GetInferenceProfile").output_shape
    assert set(shape.required_members) <= set(parsed)
    assert parsed["models"] == [{"modelArn": f"arn:aws:bedrock:us-west-2::foundation-model/{CLAUDE}"}]
    assert (parsed["type"], parsed["inferenceProfileArn"]) == ("APPLICATION", ARN)


async def test_a_permission_granted_later_takes_effect_after_the_retry_window(fake: FakeBedrock) -> None:
    """A failed lookup is asked again `RETRY_AFTER_S` later (a clock stands in for the wait), in
    the background: the call that starts it is answered as before, the calls after it as Claude."""
    fake.application_profiles[ARN] = CLAUDE
    fake.profile_error = ("AccessDeniedException", "not authorized to perform bedrock:GetInferenceProfile")
    now = [0.0]
    pool = UpstreamPool()
    options = Section({"region": "us-west-2", "endpoint_url": fake.url}, "test.toml", "providers.bedrock")
    provider = BedrockProvider.from_config("bedrock", options, pool, os.environ)
    provider.profiles = ProfileModels(provider.control, {}, clock=lambda: now[0])
    thinking = ChatRequest(
        ARN, [Message(Role.USER, (TextPart("Hi"),))], reasoning=ReasoningOptions(enabled=True)
    )
    try:
        with pytest.raises(GatewayError, match="no reasoning setting is documented"):
            await provider.chat(thinking)  # the family is unknown: as before profiles were looked up
        fake.profile_error = None  # the operator grants the permission
        now[0] = RETRY_AFTER_S - 1
        with pytest.raises(GatewayError):
            await provider.chat(thinking)
        assert lookups(fake) == 1
        now[0] = RETRY_AFTER_S
        with pytest.raises(GatewayError):
            await provider.chat(thinking)  # not held up by the lookup it starts
        await provider.profiles.settled()
        await provider.chat(thinking)
        assert "thinking" in fake.last("converse").body["additionalModelRequestFields"]
        assert lookups(fake) == 2
    finally:
        await provider.aclose()
        await pool.aclose()
