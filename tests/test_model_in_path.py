"""A model name the caller chooses never leaves its segment of the upstream URL.

Gemini, Vertex, Azure (deployment paths) and Bedrock put the model id in the request's path. A
caller who names a model `../../v1/files`, `x?key=k#` or `..` must not reach another of the
vendor's endpoints with the gateway's credentials, nor add a query: the id is sent as one
percent-encoded segment, and `.`/`..` are refused as the bad argument they are.
"""

from __future__ import annotations

import urllib.parse

import grpc
import pytest
from conftest import run_gateway, use_fake_aws_credentials
from vendor_cases import chat_request

from provider_gateway.fakes import FakeUpstream, Reply

TRICKS = ("../../v1/files", "x?key=k#", "a/b%2F..%2Fc")

KINDS = {
    "gemini": ('kind = "gemini"\nbase_url = "{url}"\napi_key_env = "PATH"\n', "/v1beta/models/"),
    "vertex": (
        'kind = "vertex"\nproject = "p"\nlocation = "l"\nbase_url = "{url}"\naccess_token_env = "PATH"\n',
        "/v1/projects/p/locations/l/publishers/google/models/",
    ),
    "azure": ('kind = "azure"\nbase_url = "{url}"\napi_key_env = "PATH"\n', "/openai/deployments/"),
    "bedrock": ('kind = "bedrock"\nregion = "us-west-2"\nendpoint_url = "{url}"\n', "/model/"),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_a_model_id_is_one_path_segment_and_dot_segments_are_refused(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_fake_aws_credentials(monkeypatch)
    table, prefix = KINDS[kind]
    async with FakeUpstream() as fake:
        fake.on("*", "/*", lambda r: Reply.error(404, {"error": {"message": "no such model"}}))
        async with run_gateway(f"[providers.{kind}]\n" + table.format(url=fake.url)) as gateway:
            for model in TRICKS:
                with pytest.raises(grpc.aio.AioRpcError):
                    await gateway.stub.Chat(chat_request(f"{kind}/{model}"), timeout=30)
                sent = fake.requests[-1]
                assert sent.raw_path.startswith(prefix), sent.raw_path
                segment = sent.raw_path[len(prefix) :].split("/", 1)[0].split(":", 1)[0]
                assert urllib.parse.unquote(segment) == model, (sent.raw_path, model)
                assert "key" not in sent.query
            seen = len(fake.requests)
            for model in ("..", "."):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await gateway.stub.Chat(chat_request(f"{kind}/{model}"), timeout=30)
                assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
                assert f"{model!r} is not a name {kind} can serve" in (caught.value.details() or "")
            assert len(fake.requests) == seen  # refused before anything was sent
