"""GetInferenceProfile never holds calls up, and what callers send cannot wear the lookups down.

A call waits for an application profile's first lookup only briefly, and never past a share of
its deadline, then goes on as a model of no known family; later calls get that answer at once while
the lookup is asked again in the background, less and less often. Failures are remembered apart
from answers and warned of once per ARN; closing the provider ends the lookups still running; a
refusal that depends on the unknown family says why it is unknown and the two fixes. Real gRPC API
or the provider itself -> a fake Bedrock whose control plane can hang (`profiles_answer`); a clock
stands in for the retry windows, and "answered at once" is a call that ends within a deadline it
could not meet if it waited for the hanging lookup.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from conftest import use_fake_aws_credentials
from test_bedrock_grpc import WAIT_S, chat, config

from provider_gateway.config import Section
from provider_gateway.domain import ChatRequest, Message, ReasoningOptions, Role, TextPart
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.fakes.bedrock import FakeBedrock
from provider_gateway.http.pool import UpstreamPool
from provider_gateway.providers.bedrock import profiles
from provider_gateway.providers.bedrock.adapter import BedrockProvider
from provider_gateway.providers.bedrock.profiles import RETRY_AFTER_S, ProfileModels
from provider_gateway.v1 import provider_service_pb2 as pb

ARN = "arn:aws:bedrock:us-west-2:123456789012:application-inference-profile/a1b2c3d4e5f6"
CLAUDE = "anthropic.claude-sonnet-4-5-20250929-v1:0"
ACCESS_DENIED = ("AccessDeniedException", "not authorized to perform bedrock:GetInferenceProfile")
FIXES = ("bedrock:GetInferenceProfile", "underlying_models")
NEVER_S = 3600.0  # a bound no call of these tests could wait out


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeBedrock]:
    use_fake_aws_credentials(monkeypatch)
    async with FakeBedrock() as running:
        running.application_profiles[ARN] = CLAUDE
        yield running


@asynccontextmanager
async def provider_at(fake: FakeBedrock, now: list[float]) -> AsyncIterator[BedrockProvider]:
    """The provider itself (no gRPC deadline), its lookups on the clock `now[0]`."""
    pool = UpstreamPool()
    options = Section({"region": "us-west-2", "endpoint_url": fake.url}, "test.toml", "providers.bedrock")
    provider = BedrockProvider.from_config("bedrock", options, pool, os.environ)
    provider.profiles = ProfileModels(provider.control, {}, clock=lambda: now[0])
    try:
        yield provider
    finally:
        await provider.aclose()
        await pool.aclose()


def lookups(fake: FakeBedrock, arn: str = ARN) -> int:
    return sum(s.operation == "get-inference-profile" and s.model_id == arn for s in fake.seen)


def chat_request(model: str = ARN, thinking: bool = True) -> ChatRequest:
    reasoning = ReasoningOptions(enabled=True) if thinking else None
    return ChatRequest(model, [Message(Role.USER, (TextPart("Hi"),))], reasoning=reasoning)


async def sent_as_claude(provider: BedrockProvider) -> bool:
    """A call with thinking on, answered within a client's deadline: True if sent as Claude, False
    if refused as a model of no known family."""
    try:
        async with asyncio.timeout(WAIT_S):
            await provider.chat(chat_request())
    except GatewayError as refused:
        if refused.kind is not ErrorKind.FAILED_PRECONDITION:
            raise
        return False
    return True


@pytest.mark.parametrize(
    "wait_s", [profiles.LOOKUP_WAIT_S, NEVER_S], ids=["default wait", "deadline bounds it"]
)
async def test_a_control_plane_that_hangs_costs_a_call_only_part_of_its_deadline(
    fake: FakeBedrock, gateway_factory: Any, monkeypatch: pytest.MonkeyPatch, wait_s: float
) -> None:
    """Was DEADLINE_EXCEEDED: a call waited up to 10 s for GetInferenceProfile (a VPC with only
    the runtime's endpoint). Allowed to wait an hour, a call is still bounded by its deadline."""
    monkeypatch.setattr(profiles, "LOOKUP_WAIT_S", wait_s)
    fake.profiles_answer.clear()
    async with gateway_factory(config(fake.url)) as gw:
        for _ in range(2):
            response = await gw.stub.Chat(chat(ARN), timeout=5)
            assert response.text == "Hello from Bedrock"  # as a model of no known family
        assert lookups(fake) == 1  # the second call did not start another
        fake.profiles_answer.set()


async def test_after_a_failure_calls_are_answered_at_once_and_the_lookup_is_retried_ever_less_often(
    fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stale-while-revalidate with exponential backoff: each retry runs in the background (the
    control plane hangs meanwhile, and a call that waited for it would not end), the windows
    double (60, 120, 240 s), and a permission granted later takes effect."""
    monkeypatch.setattr(profiles, "LOOKUP_WAIT_S", NEVER_S)
    fake.profile_error = ACCESS_DENIED
    now = [0.0]
    async with provider_at(fake, now) as provider:
        assert not await sent_as_claude(provider)  # the first lookup answers at once: refused
        fake.profiles_answer.clear()
        for at, asked in ((59, 1), (60, 2), (179, 2), (180, 3), (419, 3), (420, 4)):
            now[0] = at
            assert not await sent_as_claude(provider)  # while the control plane hangs
            if at == 420:
                fake.profile_error = None  # the operator granted the permission meanwhile
            fake.profiles_answer.set()  # a lookup held meanwhile answers
            await provider.profiles.settled()
            fake.profiles_answer.clear()
            assert lookups(fake) == asked, at
        assert await sent_as_claude(provider)
        assert lookups(fake) == 4


async def test_made_up_arns_neither_push_a_real_profile_out_nor_warn_more_than_once_each(
    fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Any caller can name an ARN: failures are bounded on their own, so the operator's profile,
    once answered, is never asked again (it was pushed out by 1024 made-up ARNs); each made-up ARN
    warns once, its retries log at debug level."""
    made_up = [f"{ARN.rpartition('/')[0]}/madeup{i}" for i in range(profiles.MAX_FAILED + 1)]
    retried = made_up[-3:]
    monkeypatch.setattr(profiles, "LOOKUP_WAIT_S", NEVER_S)  # a loaded machine must not give up
    now = [0.0]
    async with provider_at(fake, now) as provider:
        assert await sent_as_claude(provider)
        with caplog.at_level(logging.DEBUG, logger=profiles.__name__):
            for first in range(0, len(made_up), profiles.MAX_RUNNING):  # as many as may run at once
                chunk = made_up[first : first + profiles.MAX_RUNNING]
                await asyncio.gather(*(provider.profiles.underlying(arn) for arn in chunk))
                await provider.profiles.settled()
            now[0] = RETRY_AFTER_S
            for arn in retried:
                assert await provider.profiles.underlying(arn) == arn
            await provider.profiles.settled()
        assert await sent_as_claude(provider)
        assert lookups(fake) == 1
        assert [lookups(fake, arn) for arn in retried] == [2] * len(retried)
        records = [r for r in caplog.records if r.name == profiles.__name__]
        assert sum(r.levelno == logging.WARNING for r in records) == len(made_up)
        assert sum(r.levelno == logging.DEBUG for r in records) == len(retried)


async def test_lookups_at_once_are_bounded_and_an_arn_without_room_is_asked_by_a_later_call(
    fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was one task and one control-plane request per ARN named, all at once, each up to 10 s."""
    monkeypatch.setattr(profiles, "LOOKUP_WAIT_S", 0.01)  # the control plane hangs: calls go on
    fake.profiles_answer.clear()
    named = [f"{ARN.rpartition('/')[0]}/many{i}" for i in range(profiles.MAX_RUNNING + 4)]
    now = [0.0]
    async with provider_at(fake, now) as provider:
        answers = await asyncio.gather(*(provider.profiles.underlying(arn) for arn in named))
        assert answers == named  # every call went on, as a model of no known family
        without_room = [arn for arn in named if profiles.BUSY in provider.profiles.unresolved(arn)]
        assert len(without_room) == len(named) - profiles.MAX_RUNNING
        fake.profiles_answer.set()  # the running ones end (made-up ARNs: refused)
        await provider.profiles.settled()
        assert [lookups(fake, arn) for arn in without_room] == [0] * len(without_room)
        await asyncio.gather(*(provider.profiles.underlying(arn) for arn in without_room))
        await provider.profiles.settled()
        assert [lookups(fake, arn) for arn in named] == [1] * len(named)


async def test_closing_the_provider_ends_a_lookup_still_running(
    fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(profiles, "LOOKUP_TIMEOUT_S", NEVER_S)  # only the close can end it
    fake.profiles_answer.clear()
    now = [0.0]
    async with provider_at(fake, now) as provider:
        assert not await sent_as_claude(provider)  # went on without the answer
        assert not fake.disconnected.is_set()
        await provider.aclose()
        await asyncio.wait_for(fake.disconnected.wait(), WAIT_S)  # the control plane saw it end


@pytest.mark.parametrize(
    ("hangs", "why"),
    [(False, "GetInferenceProfile failed: AccessDeniedException"), (True, profiles.NOT_ANSWERED_YET)],
    ids=["refused", "not answered"],
)
async def test_a_refusal_that_depends_on_the_family_says_the_profiles_model_is_unknown_and_the_fixes(
    fake: FakeBedrock, gateway_factory: Any, hangs: bool, why: str
) -> None:
    fake.profile_error = ACCESS_DENIED
    if hangs:
        fake.profiles_answer.clear()
    async with gateway_factory(config(fake.url)) as gw:
        for call, code in (
            (
                gw.stub.Chat(chat(ARN, reasoning=pb.ReasoningOptions(enabled=True)), timeout=WAIT_S),
                grpc.StatusCode.FAILED_PRECONDITION,
            ),
            (
                gw.stub.Embed(pb.EmbedRequest(model=f"bedrock/{ARN}", inputs=["a"]), timeout=WAIT_S),
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refused.value.code() == code
            details = refused.value.details() or ""
            assert f"could not be resolved ({why}" in details
            assert all(fix in details for fix in FIXES)
        fake.profiles_answer.set()
