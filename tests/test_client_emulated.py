"""Both clients show `Finish.emulated`: the request fields the provider could not honour natively
and the gateway emulated (docs/capabilities.md). Through the real server on the Anthropic fake: a
JSON schema on a Claude model before 4.5 is answered through a forced tool (emulated), the same
schema on Claude Sonnet 4.5 natively (nothing emulated)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import RunningGateway, run_gateway
from google.protobuf import struct_pb2
from test_node_client import run_node

from provider_gateway.fakes.anthropic import FakeAnthropic
from provider_gateway_client import Finished, GatewayClient, pb

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
EMULATED = "anthropic/claude-3-5-haiku-20241022"  # no structured outputs: a forced tool
NATIVE = "anthropic/claude-sonnet-4-5"  # `output_config.format`


@pytest.fixture(scope="module")
async def gateway() -> AsyncIterator[RunningGateway]:
    async with FakeAnthropic() as fake:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PG_CE_ANTHROPIC", fake.api_key)
            config = f'[providers.anthropic]\nbase_url = "{fake.base_url}"\napi_key_env = "PG_CE_ANTHROPIC"\n'
            async with run_gateway(config) as running:
                yield running
        assert fake.problems == []


def schema_format() -> pb.ResponseFormat:
    struct = struct_pb2.Struct()
    struct.update(SCHEMA)
    return pb.ResponseFormat(type=pb.ResponseFormat.TYPE_JSON_SCHEMA, schema_name="w", json_schema=struct)


@pytest.mark.parametrize(("model", "emulated"), [(EMULATED, ("response_format",)), (NATIVE, ())])
async def test_python_client_results_and_stream_events_name_the_emulated_fields(
    gateway: RunningGateway, model: str, emulated: tuple[str, ...]
) -> None:
    async with GatewayClient(gateway.target, timeout=30) as client:
        whole = await client.chat(model, "Weather?", response_format=schema_format())
        events = [e async for e in client.chat_stream(model, "Weather?", response_format=schema_format())]
    assert whole.finish is not None
    assert whole.finish.emulated == emulated
    assert "city" in json.loads(whole.text)  # the forced tool's input, returned as the text
    finish = events[-1]
    assert isinstance(finish, Finished)
    assert finish.emulated == emulated


NODE_SCRIPT = """
const { GatewayClient, collect } = require('.');
const client = new GatewayClient(process.argv[1]);
const schema = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] };
const ask = (model) => ({
  model, prompt: 'Weather?',
  responseFormat: { type: 'TYPE_JSON_SCHEMA', schemaName: 'w', jsonSchema: schema },
});
(async () => {
  const out = {};
  for (const model of process.argv.slice(2)) {
    const whole = await client.chat(ask(model));
    const streamed = await collect(client.chatStream(ask(model)));
    out[model] = { whole: whole.finish.emulated, streamed: streamed.finish.emulated, text: whole.text };
  }
  client.close();
  process.stdout.write(JSON.stringify(out));
})().catch((error) => { process.stderr.write(String(error.stack)); process.exit(1); });
"""


async def test_node_client_finish_names_the_emulated_fields(gateway: RunningGateway) -> None:
    code, out, err = await run_node("-e", NODE_SCRIPT, gateway.target, EMULATED, NATIVE)
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    assert result[EMULATED]["whole"] == result[EMULATED]["streamed"] == ["response_format"]
    assert result[NATIVE]["whole"] == result[NATIVE]["streamed"] == []
    assert "city" in json.loads(result[EMULATED]["text"])
