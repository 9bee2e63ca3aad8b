"""deploy/kubernetes and deploy/envoy: rendered, schema-valid, consistent with each other and the gateway.

The bundle is rendered by `kubectl kustomize` (tests/kustomize_support.py), as `kubectl apply -k`
renders it: the base alone and deploy/overlays/production (the base with both optional components).
Every rendered object is checked in strict mode (unknown fields are errors) against the API schemas
that PyPI's kubernetes-validate bundles, offline: the oldest supported release (1.30, the first with
the preStop `sleep` action enabled by default) and the newest bundled one. The ServiceMonitor is a
custom resource whose schema no registry package ships: its fields are checked one by one below.
The Envoy bootstrap is parsed into Envoy's own protobuf API (PyPI xds-protos), which rejects unknown
or misspelt fields.
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kustomize_support import BASE, PRODUCTION, on_loopback, render

from provider_gateway import config as config_module
from provider_gateway.config import ServerConfig
from provider_gateway.server.app import CUT_FLUSH_S

ROOT = Path(__file__).resolve().parent.parent
KUBE = BASE
ENVOY = ROOT / "deploy" / "envoy" / "envoy.yaml"
KUBE_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
HEALTH_SERVICE = "provider_gateway.v1.ProviderService"
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

BASE_DOCS = render(BASE)
DOCS = render(PRODUCTION)  # the base and every component


def find(kind: str, name: str, docs: list[dict[str, Any]] = DOCS) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def doc_id(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


BUILT_IN = [d for d in DOCS if (d["apiVersion"], d["kind"]) not in CUSTOM_KINDS]


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("doc", BUILT_IN, ids=[doc_id(d) for d in BUILT_IN])
def test_rendered_object_is_schema_valid(doc: dict[str, Any], version: str) -> None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{doc_id(doc)} against {version}: {exc.message} at {list(exc.path)}")


def test_validator_rejects_a_misspelt_field() -> None:
    deployment = yaml.safe_load((KUBE / "deployment.yaml").read_text())
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 30
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


def file_objects(path: Path) -> set[tuple[str, str]]:
    return {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(path.read_text()) if d}


def test_every_manifest_file_is_rendered() -> None:
    """No file under deploy/kubernetes is left out of the bundle (examples/ and patches aside)."""
    rendered = {(d["kind"], d["metadata"]["name"]) for d in DOCS}
    patches = {KUBE / "components" / "redis" / "gateway-env.yaml"}
    for path in KUBE.rglob("*.yaml"):
        if path.name == "kustomization.yaml" or "examples" in path.parts or path in patches:
            continue
        assert file_objects(path) <= rendered, path.relative_to(ROOT)


def test_every_object_is_labelled_part_of_the_gateway() -> None:
    for doc in DOCS:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "provider-gateway", doc_id(doc)


def test_every_resource_is_required_by_the_issue() -> None:
    kinds = {(d["apiVersion"], d["kind"]) for d in BASE_DOCS}
    for required in [
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("v1", "ConfigMap"),
        ("policy/v1", "PodDisruptionBudget"),
    ]:
        assert required in kinds
    # The keys' Secret is created apart: a bundle that owned it would wipe real keys on re-apply.
    assert ("v1", "Secret") not in {(d["apiVersion"], d["kind"]) for d in DOCS}


def test_redis_and_the_service_monitor_are_optional() -> None:
    """The base needs neither the Prometheus Operator's CRD nor a Redis: both are components."""
    base = {(d["kind"], d["metadata"]["name"]) for d in BASE_DOCS}
    assert ("ServiceMonitor", "provider-gateway") not in base
    assert ("Deployment", "provider-gateway-redis") not in base
    env = find("Deployment", "provider-gateway", BASE_DOCS)["spec"]["template"]["spec"]["containers"][0][
        "env"
    ]
    assert "PROVIDER_GATEWAY_REDIS_URL" not in {e["name"] for e in env}


# --- the gateway Deployment ------------------------------------------------------------------

DEPLOYMENT = find("Deployment", "provider-gateway")
POD = DEPLOYMENT["spec"]["template"]["spec"]
CONTAINER = POD["containers"][0]
CONFIG_TEXT = find("ConfigMap", "provider-gateway")["data"]["gateway.toml"]
GATEWAY_CONFIG = config_module.parse(tomllib.loads(CONFIG_TEXT), "configmap.yaml:gateway.toml")


def test_readiness_is_the_grpc_health_of_the_api_and_the_others_only_ask_if_it_is_up() -> None:
    port = CONTAINER["ports"][0]
    assert CONTAINER["readinessProbe"]["grpc"] == {"port": port["containerPort"], "service": HEALTH_SERVICE}
    # A provider outage or a missing key must not restart the pod (a crash loop cures neither).
    assert CONTAINER["livenessProbe"]["tcpSocket"] == {"port": port["name"]}
    assert CONTAINER["startupProbe"]["tcpSocket"] == {"port": port["name"]}


def test_liveness_tolerates_a_whole_drain() -> None:
    """While draining the server reports NOT_SERVING on purpose; liveness must not kill it then."""
    liveness = CONTAINER["livenessProbe"]
    server = GATEWAY_CONFIG.server
    assert (
        liveness["periodSeconds"] * liveness["failureThreshold"]
        > server.drain_delay_s + server.grace_period_s
    )


def test_termination_grace_covers_prestop_and_drain() -> None:
    pre_stop = CONTAINER["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = GATEWAY_CONFIG.server.drain_delay_s + GATEWAY_CONFIG.server.grace_period_s
    # ...and the second the cut calls get to send their status before gRPC stops.
    assert POD["terminationGracePeriodSeconds"] > pre_stop + drain + CUT_FLUSH_S


def test_the_default_grace_is_the_manifests_grace() -> None:
    """A config without grace_period_s drains as long as the manifest's pods may take."""
    assert GATEWAY_CONFIG.server.grace_period_s == ServerConfig().grace_period_s


def test_connections_are_recycled_for_dns_balancing_clients() -> None:
    server = GATEWAY_CONFIG.server
    assert server.max_connection_age_s > 0
    # A stream cut by connection recycling would be as bad as one cut by a drain.
    assert server.max_connection_age_grace_s >= server.grace_period_s


def test_gateway_listens_on_all_interfaces_with_the_mounted_config() -> None:
    args = CONTAINER["args"]
    assert args[0] == "serve"
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert int(args[args.index("--workers") + 1]) >= 2  # a fixed number: a pod may sit on a big node
    assert GATEWAY_CONFIG.server.host == "0.0.0.0"
    config_path = Path(args[args.index("--config") + 1])
    mount = next(m for m in CONTAINER["volumeMounts"] if m["name"] == "config")
    assert str(config_path.parent) == mount["mountPath"]
    volume = next(v for v in POD["volumes"] if v["name"] == "config")
    assert volume["configMap"]["name"] == "provider-gateway"


def test_runs_as_the_image_user_without_privileges() -> None:
    dockerfile_user = next(
        line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("USER ")
    )
    assert str(POD["securityContext"]["runAsUser"]) == dockerfile_user.split(":")[0]
    assert POD["securityContext"]["runAsNonRoot"] is True
    assert CONTAINER["securityContext"]["allowPrivilegeEscalation"] is False
    assert CONTAINER["securityContext"]["readOnlyRootFilesystem"] is True


def test_resources_are_requested_and_memory_is_bounded() -> None:
    resources = CONTAINER["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]


def test_every_provider_key_comes_from_the_secret() -> None:
    secret = yaml.safe_load((KUBE / "examples" / "secret.yaml").read_text())
    assert secret["metadata"]["name"] == "provider-gateway-keys"
    # Optional: a missing Secret leaves the pod unready (and says why) instead of crash-looping.
    assert {"secretRef": {"name": "provider-gateway-keys", "optional": True}} in CONTAINER["envFrom"]
    key_envs = {p.options.string("api_key_env") for p in GATEWAY_CONFIG.providers} - {""}
    assert key_envs
    assert key_envs == set(secret["stringData"])
    assert all(value == "" for value in secret["stringData"].values()), "no real key is committed"


def test_the_production_config_has_no_mock_provider() -> None:
    """Readiness must mean that a real provider can serve, and mock/* is no model for production."""
    assert "mock" not in {p.kind for p in GATEWAY_CONFIG.providers}


def redis_component_url() -> str:
    env = {e["name"]: e.get("value") for e in CONTAINER.get("env", [])}
    return str(env[GATEWAY_CONFIG.section("redis").string("url_env")])


def test_the_redis_component_points_the_gateway_at_its_service() -> None:
    """The ConfigMap names an environment variable (unset in the base: per-replica counting); the
    component sets it to its own Service."""
    service = find("Service", "provider-gateway-redis")
    port = service["spec"]["ports"][0]["port"]
    assert redis_component_url().startswith(f"redis://{service['metadata']['name']}:{port}/")
    redis = find("Deployment", "provider-gateway-redis")
    assert redis["spec"]["template"]["metadata"]["labels"].items() >= service["spec"]["selector"].items()


# --- metrics ---------------------------------------------------------------------------------------


def workers() -> int:
    args = CONTAINER["args"]
    return int(args[args.index("--workers") + 1])


def test_every_worker_has_a_declared_metrics_port() -> None:
    """Worker i serves /metrics on prometheus_port + i: one named container port for each."""
    telemetry = GATEWAY_CONFIG.section("telemetry")
    assert telemetry.string("prometheus_host") == "0.0.0.0"
    first = telemetry.integer("prometheus_port")
    ports = {p["name"]: p["containerPort"] for p in CONTAINER["ports"]}
    assert {f"metrics-{i}": first + i for i in range(workers())}.items() <= ports.items()


def test_the_metrics_service_is_annotated_for_scraping_every_worker() -> None:
    service = find("Service", "provider-gateway-metrics")
    assert selects_gateway_pods(service["spec"]["selector"])
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    # No prometheus.io/port: the scrape job then takes every port of the Service, one per worker.
    assert "prometheus.io/port" not in annotations
    container_ports = {p["name"] for p in CONTAINER["ports"]}
    targets = [p["targetPort"] for p in service["spec"]["ports"]]
    assert targets == [f"metrics-{i}" for i in range(workers())]
    assert set(targets) <= container_ports


def test_the_service_monitor_scrapes_the_metrics_service_only() -> None:
    monitor = find("ServiceMonitor", "provider-gateway")
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(monitor["spec"]) == {"selector", "endpoints"}
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [
        d for d in DOCS if d["kind"] == "Service" and d["metadata"]["labels"].items() >= selector.items()
    ]
    assert [d["metadata"]["name"] for d in selected] == ["provider-gateway-metrics"]
    port_names = [p["name"] for p in selected[0]["spec"]["ports"]]
    for endpoint in monitor["spec"]["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}  # fields of the CRD we use
        assert endpoint["path"] == "/metrics"
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == port_names


# --- Services, autoscaling, disruption budget ----------------------------------------------------


def selects_gateway_pods(selector: dict[str, str]) -> bool:
    return DEPLOYMENT["spec"]["template"]["metadata"]["labels"].items() >= selector.items()


def test_headless_and_cluster_ip_services_select_the_gateway() -> None:
    headless = find("Service", "provider-gateway-headless")
    cluster_ip = find("Service", "provider-gateway")
    assert headless["spec"]["clusterIP"] == "None"
    assert cluster_ip["spec"].get("type", "ClusterIP") == "ClusterIP"
    for service in (headless, cluster_ip):
        assert selects_gateway_pods(service["spec"]["selector"])
        assert service["spec"]["ports"][0]["targetPort"] == "grpc"
        assert service["spec"]["ports"][0]["appProtocol"] == "kubernetes.io/h2c"


def test_hpa_scales_the_deployment_from_three() -> None:
    hpa = find("HorizontalPodAutoscaler", "provider-gateway")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "provider-gateway")
    assert hpa["spec"]["minReplicas"] >= 3
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]


def test_pdb_protects_the_gateway() -> None:
    pdb = find("PodDisruptionBudget", "provider-gateway")
    assert selects_gateway_pods(pdb["spec"]["selector"]["matchLabels"])
    assert (
        pdb["spec"]["maxUnavailable"]
        < find("HorizontalPodAutoscaler", "provider-gateway")["spec"]["minReplicas"]
    )


# --- Envoy ---------------------------------------------------------------------------------------


ENVOY_PYTHON = ROOT / ".venv-envoy" / "bin" / "python"  # scripts/setup.d/envoy.sh
ENVOY_SCHEMA = ROOT / "tests" / "tools" / "envoy_schema.py"


def envoy_schema(*args: str) -> subprocess.CompletedProcess[str]:
    assert ENVOY_PYTHON.exists(), "run scripts/setup.sh: it installs Envoy's schema into .venv-envoy"
    return subprocess.run(
        [str(ENVOY_PYTHON), str(ENVOY_SCHEMA), *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def envoy() -> dict[str, Any]:
    """envoy.yaml parsed strictly into Envoy's Bootstrap message (unknown fields fail), as JSON."""
    parsed = envoy_schema(str(ENVOY))
    assert parsed.returncode == 0, parsed.stderr
    result: dict[str, Any] = json.loads(parsed.stdout)
    return result


def test_envoy_config_rejects_unknown_fields() -> None:
    """Proves the parse above is strict, so a misspelt Envoy field fails the suite."""
    probe = envoy_schema("--reject-probe")
    assert probe.returncode == 0, probe.stdout
    assert "clusterz" in probe.stdout


def test_envoy_health_checks_the_grpc_health_service(envoy: dict[str, Any]) -> None:
    (cluster,) = envoy["bootstrap"]["static_resources"]["clusters"]
    (check,) = cluster["health_checks"]
    assert check["grpc_health_check"]["service_name"] == HEALTH_SERVICE
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert address["socket_address"]["address"].startswith("provider-gateway-headless.")
    assert address["socket_address"]["port_value"] == 50051
    assert cluster["type"] == "STRICT_DNS"
    options = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    assert "http2_protocol_options" in options["explicit_http_config"]


def test_a_draining_replica_serves_until_envoy_has_ejected_it(envoy: dict[str, Any]) -> None:
    """NOT_SERVING is kept, still serving, longer than Envoy's health check takes to eject the
    replica; a unary call that still meets the stop (CANCELLED by gRPC, grpc#41785) is retried."""
    (cluster,) = envoy["bootstrap"]["static_resources"]["clusters"]
    (check,) = cluster["health_checks"]
    seconds = lambda text: float(text.removesuffix("s"))  # noqa: E731
    # The first failed check comes up to one interval after SIGTERM; each may take its timeout.
    ejected_after = seconds(check["interval"]) * check["unhealthy_threshold"] + seconds(check["timeout"])
    assert GATEWAY_CONFIG.server.drain_delay_s > ejected_after
    (manager,) = envoy["managers"]
    routes = manager["route_config"]["virtual_hosts"][0]["routes"]
    retried = [r["route"]["retry_policy"] for r in routes if "retry_policy" in r["route"]]
    assert retried
    assert all("cancelled" in policy["retry_on"].split(",") for policy in retried)


def test_envoy_does_not_time_out_long_streams(envoy: dict[str, Any]) -> None:
    (manager,) = envoy["managers"]
    assert manager["stream_idle_timeout"] == "0s"
    assert manager["request_timeout"] == "0s"
    routes = manager["route_config"]["virtual_hosts"][0]["routes"]
    assert routes
    for route in routes:
        assert route["route"]["timeout"] == "0s"
    # Only unary methods are retried: a stream may already have sent output.
    retried = [r for r in routes if "retry_policy" in r["route"]]
    assert retried
    assert all("Stream" not in r["match"]["safe_regex"]["regex"] for r in retried)


def test_only_gateway_pods_reach_redis() -> None:
    policy = find("NetworkPolicy", "provider-gateway-redis")
    redis_pods = find("Deployment", "provider-gateway-redis")["spec"]["template"]["metadata"]["labels"]
    assert redis_pods.items() >= policy["spec"]["podSelector"]["matchLabels"].items()
    (rule,) = policy["spec"]["ingress"]
    (source,) = rule["from"]
    assert selects_gateway_pods(source["podSelector"]["matchLabels"])


async def test_the_shipped_config_serves_on_fake_upstreams_and_waits_for_its_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rendered ConfigMap, its providers pointed at local fakes (nothing reaches a real host):
    without the Secret it is up but NOT_SERVING; with the keys it serves and reports SERVING."""
    from conftest import run_gateway
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from vendor_cases import chat_request

    from provider_gateway.fakes import FakeUpstream, Reply
    from provider_gateway.fakes.anthropic import FakeAnthropic

    async with FakeUpstream() as openai, FakeAnthropic() as anthropic:
        openai.on("GET", "/v1/models", lambda _: Reply.json({"object": "list", "data": []}))
        text = on_loopback(CONFIG_TEXT, openai_url=openai.url, anthropic_url=anthropic.base_url)
        for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
            monkeypatch.delenv(name, raising=False)
        async with run_gateway(text) as gateway:
            health = health_pb2_grpc.HealthStub(gateway.channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(service=HEALTH_SERVICE), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("ANTHROPIC_API_KEY", anthropic.api_key)
        async with run_gateway(text) as gateway:
            health = health_pb2_grpc.HealthStub(gateway.channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(service=HEALTH_SERVICE), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            answer = await gateway.stub.Chat(chat_request("smart"), timeout=20)  # the alias to Claude
            assert answer.text
            assert answer.finish.provider == "anthropic"


async def kubelet_probe(probe: dict[str, Any], port: int) -> bool:
    """Run a Deployment probe as the kubelet does, against a gateway listening on `port` (the
    probe's container port mapped to it): a TCP connect, or a gRPC health check."""
    import asyncio

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    if "tcpSocket" in probe:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        except OSError:
            return False
        writer.close()
        await writer.wait_closed()
        return True
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        request = health_pb2.HealthCheckRequest(service=probe["grpc"].get("service", ""))
        reply = await health_pb2_grpc.HealthStub(channel).Check(request, timeout=5)
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


# Readiness (the ProviderService entry) as the shipped config defines it: SERVING while at least one
# real provider can serve; a provider without its key, or whose upstream is down, does not count.
READINESS_CASES = [
    # (OpenAI key set, OpenAI reachable, Anthropic key set, readiness)
    (True, True, False, "SERVING"),
    (False, True, True, "SERVING"),
    (True, False, True, "SERVING"),
    (True, False, False, "NOT_SERVING"),
    (False, True, False, "NOT_SERVING"),
]


@pytest.mark.parametrize(("openai_key", "openai_up", "anthropic_key", "ready"), READINESS_CASES)
async def test_readiness_means_one_real_provider_can_serve(
    monkeypatch: pytest.MonkeyPatch, openai_key: bool, openai_up: bool, anthropic_key: bool, ready: str
) -> None:
    import socket

    from conftest import run_gateway
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from provider_gateway.fakes import FakeUpstream, kinds
    from provider_gateway.fakes.anthropic import FakeAnthropic

    with socket.socket() as probe:  # a port nothing listens on: an upstream that is down
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    async with FakeUpstream() as openai, FakeAnthropic() as anthropic:
        kinds.openai(openai)
        openai_url = openai.url if openai_up else closed
        text = on_loopback(CONFIG_TEXT, openai_url=openai_url, anthropic_url=anthropic.base_url)
        for name, value, wanted in (
            ("OPENAI_API_KEY", "sk-test", openai_key),
            ("ANTHROPIC_API_KEY", anthropic.api_key, anthropic_key),
        ):
            if wanted:
                monkeypatch.setenv(name, value)
            else:
                monkeypatch.delenv(name, raising=False)
        async with run_gateway(text) as gateway:
            health = health_pb2_grpc.HealthStub(gateway.channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(service=HEALTH_SERVICE), timeout=10)
            assert health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status) == ready
            each = {
                name: await health.Check(
                    health_pb2.HealthCheckRequest(service=f"provider/{name}"), timeout=10
                )
                for name in ("openai", "anthropic")
            }
            serving = health_pb2.HealthCheckResponse.SERVING
            assert (each["openai"].status == serving) == (openai_key and openai_up)
            assert (each["anthropic"].status == serving) == anthropic_key
            # What the kubelet would conclude from the Deployment's own probes: ready as above, and
            # started and alive in every case, so no provider state ever restarts the pod.
            for probe, passes in (
                ("readinessProbe", ready == "SERVING"),
                ("startupProbe", True),
                ("livenessProbe", True),
            ):
                assert await kubelet_probe(CONTAINER[probe], gateway.server.port) == passes, probe
