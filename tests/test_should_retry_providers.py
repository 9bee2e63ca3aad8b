"""Every HTTP provider honours `x-should-retry` alike, over its own error mapping (Google's bad-key
reason, Bedrock's error codes, Ollama's hints): the header is OpenAI's and Anthropic's, and obeying
it from any vendor that sends it is what its SDK would do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import RunningGateway, run_gateway, use_fake_aws_credentials
from upstream_support import user

from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.fakes.server import RecordedRequest
from provider_gateway.v1 import provider_service_pb2 as pb

KEY = "test-key-0123456789abcdef"
GEMINI_BAD_KEY = {
    "error": {
        "code": 400,
        "message": "API key not valid. Please pass a valid API key.",
        "status": "INVALID_ARGUMENT",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
    }
}


Answer = tuple[int, dict[str, Any], dict[str, str]]  # status, JSON body, headers


@dataclass(frozen=True)
class Vendor:
    kind: str
    prefix: str  # of its requests' paths on the fake
    model: str
    final: Answer  # an error its status (or body) makes final
    final_code: grpc.StatusCode
    transient: Answer  # an error it retries
    extra: str = ""


VENDORS = {
    "openai": Vendor(
        kind="openai",
        prefix="/oa",
        model="gpt-4o",
        final=(400, {"error": {"message": "bad request"}}, {}),
        final_code=grpc.StatusCode.INVALID_ARGUMENT,
        transient=(503, {"error": {"message": "overloaded"}}, {}),
    ),
    "anthropic": Vendor(
        kind="anthropic",
        prefix="/ant",
        model="claude-sonnet-4-5",
        final=(400, {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}, {}),
        final_code=grpc.StatusCode.INVALID_ARGUMENT,
        transient=(
            529,
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            {},
        ),
    ),
    "gemini": Vendor(  # AI Studio's bad key: a 400 its ErrorInfo makes UNAUTHENTICATED, final
        kind="gemini",
        prefix="/gem",
        model="gemini-2.0-flash",
        final=(400, GEMINI_BAD_KEY, {}),
        final_code=grpc.StatusCode.UNAUTHENTICATED,
        transient=(503, {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}, {}),
    ),
    "cohere": Vendor(
        kind="cohere",
        prefix="/co",
        model="command-r",
        final=(400, {"message": "invalid request"}, {}),
        final_code=grpc.StatusCode.INVALID_ARGUMENT,
        transient=(503, {"message": "service unavailable"}, {}),
    ),
    "ollama": Vendor(
        kind="ollama",
        prefix="/ol",
        model="llama3.2",
        final=(400, {"error": "invalid request"}, {}),
        final_code=grpc.StatusCode.INVALID_ARGUMENT,
        transient=(503, {"error": "server busy"}, {}),
    ),
    "bedrock": Vendor(  # Bedrock's own mapping: by the error code it names
        kind="bedrock",
        prefix="/model/",
        model="anthropic.claude-3-5-sonnet-20241022-v2:0",
        final=(400, {"message": "bad input"}, {"x-amzn-ErrorType": "ValidationException"}),
        final_code=grpc.StatusCode.INVALID_ARGUMENT,
        transient=(503, {"message": "try later"}, {"x-amzn-ErrorType": "ServiceUnavailableException"}),
        extra='region = "us-west-2"\n',
    ),
}
# One deployment per call, tried at most twice, with a backoff too short to notice.
ROUTING = """
[routing]
retries = 1
backoff_base_ms = 1
backoff_max_ms = 1
[routing.breaker]
consecutive_failures = 1000000
min_calls = 1000000
"""


@dataclass
class Env:
    fake: FakeUpstream
    gateway: RunningGateway
    answer: Reply = field(default_factory=Reply)  # what every POST gets now

    def reply(self, request: RecordedRequest) -> Reply:
        return self.answer


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    key_file = Path(tmp_path_factory.mktemp("keys")) / "key"
    key_file.write_text(KEY)
    with pytest.MonkeyPatch.context() as patch:
        use_fake_aws_credentials(patch)
        async with FakeUpstream() as fake:
            tables = []
            for name, vendor in VENDORS.items():
                if vendor.kind == "bedrock":
                    tables.append(f'[providers.{name}]\nkind = "bedrock"\nendpoint_url = "{fake.url}"\n')
                else:
                    tables.append(
                        f'[providers.{name}]\nkind = "{vendor.kind}"\nbase_url = "{fake.url}{vendor.prefix}"\n'
                        f'api_key_file = "{key_file}"\n'
                    )
                tables[-1] += vendor.extra
            async with run_gateway("".join(tables) + ROUTING) as gateway:
                running = Env(fake, gateway)
                fake.on("POST", "*", running.reply)
                yield running


async def requests_for(env: Env, name: str, answer: Answer) -> tuple[int, grpc.StatusCode]:
    """How many requests one Chat sent to `name`'s upstream answering `answer`, and the client's status."""
    status, body, headers = answer
    env.answer = Reply.error(status, body, headers)
    since = len(env.fake.requests)
    vendor = VENDORS[name]
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await env.gateway.stub.Chat(
            pb.ChatRequest(model=f"{name}/{vendor.model}", messages=[user("Hi")]), timeout=20
        )
    sent = sum(r.method == "POST" and r.path.startswith(vendor.prefix) for r in env.fake.requests[since:])
    return sent, failed.value.code()


@pytest.mark.parametrize("name", list(VENDORS))
async def test_a_final_error_that_says_retry_is_retried_with_its_status_unchanged(
    env: Env, name: str
) -> None:
    vendor = VENDORS[name]
    assert await requests_for(env, name, vendor.final) == (1, vendor.final_code)
    status, body, headers = vendor.final
    said = (status, body, headers | {"x-should-retry": "true"})
    assert await requests_for(env, name, said) == (2, vendor.final_code)


@pytest.mark.parametrize("name", list(VENDORS))
async def test_a_transient_error_that_says_do_not_retry_is_sent_once(env: Env, name: str) -> None:
    assert await requests_for(env, name, VENDORS[name].transient) == (2, grpc.StatusCode.UNAVAILABLE)
    status, body, headers = VENDORS[name].transient
    said = (status, body, headers | {"x-should-retry": "false"})
    assert await requests_for(env, name, said) == (1, grpc.StatusCode.UNAVAILABLE)
