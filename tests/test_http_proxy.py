"""Egress through a forward proxy: `[upstream] proxy`, or HTTPS_PROXY/HTTP_PROXY/NO_PROXY as curl
and the vendors' SDKs read them; loopback and link-local hosts always direct."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable

import grpc
import pytest
from conftest import run_gateway

from provider_gateway import config as config_module
from provider_gateway.config import ConfigError
from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.http.proxy import ProxySettings
from provider_gateway.observability.logs import redact
from provider_gateway.server.app import GatewayServer
from provider_gateway.v1 import provider_service_pb2 as pb

ENV = {
    "HTTPS_PROXY": "http://tls-egress:3128",
    "http_proxy": "http://plain-egress:3128",
    "NO_PROXY": "internal.example, .corp.example:8443,10.1.2.3,10.9.0.0/16,[fd12::7]:443",
}


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, str]], None]:
    """Set the process's proxy variables to exactly `variables` (the rest cleared)."""

    def use(variables: dict[str, str]) -> None:
        for name in list(os.environ):
            if name.lower().endswith("_proxy"):
                monkeypatch.delenv(name)
        for name, value in variables.items():
            monkeypatch.setenv(name, value)

    return use


@pytest.mark.parametrize(
    ("origin", "proxy"),
    [
        ("https://api.openai.com", "http://tls-egress:3128"),  # HTTPS_PROXY for https origins
        ("http://vllm.cluster.example:8000", "http://plain-egress:3128"),  # http_proxy for http ones
        ("https://internal.example", None),  # NO_PROXY: the host
        ("https://a.b.corp.example", None),  # NO_PROXY: a domain covers its subdomains (port ignored)
        ("http://10.1.2.3:11434", None),  # NO_PROXY: an address
        ("http://127.0.0.1:11434", None),  # loopback: a sidecar, always direct
        ("http://localhost:8080", None),
        ("http://[::1]:8080", None),
        ("http://169.254.169.254", None),  # link-local: the cloud's metadata (AWS credentials)
        ("http://[fd00:ec2::23]", None),  # EKS Pod Identity's IPv6 agent: a token never crosses a proxy
        ("http://[fd00:ec2::254]", None),  # IMDS over IPv6
        ("http://metadata.google.internal", None),
        ("http://10.9.8.7:8000", None),  # NO_PROXY: a range
        ("http://10.10.0.1:8000", "http://plain-egress:3128"),  # outside it
        ("http://[fd12::7]:8000", None),  # NO_PROXY: an IPv6 address in brackets, with a port
    ],
)
def test_the_environment_decides_per_origin_as_curl_reads_it(
    origin: str, proxy: str | None, environment: Callable[[dict[str, str]], None]
) -> None:
    environment(ENV)
    chosen = ProxySettings().for_origin(origin)
    assert (str(chosen.url) if chosen else None) == proxy


def test_all_proxy_is_the_fallback_and_settings_override_the_environment(
    environment: Callable[[dict[str, str]], None],
) -> None:
    environment({"ALL_PROXY": "http://p:1"})
    assert str(ProxySettings().for_origin("https://x.example").url) == "http://p:1"  # type: ignore[union-attr]
    environment({"ALL_PROXY": "http://p:1", "NO_PROXY": "*"})
    assert ProxySettings().for_origin("https://x.example") is None
    environment(ENV)
    configured = ProxySettings(proxy="http://explicit:3128", no_proxy=("skip.example",))
    assert str(configured.for_origin("https://x.example").url) == "http://explicit:3128"  # type: ignore[union-attr]
    assert configured.for_origin("https://api.skip.example") is None
    assert configured.for_origin("http://127.0.0.1:9") is None
    assert ProxySettings(from_environment=False).for_origin("https://api.openai.com") is None


def test_an_environment_proxy_that_is_not_http_is_ignored_not_fatal(
    caplog: pytest.LogCaptureFixture, environment: Callable[[dict[str, str]], None]
) -> None:
    # ALL_PROXY=socks5://... is often set for other tools: the gateway goes direct and says why.
    environment({"ALL_PROXY": "socks5://gw:1080"})
    assert ProxySettings().for_origin("https://api.openai.com") is None
    assert "socks5://gw:1080" in caplog.text


def test_a_proxy_password_is_a_secret_and_does_not_belong_in_the_file(
    environment: Callable[[dict[str, str]], None],
) -> None:
    environment({"HTTPS_PROXY": "http://svc:pa55-w0rd-x@egress:3128"})
    chosen = ProxySettings().for_origin("https://x.example")
    assert chosen is not None
    assert (chosen.user, chosen.password) == ("svc", "pa55-w0rd-x")
    assert "pa55-w0rd-x" not in str(chosen.url)
    assert "pa55-w0rd-x" not in redact("proxy said: http://svc:pa55-w0rd-x@egress:3128 refused")
    for value, problem in [
        ("http://svc:hunter2-proxy@egress:3128", "credentials do not belong in the file"),
        ("socks5://egress:1080", "not an HTTP proxy URL"),
    ]:
        config = config_module.parse(tomllib.loads(f'[upstream]\nproxy = "{value}"\n'), "gw.toml")
        with pytest.raises(ConfigError, match=problem) as caught:
            GatewayServer(config)
        assert "hunter2-proxy" not in str(caught.value)


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
@pytest.mark.parametrize("source", ["config", "environment"])
async def test_requests_reach_the_upstream_through_the_proxy(
    transport: str, source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The "proxy" answers as the upstream would; the upstream's name does not resolve (.invalid),
    # so an answer proves the request went through the proxy, in absolute form with its Host.
    async with FakeUpstream() as proxy:
        answer = {
            "id": "r",
            "model": "m",
            "choices": [{"index": 0, "message": {"content": "via proxy"}, "finish_reason": "stop"}],
        }
        proxy.on("POST", "/v1/chat/completions", lambda r: Reply.json(answer))
        port = proxy.url.rsplit(":", 1)[1]
        for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        upstream = f'[upstream]\ntransport = "{transport}"\n'
        if source == "config":
            upstream += f'proxy = "{proxy.url}"\n'
        else:
            monkeypatch.setenv("HTTP_PROXY", f"http://svc:s3cret-proxy-pw@127.0.0.1:{port}")
        config = upstream + (
            '[providers.openai]\nkind = "openai"\nbase_url = "http://api.upstream.invalid/v1"\n'
            'api_key_env = "PATH"\n'
        )
        async with run_gateway(config) as gateway:
            request = pb.ChatRequest(
                model="openai/m",
                messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="hi")])],
            )
            reply = await gateway.stub.Chat(request, timeout=30)
        assert reply.text == "via proxy"
        sent = proxy.last("/v1/chat/completions")
        assert sent.headers["host"] == "api.upstream.invalid"
        if source == "environment":
            assert (
                sent.headers["proxy-authorization"] == "Basic c3ZjOnMzY3JldC1wcm94eS1wdw=="
            )  # svc:s3cret-proxy-pw
        else:
            assert "proxy-authorization" not in sent.headers


async def test_without_a_proxy_an_unresolvable_upstream_is_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    config = (
        '[upstream]\nproxy_from_environment = false\n[providers.openai]\nkind = "openai"\n'
        'base_url = "http://api.upstream.invalid/v1"\napi_key_env = "PATH"\n'
    )
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # ignored: the environment does not count
    async with run_gateway(config) as gateway:
        request = pb.ChatRequest(
            model="openai/m", messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="hi")])]
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await gateway.stub.Chat(request, timeout=30)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "127.0.0.1:9" not in (caught.value.details() or "")
