"""The Node client as an SDK: typed errors with retryAfter, camelCase plain-JSON results (usage.raw
a plain object, not a Struct), a publishable package, and its README's code running as written."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import RunningGateway, run_gateway
from processes import run_process
from test_cli_options import make_pki, trust_files
from test_node_client import NODE, NODE_DIR, run_node
from test_tls import Issued, tls_config, write_server_files

from provider_gateway.server.auth import hash_key

KEY = "node-key-0123456789abcdefghijklmnopqrs"
CONFIG = f"""
[routing]
retries = 0
[providers.mock.models.limited]
fault = "rate_limit"
retry_after_ms = 1500
[auth]
[[auth.keys]]
name = "echo-only"
sha256 = "{hash_key(KEY)}"
models = ["mock/echo", "mock/limited", "mock/no-such-model"]
"""

ERRORS_SCRIPT = """
const sdk = require('.');
const client = new sdk.GatewayClient(process.argv[1], { apiKey: process.argv[2] });
const anonymous = new sdk.GatewayClient(process.argv[1]);
const describe = (error) => ({
  class: error.constructor.name, isGatewayError: error instanceof sdk.GatewayError,
  code: error.code, codeName: error.codeName, details: error.details, retryAfter: error.retryAfter,
  hasCause: error.cause !== undefined,
});
const failure = (promise) => promise.then(() => null, describe);
async function streamFailure(stream) {
  try { for await (const _ of stream); } catch (error) { return describe(error); }
  return null;
}
(async () => {
  const out = {
    notFound: await failure(client.chat({ model: 'mock/no-such-model', prompt: 'x' })),
    limited: await failure(client.chat({ model: 'mock/limited', prompt: 'x' })),
    limitedStream: await streamFailure(client.chatStream({ model: 'mock/limited', prompt: 'x' })),
    denied: await failure(client.chat({ model: 'mock/reasoner', prompt: 'x' })),
    anonymous: await failure(anonymous.chat({ model: 'mock/echo', prompt: 'x' })),
    invalid: await failure(client.chat({ model: 'mock/echo' })),
  };
  client.close();
  anonymous.close();
  process.stdout.write(JSON.stringify(out));
})().catch((error) => { process.stderr.write(String(error.stack)); process.exit(1); });
"""


async def test_node_errors_are_typed_with_code_details_and_retry_after() -> None:
    async with run_gateway(CONFIG) as gw:
        code, out, err = await run_node("-e", ERRORS_SCRIPT, gw.target, KEY)
    assert code == 0, err
    result = json.loads(out)
    assert {name: e["class"] for name, e in result.items()} == {
        "notFound": "NotFoundError",
        "limited": "RateLimitError",
        "limitedStream": "RateLimitError",
        "denied": "PermissionDeniedError",
        "anonymous": "AuthenticationError",
        "invalid": "InvalidRequestError",
    }
    assert all(e["isGatewayError"] and e["hasCause"] for e in result.values())
    assert (result["notFound"]["code"], result["notFound"]["codeName"]) == (5, "NOT_FOUND")
    assert "no-such-model" in result["notFound"]["details"]
    assert result["notFound"]["retryAfter"] is None
    assert result["limited"]["retryAfter"] == result["limitedStream"]["retryAfter"] == 1.5
    assert result["limited"]["codeName"] == "RESOURCE_EXHAUSTED"


RETRY_INFO_SCRIPT = """
const { gatewayError, RateLimitError, grpc } = require('.');
const metadata = new grpc.Metadata();
metadata.set('grpc-status-details-bin', Buffer.from(process.argv[1], 'hex'));
const error = gatewayError({ code: grpc.status.RESOURCE_EXHAUSTED, details: 'slow down', metadata });
process.stdout.write(JSON.stringify({ typed: error instanceof RateLimitError, retryAfter: error.retryAfter }));
"""


async def test_node_reads_retry_after_from_retry_info_alone() -> None:
    from google.protobuf import duration_pb2
    from google.rpc import error_details_pb2, status_pb2

    status = status_pb2.Status(code=8, message="slow down")
    status.details.add().Pack(
        error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=2, nanos=500_000_000))
    )
    code, out, err = await run_node("-e", RETRY_INFO_SCRIPT, status.SerializeToString().hex())
    assert code == 0, err
    assert json.loads(out) == {"typed": True, "retryAfter": 2.5}


def keys(value: object) -> list[str]:
    """Every key of a JSON value, nested ones included, except inside `raw`."""
    if isinstance(value, list):
        return [k for item in value for k in keys(item)]
    if isinstance(value, dict):
        return [k for key, item in value.items() for k in [key, *([] if key == "raw" else keys(item))]]
    return []


PLAIN_SCRIPT = """
const { GatewayClient, collect } = require('.');
const client = new GatewayClient(process.argv[1]);
(async () => {
  const tool = { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } };
  const whole = await client.chat({ model: 'mock/tools', prompt: 'weather?', tools: [tool] });
  const streamed = await collect(client.chatStream({ model: 'mock/echo', prompt: 'hi' }));
  const completion = await client.complete({ model: 'mock/echo', prompt: 'once', maxTokens: 2 });
  client.close();
  process.stdout.write(JSON.stringify({ whole, streamed, completion }));
})().catch((error) => { process.stderr.write(String(error.stack)); process.exit(1); });
"""


async def test_node_results_are_camel_case_with_plain_usage(gateway: RunningGateway) -> None:
    code, out, err = await run_node("-e", PLAIN_SCRIPT, gateway.target)
    assert code == 0, err
    result = json.loads(out)
    whole, streamed, completion = result["whole"], result["streamed"], result["completion"]
    for usage in (whole["usage"], streamed["usage"], completion["usage"]):
        assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
        assert usage["raw"] == {
            "prompt_tokens": usage["inputTokens"],
            "completion_tokens": usage["outputTokens"],
        }
    assert whole["toolCalls"][0]["name"] == "get_weather"
    assert json.loads(whole["toolCalls"][0]["argumentsJson"])["city"] == "Paris"
    assert whole["finish"]["rawFinishReason"] == "tool_calls"
    assert whole["finish"]["timing"]["totalUs"] > 0
    assert completion["text"] == "Mock answer:"
    # camelCase everywhere a user reads (usage.raw is the provider's own object, kept as sent).
    assert not [key for key in keys(result) if "_" in key]


def test_node_package_is_publishable_with_its_proto() -> None:
    package = json.loads((NODE_DIR / "package.json").read_text())
    assert "private" not in package
    assert {"index.js", "errors.js", "convert.js", "index.d.ts", "proto/"} <= set(package["files"])


def js_blocks() -> list[tuple[str, str | None]]:
    """(code, the `text` block right after it or None) for each js block of the README, in order."""
    blocks = re.findall(r"```(\w+)\n(.*?)```", (NODE_DIR / "README.md").read_text(), re.DOTALL)
    found = []
    for i, (language, body) in enumerate(blocks):
        if language == "js":
            after = blocks[i + 1] if i + 1 < len(blocks) else None
            found.append((body, after[1] if after and after[0] == "text" else None))
    return found


async def run_block(block: str, target: str) -> tuple[int, str, str]:
    """A README block as a user runs it: from the repository root, the target from the environment."""
    assert NODE
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVIDER_GATEWAY_")}
    env["PROVIDER_GATEWAY_TARGET"] = target
    return await run_process(NODE, "-e", block, cwd=NODE_DIR.parent.parent, env=env, timeout_s=30)


async def test_node_readme_blocks_print_what_the_readme_says(gateway: RunningGateway) -> None:
    checked = [(code, expected) for code, expected in js_blocks() if expected]
    assert len(checked) >= 1
    for block, expected in checked:
        code, out, err = await run_block(block, gateway.target)
        assert code == 0, err
        lines = out.splitlines()
        for want in expected.splitlines():
            assert want in lines, f"{want!r} not in the output:\n{out}"
            lines = lines[lines.index(want) + 1 :]


async def test_node_readme_block_runs_from_the_repository_root(gateway: RunningGateway) -> None:
    block = js_blocks()[0][0]
    code, out, err = await run_block(block, gateway.target)
    assert code == 0, err
    assert out.startswith("Mock answer: Hello")
    assert "mock/echo FINISH_REASON_STOP" in out
    assert "completion_tokens: 2" in out  # usage.raw printed as a plain object
    assert 'get_weather({"city":"Paris","unit":"celsius"})' in out
    assert "NOT_FOUND null" in out
    assert out.rstrip().endswith("SERVING")


async def test_node_example_takes_its_target_from_the_environment(gateway: RunningGateway) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVIDER_GATEWAY_")}
    env["PROVIDER_GATEWAY_TARGET"] = gateway.target
    assert NODE
    code, out, err = await run_process(
        NODE, "examples/chat.js", "hello", "from", "env", cwd=NODE_DIR, env=env
    )
    assert code == 0, err
    assert out.startswith("Mock answer: hello from env")


TLS_SCRIPT = """
const { GatewayClient } = require('.');
const [target, ca, cert, key] = process.argv.slice(1);
const fromEnv = new GatewayClient(target, { maxRetries: 0 }); // PROVIDER_GATEWAY_CA_FILE, _CERT_FILE, _KEY_FILE
const fromOptions = new GatewayClient(target, { caFile: ca, certFile: cert, keyFile: key, maxRetries: 0 });
const plain = new GatewayClient(target, { tls: false, maxRetries: 0, deadlineMs: 5000 });
const outcome = (promise) => promise.then((r) => r.text || r, (error) => error.codeName);
(async () => {
  const out = {
    fromEnv: await outcome(fromEnv.chat({ model: 'mock/echo', prompt: 'Hi', maxTokens: 3 })),
    fromOptions: await outcome(fromOptions.health()),
    plain: await outcome(plain.health()),
  };
  [fromEnv, fromOptions, plain].forEach((client) => client.close());
  process.stdout.write(JSON.stringify(out));
})().catch((error) => { process.stderr.write(String(error.stack)); process.exit(1); });
"""


@pytest.fixture(scope="module")
def pki() -> dict[str, Issued]:
    return make_pki()


async def test_node_tls_and_mutual_tls_from_the_environment_or_options(tmp_path: Path, pki) -> None:
    files = trust_files(tmp_path, pki)
    ca, cert, key = files["server-ca.crt"], files["client.crt"], files["client.key"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVIDER_GATEWAY_")}
    env |= {
        "PROVIDER_GATEWAY_CA_FILE": ca,
        "PROVIDER_GATEWAY_CERT_FILE": cert,
        "PROVIDER_GATEWAY_KEY_FILE": key,
    }
    assert NODE
    async with run_gateway(tls_config(write_server_files(tmp_path, pki), require_client_cert=True)) as gw:
        code, out, err = await run_process(
            NODE, "-e", TLS_SCRIPT, gw.target, ca, cert, key, cwd=NODE_DIR, env=env, timeout_s=60
        )
    assert code == 0, err
    assert json.loads(out) == {"fromEnv": "Mock answer: Hi", "fromOptions": "SERVING", "plain": "UNAVAILABLE"}


KEY_FILE_SCRIPT = """
const { GatewayClient } = require('.');
const client = new GatewayClient(process.argv[1]); // PROVIDER_GATEWAY_API_KEY_FILE
client.chat({ model: 'mock/echo', prompt: 'from a file', maxTokens: 5 })
  .then((answer) => answer.text, (error) => error.codeName)
  .then((out) => { client.close(); process.stdout.write(out); });
"""


async def test_node_key_from_a_file_named_in_the_environment(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(KEY + "\n")  # a mounted secret, newline and all
    (tmp_path / "empty").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVIDER_GATEWAY_")}
    assert NODE
    async with run_gateway(CONFIG) as gw:
        with_key = {**env, "PROVIDER_GATEWAY_API_KEY_FILE": str(tmp_path / "key")}
        code, out, err = await run_process(NODE, "-e", KEY_FILE_SCRIPT, gw.target, cwd=NODE_DIR, env=with_key)
        assert (code, out) == (0, "Mock answer: from a file"), err
        code, out, err = await run_process(NODE, "-e", KEY_FILE_SCRIPT, gw.target, cwd=NODE_DIR, env=env)
        assert (code, out) == (0, "UNAUTHENTICATED"), err  # the key came from the file
        empty = {**env, "PROVIDER_GATEWAY_API_KEY_FILE": str(tmp_path / "empty")}
        code, out, err = await run_process(NODE, "-e", KEY_FILE_SCRIPT, gw.target, cwd=NODE_DIR, env=empty)
        assert code != 0
        assert "API key file" in err
        assert "is empty" in err


HALF_MTLS_SCRIPT = """
const { GatewayClient } = require('.');
try {
  new GatewayClient(process.argv[1], process.argv[2] ? { keyFile: process.argv[2] } : {}).close();
  process.stdout.write('connected');
} catch (error) {
  process.stdout.write(error.message);
}
"""


async def test_node_key_file_without_its_certificate_is_refused_not_ignored(tmp_path: Path) -> None:
    """A key file alone (option or PROVIDER_GATEWAY_KEY_FILE) made a plaintext channel: mutual TLS
    asked for, silently skipped."""
    (tmp_path / "client.key").write_text("a key\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVIDER_GATEWAY_")}
    assert NODE
    refused = "mutual TLS needs both a client certificate file and its key file"
    for args, run_env in (
        ((str(tmp_path / "client.key"),), env),
        ((), {**env, "PROVIDER_GATEWAY_KEY_FILE": str(tmp_path / "client.key")}),
    ):
        code, out, err = await run_process(
            NODE, "-e", HALF_MTLS_SCRIPT, "127.0.0.1:1", *args, cwd=NODE_DIR, env=run_env
        )
        assert (code, out) == (0, refused), err
