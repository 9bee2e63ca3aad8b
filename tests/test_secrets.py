"""Known secrets never appear in any log line, span, metric or error message.

Provider keys sit in the environment, the caller sends its own credentials in gRPC metadata, and
the upstream answers 401 echoing the key it got (as some vendors do). Everything the gateway
emits is then searched for each secret.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from test_observability import captured_logs, observed_gateway, user

from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.fakes import FakeUpstream, Reply, kinds
from provider_gateway.observability.logs import redact
from provider_gateway.providers.mock import MockScript
from provider_gateway.v1 import provider_service_pb2 as pb

PROVIDER_KEY = "zq7Kp2mXw9vLr4tNb6s1"  # no recognisable shape: caught because the environment holds it
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
CALLER_TOKEN = "gw-caller-token-5a1e9c"  # the gateway never logs metadata at all
OPENAI_SHAPED = "sk-proj-AbCdEfGhIjKlMnOpQrSt"  # never registered: caught by its shape
SECRETS = (PROVIDER_KEY, AWS_SECRET, CALLER_TOKEN, OPENAI_SHAPED)
CONFIG = """
[providers.mock]
kind = "mock"
"""


def unauthorized(echo: str) -> MockScript:
    body = json.dumps(
        {"error": {"message": f"Incorrect API key provided: {echo}", "code": "invalid_api_key"}}
    )
    return MockScript(
        error=GatewayError(
            ErrorKind.UNAUTHENTICATED, f"upstream 401: {body}", provider="mock", upstream_status=401
        )
    )


async def test_no_secret_in_logs_spans_metrics_or_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVIDER_GATEWAY_TEST_API_KEY", PROVIDER_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    metadata = (("authorization", f"Bearer {CALLER_TOKEN}"), ("x-api-key", CALLER_TOKEN))
    errors: list[str] = []
    with captured_logs() as output:
        async with observed_gateway(CONFIG) as gw:
            mock = gw.running.provider("mock")
            stub = gw.running.stub
            request = pb.ChatRequest(model="mock/echo", messages=[user("hello")])
            for echo in (PROVIDER_KEY, AWS_SECRET, OPENAI_SHAPED):
                mock.push(unauthorized(echo))
                with pytest.raises(grpc.aio.AioRpcError) as unary:
                    await stub.Chat(request, metadata=metadata)
                mock.push(unauthorized(echo))
                with pytest.raises(grpc.aio.AioRpcError) as streamed:
                    async for _ in stub.ChatStream(request, metadata=metadata):
                        pass
                for caught in (unary, streamed):
                    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
                    errors.append(f"{caught.value.details()} {caught.value.debug_error_string()}")
            async for _ in stub.ChatStream(request, metadata=metadata):  # and a successful one
                pass
            await gw.running.server.stop(0)  # every handler has unwound: all spans and lines are out
            spans = [span.to_json() for span in gw.finished()]
            metrics = gw.reader.get_metrics_data()
            assert metrics is not None
            metrics_text = metrics.to_json()

    log_text = output.getvalue()
    assert "Incorrect API key provided: [REDACTED]" in errors[0]  # the message stays useful
    assert '"status":"UNAUTHENTICATED"' in log_text
    assert len(spans) >= 13
    for secret in SECRETS:
        assert secret not in log_text
        assert all(secret not in error for error in errors)
        assert all(secret not in span for span in spans)
        assert secret not in metrics_text


def test_redaction_patterns() -> None:
    assert redact("Authorization: Bearer abc.def-ghi_123") == "Authorization: Bearer [REDACTED]"
    assert redact('{"x-api-key": "k-123456789"}') == '{"x-api-key": "[REDACTED]"}'
    assert redact("https://example.test/v1/models?key=AIzaSyDummyDummyDummyDummyDummy1234&alt=sse") == (
        "https://example.test/v1/models?key=[REDACTED]&alt=sse"
    )
    assert redact("id AKIAABCDEFGHIJKLMNOP used") == "id [REDACTED] used"
    assert redact("sk-ant-api03-0123456789abcdef rejected") == "[REDACTED] rejected"
    assert redact("model gpt-4o took 12 ms, cache key hit") == "model gpt-4o took 12 ms, cache key hit"
    # Every spelling of every label the pattern knows is redacted, however the line is cased.
    for label in (
        "api_key",
        "API-KEY",
        "apikey",
        "access_token",
        "Access-Token",
        "accesstoken",
        "password",
        "key",
    ):
        assert redact(f"retry with {label}=s3cr3tValue9 now") == f"retry with {label}=[REDACTED] now"
    assert redact('{"secretAccessKey": "wJalrXUtnFEMI"}') == '{"secretAccessKey": "[REDACTED]"}'


ENV_KEY = "gw7Qm2Vx9Lk4Pz8Rt1Yb"  # shapeless: caught because the config read it as a secret
FILE_KEY = "fk3Jh8Sd2Wq6Nc0Xe5Ua"


async def test_an_upstream_401_echoing_the_key_leaks_nowhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SECRETS_TEST_UPSTREAM", ENV_KEY)  # a name the environment scan would not catch
    key_file = tmp_path / "key"
    key_file.write_text(FILE_KEY + "\n")
    metadata = (("authorization", f"Bearer {CALLER_TOKEN}"),)
    errors: list[str] = []
    async with FakeUpstream() as fake:
        kinds.openai(fake)
        config = (
            f'[providers.env]\nkind = "openai"\nbase_url = "{fake.url}/env/v1"\napi_key_env = "SECRETS_TEST_UPSTREAM"\n'
            f'[providers.file]\nkind = "openai"\nbase_url = "{fake.url}/file/v1"\napi_key_file = "{key_file}"\n'
        )
        with captured_logs() as output:
            async with observed_gateway(config) as gw:
                for name, key in (("env", ENV_KEY), ("file", FILE_KEY)):
                    body = {
                        "error": {"message": f"Incorrect API key provided: {key}.", "code": "invalid_api_key"}
                    }
                    fake.script(
                        f"/{name}/v1/chat/completions", Reply.error(401, body), Reply.error(401, body)
                    )
                    request = pb.ChatRequest(model=f"{name}/gpt-4o", messages=[user("hello")])
                    with pytest.raises(grpc.aio.AioRpcError) as streamed:
                        async for _ in gw.running.stub.ChatStream(request, metadata=metadata):
                            pass
                    with pytest.raises(grpc.aio.AioRpcError) as unary:
                        await gw.running.stub.Chat(request, metadata=metadata)
                    for caught in (streamed, unary):
                        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
                        errors.append(f"{caught.value.details()} {caught.value.debug_error_string()}")
                await gw.running.server.stop(0)
                spans = [span.to_json() for span in gw.finished()]
                metrics = gw.reader.get_metrics_data()
                assert metrics is not None
                metrics_text = metrics.to_json()
        sent = [r.headers.get("authorization", "") for r in fake.requests]
    assert f"Bearer {ENV_KEY}" in sent  # the keys did reach the upstream, so they were in play
    assert f"Bearer {FILE_KEY}" in sent
    log_text = output.getvalue()
    assert '"status":"UNAUTHENTICATED"' in log_text
    for secret in (ENV_KEY, FILE_KEY, CALLER_TOKEN):
        assert secret not in log_text
        assert all(secret not in error for error in errors)
        assert all(secret not in span for span in spans)
        assert secret not in metrics_text


SHAPELESS_KEY = "Qz8vLm3Rt6Wp1Xs4Nb7Kc2Hd5Jf9Gh0"  # no vendor's shape: masked only because the config read it


@pytest.mark.parametrize(
    "reply",
    [
        # A proxy's error page that is not JSON, quoting the key across the 400th character, where
        # the glimpse of a raw body shown to the client ends.
        Reply(status=502, body=("x" * 390 + " " + SHAPELESS_KEY).encode(), content_type="text/html"),
        # A 200 whose body is not JSON, the key across the 120th byte, where its preview ends.
        Reply(status=200, body=("z" * 110 + SHAPELESS_KEY).encode(), content_type="text/plain"),
    ],
    ids=["error page", "non-JSON 200"],
)
async def test_a_key_across_the_end_of_a_shown_glimpse_is_masked_whole(
    reply: Reply, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHAPELESS_UPSTREAM_KEY", SHAPELESS_KEY)
    async with FakeUpstream() as fake:
        kinds.openai(fake)
        fake.script("/v1/chat/completions", reply)
        config = (
            f'[providers.oa]\nkind = "openai"\nbase_url = "{fake.url}/v1"\n'
            'api_key_env = "SHAPELESS_UPSTREAM_KEY"\n[routing]\nretries = 0\n'
        )
        async with observed_gateway(config) as gw:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await gw.running.stub.Chat(
                    pb.ChatRequest(model="oa/gpt-4o", messages=[user("hi")]), timeout=10
                )
    details = caught.value.details() or ""
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert SHAPELESS_KEY[:6] not in details, f"a piece of the key reached the client: {details[-60:]!r}"
