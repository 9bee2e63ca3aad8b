"""The rendered Kubernetes bundle serves: `provider-gateway serve` started as the Deployment starts it
(its args, its environment, the rendered ConfigMap), every provider pointed at a local fake upstream.

It reports SERVING, answers through both configured providers, serves /metrics on every port the
Deployment declares, exports every metric the Grafana dashboard queries, and says in its log when
the Redis of the Redis component cannot be reached (here: a closed local port).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kustomize_support import PRODUCTION, find, on_loopback, render
from processes import GatewayProcess, start_gateway
from promql_names import metric_names
from vendor_cases import chat_request

from provider_gateway.fakes import FakeUpstream, Reply, kinds
from provider_gateway.fakes.anthropic import FakeAnthropic
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "provider-gateway.json"
README = ROOT / "deploy" / "kubernetes" / "README.md"
HEALTH_SERVICE = "provider_gateway.v1.ProviderService"
DOCS = render(PRODUCTION)
CONTAINER = find(DOCS, "Deployment", "provider-gateway")["spec"]["template"]["spec"]["containers"][0]
CONFIG_TEXT = find(DOCS, "ConfigMap", "provider-gateway")["data"]["gateway.toml"]
METRICS_PORTS = [p["containerPort"] for p in CONTAINER["ports"] if p["name"].startswith("metrics-")]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_port_run(count: int) -> int:
    """A port p such that p .. p+count-1 are free now (the workers' metrics ports)."""
    for _ in range(50):
        first = closed_port()
        try:
            held = []
            for port in range(first, first + count):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
        return first
    raise AssertionError(f"no {count} consecutive free ports")


def local_args(config_path: Path) -> list[str]:
    """The container's args after `serve`, on this machine's loopback and a free port."""
    args = list(CONTAINER["args"])
    assert args[0] == "serve"
    for flag, value in (("--config", str(config_path)), ("--host", "127.0.0.1"), ("--port", "0")):
        args[args.index(flag) + 1] = value
    return args[1:]


def container_env(redis_url: str, keys: dict[str, str]) -> dict[str, str]:
    """The Deployment's environment: its plain values, the Secret's keys, the Redis URL redirected."""
    env = {e["name"]: e["value"] for e in CONTAINER["env"] if "value" in e}
    env["PROVIDER_GATEWAY_REDIS_URL"] = redis_url
    env["POD_NAME"] = "provider-gateway-test"
    return env | keys


@pytest.fixture(scope="module")
async def bundle(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    async with FakeUpstream() as openai, FakeAnthropic() as anthropic:
        kinds.openai(openai)
        config = tmp_path_factory.mktemp("bundle") / "gateway.toml"
        keys = {"OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": anthropic.api_key}
        env = container_env(f"redis://127.0.0.1:{closed_port()}/0", keys)
        for tries_left in reversed(range(3)):
            # The metrics ports are free when picked; another test's socket can take one before the
            # workers bind it, and then the gateway exits at start: pick again.
            metrics_port = free_port_run(len(METRICS_PORTS))
            config.write_text(
                on_loopback(
                    CONFIG_TEXT,
                    openai_url=openai.url,
                    anthropic_url=anthropic.base_url,
                    metrics_port=metrics_port,
                )
            )
            try:
                with pytest.MonkeyPatch.context() as patch:
                    for name, value in env.items():
                        patch.setenv(name, value)
                    gateway = await start_gateway(*local_args(config), "--log-level", "warning")
                break
            except RuntimeError:
                if not tries_left:
                    raise
        try:
            yield {"gateway": gateway, "openai": openai, "metrics_port": metrics_port}
        finally:
            await gateway.stop(graceful=True)


async def traffic(gateway: GatewayProcess, openai: FakeUpstream) -> dict[str, Any]:
    """Calls through each provider, a retry and a failover: every dashboard panel then has data."""
    seen: dict[str, Any] = {"providers": []}
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=HEALTH_SERVICE), timeout=10)
        seen["health"] = reply.status
        stub = pb_grpc.ProviderServiceStub(channel)
        openai.script("/v1/chat/completions", Reply.error(503, {"error": {"message": "overloaded"}}))
        for alias in ("fast", "smart"):  # fast's first answer is the 503: the router retries it
            answer = await stub.Chat(chat_request(alias), timeout=30)
            events = [e async for e in stub.ChatStream(chat_request(alias), timeout=30)]
            seen["providers"].append(
                (alias, answer.text != "", answer.finish.provider, events[-1].finish.provider)
            )
        # A 429 with a retry delay holds OpenAI for a second: the call fails over to the fallback.
        limited = Reply.error(429, {"error": {"message": "slow down"}}, headers={"retry-after": "1"})
        openai.script("/v1/chat/completions", limited)
        failover = await stub.Chat(chat_request("fast", fallbacks=["smart"]), timeout=30)
        seen["failover"] = [(a.provider, a.outcome) for a in failover.finish.attempts]
    return seen


@pytest.fixture(scope="module")
async def served(bundle: dict[str, Any]) -> dict[str, Any]:
    return await traffic(bundle["gateway"], bundle["openai"])


async def test_the_bundle_reports_serving_and_answers_through_each_provider(served: dict[str, Any]) -> None:
    assert served["health"] == health_pb2.HealthCheckResponse.SERVING
    assert served["providers"] == [
        ("fast", True, "openai", "openai"),
        ("smart", True, "anthropic", "anthropic"),
    ]
    assert served["failover"][0][0] == "openai"
    assert served["failover"][-1] == ("anthropic", "ok")


async def scrape(port: int) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        assert response.status == 200
        return await response.text()


def dashboard_exprs(panels: list[dict[str, Any]]) -> list[str]:
    exprs = []
    for panel in panels:
        exprs += [t["expr"] for t in panel.get("targets", []) if "expr" in t]
        exprs += dashboard_exprs(panel.get("panels", []))  # a collapsed row holds its panels
    return exprs


async def test_every_worker_serves_metrics_with_every_dashboard_metric(
    bundle: dict[str, Any], served: dict[str, Any]
) -> None:
    first: int = bundle["metrics_port"]
    texts = [await scrape(first + i) for i in range(len(METRICS_PORTS))]
    exported = {name for text in texts for name in re.findall(r"^([a-zA-Z_:][\w:]*)[{ ]", text, re.MULTILINE)}
    exprs = dashboard_exprs(json.loads(DASHBOARD.read_text())["panels"])
    assert len(exprs) >= 12
    wanted = {name for expr in exprs for name in metric_names(expr)}
    assert wanted, "no metric name found in the dashboard"
    assert wanted <= exported, (
        f"the dashboard queries metrics the gateway does not export: {wanted - exported}"
    )


async def test_an_unreachable_redis_is_logged_and_calls_still_serve(
    bundle: dict[str, Any], served: dict[str, Any]
) -> None:
    gateway: GatewayProcess = bundle["gateway"]
    assert all(answered for _, answered, _, _ in served["providers"])
    for _ in range(100):
        if any("redis unavailable" in line for line in gateway.output):
            break
        await asyncio.sleep(0.05)
    warning = json.loads(next(line for line in gateway.output if "redis unavailable" in line))
    assert warning["level"] == "WARNING"
    # The line deploy/kubernetes/README.md shows operators.
    (documented,) = re.findall(r"```text\n(redis unavailable.*)\n```", README.read_text())
    # The same line but for the address: the test's Redis is a closed port on loopback.
    assert re.sub(r"127\.0\.0\.1:\d+", "provider-gateway-redis:6379", warning["msg"]) == documented


def test_the_promql_reader_finds_metric_names_and_nothing_else() -> None:
    """What the dashboard check relies on: functions, groupings, label matchers (even with braces
    or names inside their strings), ranges and keywords are not metric names."""
    expr = (
        'histogram_quantile(0.9, sum by (le, provider) (rate(a_seconds_bucket{job=~"x{1}", m="b_total"}'
        "[$__rate_interval]))) / on (job) group_left (provider) b_total offset 5m > bool 0 or c_up"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_total", "c_up"}
