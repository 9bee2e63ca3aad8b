"""Recorded embedding answers (tests/replay/embeddings, one whole answer a file, its vendor named by
the file's prefix) served byte for byte from a fake upstream on 127.0.0.1, through the real
gateway's Embed, compared with what the vendor's official SDK reads from the same bytes: the
vectors (values, order by input, count, width), the input token count and the model.

The gateway's documented mappings: a vector's values are the proto's `float` (float32: the SDK's
float64 reading rounded to it), in input order; usage a vendor does not report is a local estimate
marked `estimated` (docs/capabilities.md)."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import openai
import pytest
from google.genai import errors as genai_errors
from mistralai.client import Mistral
from replay.sdk_clients import bedrock_runtime, google_client
from replay.support import (
    KEY,
    VERTEX_MODELS,
    bedrock_gateway,
    replay,
    replay_gateway,
    vertex_gateway,
)
from replay.support import cases as replay_cases

from provider_gateway.fakes import FakeUpstream
from provider_gateway.v1 import provider_service_pb2 as pb

# google-genai's own aiohttp session subclass warns on import; nothing of the gateway's.
pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")


@dataclass
class Vectors:
    """An Embed answer as a user reads it."""

    vectors: list[tuple[float, ...]]
    input_tokens: int
    estimated: bool
    model: str


def f32(values: Any) -> tuple[float, ...]:
    """Values as the proto's `float` carries them."""
    return tuple(struct.unpack("f", struct.pack("f", float(v)))[0] for v in values)


def gateway_vectors(answer: pb.EmbedResponse) -> Vectors:
    assert [e.index for e in answer.embeddings] == list(range(len(answer.embeddings)))
    return Vectors(
        [tuple(e.values) for e in answer.embeddings],
        answer.usage.input_tokens,
        answer.usage.estimated,
        answer.model,
    )


def texts(count: int) -> list[str]:
    return [f"Text number {n} to embed." for n in range(count)]


@dataclass(frozen=True)
class Host:
    """Where a vendor's embeddings are served, the gateway that reaches them, the model asked, and
    how the vendor's SDK reads an answer (`read(fake, inputs, recorded)`: the inputs the recording
    answers, its bytes)."""

    gateway: Callable[[], Any]
    path: str
    model: str
    read: Callable[[FakeUpstream, list[str], bytes], Awaitable[Vectors]]
    dimensions: int = 0
    size_field: str = "dimensions"  # what an `/embeddings` request names the size


def openai_reader(base: str, model: str) -> Callable[[FakeUpstream, list[str], bytes], Awaitable[Vectors]]:
    async def read(fake: FakeUpstream, inputs: list[str], recorded: bytes) -> Vectors:
        client = openai.AsyncOpenAI(base_url=f"{fake.url}{base}", api_key=KEY, max_retries=0)
        answer = await client.embeddings.create(model=model, input=inputs)
        rows = sorted(answer.data, key=lambda row: row.index)  # the SDK keeps the body's order
        tokens = answer.usage.prompt_tokens if answer.usage else -1  # Together's: none
        return Vectors([f32(row.embedding) for row in rows], tokens, False, answer.model)

    return read


def mistral_reader(
    model: str, dimensions: int = 0
) -> Callable[[FakeUpstream, list[str], bytes], Awaitable[Vectors]]:
    return lambda fake, inputs, recorded: mistral_read(fake, inputs, model, dimensions)


async def mistral_read(fake: FakeUpstream, inputs: list[str], model: str, dimensions: int) -> Vectors:
    client = Mistral(api_key=KEY, server_url=fake.url)
    size = {"output_dimension": dimensions} if dimensions else {}
    answer = await client.embeddings.create_async(model=model, inputs=inputs, **size)
    rows = sorted(answer.data, key=lambda row: row.index or 0)
    return Vectors(
        [f32(row.embedding or []) for row in rows], answer.usage.prompt_tokens or 0, False, answer.model
    )


async def gemini_read(fake: FakeUpstream, inputs: list[str], recorded: bytes) -> Vectors:
    answer = await google_client(fake).aio.models.embed_content(model="gemini-embedding-001", contents=inputs)
    # batchEmbedContents reports no usage: the gateway's documented local estimate.
    assert answer.usage_metadata is None
    vectors = [f32(e.values or []) for e in answer.embeddings or []]
    return Vectors(vectors, -1, True, "gemini-embedding-001")


async def vertex_read(fake: FakeUpstream, inputs: list[str], recorded: bytes) -> Vectors:
    answer = await google_client(fake, vertex=True).aio.models.embed_content(
        model="text-embedding-005", contents=inputs
    )
    embeddings = answer.embeddings or []
    tokens = sum(int(e.statistics.token_count or 0) for e in embeddings if e.statistics)
    return Vectors([f32(e.values or []) for e in embeddings], tokens, False, "text-embedding-005")


def documented_read(
    vectors_at: Callable[[Any], list[Any]], tokens_at: Callable[[Any], int], model: str
) -> Any:
    """For vendors without an installed SDK: the fields their API reference documents."""

    async def read(fake: FakeUpstream, inputs: list[str], recorded: bytes) -> Vectors:
        body = json.loads(recorded)
        return Vectors([f32(v) for v in vectors_at(body)], tokens_at(body), False, model)

    return read


def bedrock_reader(model: str) -> Callable[[FakeUpstream, list[str], bytes], Awaitable[Vectors]]:
    """botocore's InvokeModel (in a thread: it blocks, and the fake answers on this loop): the body
    as the model's JSON, Titan's one text a call, Cohere's every text in one."""

    async def read(fake: FakeUpstream, inputs: list[str], recorded: bytes) -> Vectors:
        def run() -> list[Any]:
            client = bedrock_runtime(fake, "us-east-1")
            texts = [[text] for text in inputs] if "titan" in model else [inputs]
            bodies = []
            for batch in texts:
                asked = (
                    {"inputText": batch[0]}
                    if "titan" in model
                    else {"texts": batch, "input_type": "search_document"}
                )
                answer = client.invoke_model(modelId=model, body=json.dumps(asked))
                bodies.append(json.loads(answer["body"].read()))
            return bodies

        bodies = await asyncio.to_thread(run)
        if "titan" in model:
            return Vectors(
                [f32(b["embedding"]) for b in bodies],
                sum(b["inputTextTokenCount"] for b in bodies),
                False,
                "",
            )
        return Vectors([f32(v) for v in bodies[0]["embeddings"]["float"]], -1, True, "")  # no token count

    return read


TITAN = "amazon.titan-embed-text-v2:0"
COHERE_V3 = "cohere.embed-english-v3"
HOSTS = {
    "bedrock_titan": Host(
        lambda: bedrock_gateway("us-east-1"),
        f"/model/{TITAN}/invoke",
        TITAN,
        bedrock_reader(TITAN),
        dimensions=256,
    ),
    "bedrock_cohere": Host(
        lambda: bedrock_gateway("us-east-1"),
        f"/model/{COHERE_V3}/invoke",
        COHERE_V3,
        bedrock_reader(COHERE_V3),
    ),
    "openai": Host(
        lambda: replay_gateway("openai", "/v1"),
        "/v1/embeddings",
        "text-embedding-3-small",
        openai_reader("/v1", "text-embedding-3-small"),
    ),
    "azure": Host(
        lambda: replay_gateway("azure"),
        "/openai/deployments/text-embedding-3-small/embeddings",
        "text-embedding-3-small",
        openai_reader("/openai/deployments/text-embedding-3-small", "text-embedding-3-small"),
    ),
    "mistral": Host(
        lambda: replay_gateway("mistral", "/v1"),
        "/v1/embeddings",
        "mistral-embed",
        mistral_reader("mistral-embed"),
    ),
    # Mistral's size is `output_dimension` (codestral-embed), as its SDK sends it; on
    # api.mistral.ai, where the SDK embeds (no separate Codestral host).
    "mistral_codestral": Host(
        lambda: replay_gateway("mistral", "/v1", extra='codestral_base_url = ""'),
        "/v1/embeddings",
        "codestral-embed",
        mistral_reader("codestral-embed", 256),
        dimensions=256,
        size_field="output_dimension",
    ),
    "together": Host(
        lambda: replay_gateway("together", "/v1"),
        "/v1/embeddings",
        "togethercomputer/m2-bert-80M-32k-retrieval",
        openai_reader("/v1", "togethercomputer/m2-bert-80M-32k-retrieval"),
    ),
    "gemini": Host(
        lambda: replay_gateway("gemini"),
        "/v1beta/models/gemini-embedding-001:batchEmbedContents",
        "gemini-embedding-001",
        gemini_read,
        dimensions=128,
    ),
    "vertex": Host(
        vertex_gateway,
        VERTEX_MODELS.format(publisher="google", model="text-embedding-005") + ":predict",
        "text-embedding-005",
        vertex_read,
        dimensions=64,
    ),
    "cohere": Host(
        lambda: replay_gateway("cohere"),
        "/v2/embed",
        "embed-v4.0",
        documented_read(
            lambda b: b["embeddings"]["float"], lambda b: b["meta"]["billed_units"]["input_tokens"], ""
        ),
    ),
    "ollama": Host(
        lambda: replay_gateway("ollama"),
        "/api/embed",
        "all-minilm",
        documented_read(lambda b: b["embeddings"], lambda b: b["prompt_eval_count"], "all-minilm"),
    ),
}
# Recordings answering a request for fewer dimensions than the model's default.
DIMENSIONS = {"openai_dimensions": 8}


def cases(*, errors: bool = False) -> list[Any]:
    return replay_cases("embeddings", ".json", errors=errors)


def body_of(path: Path) -> bytes:
    return path.read_bytes()


def host_of(path: Path) -> tuple[str, Host]:
    key = next(k for k in sorted(HOSTS, key=len, reverse=True) if path.name.startswith(f"{k}_"))
    return key, HOSTS[key]


@pytest.mark.parametrize("path", cases())
async def test_embed_matches_sdk(path: Path) -> None:
    key, host = host_of(path)
    async with host.gateway() as (fake, stub):
        fake.script(host.path, *[replay(path, "application/json")] * 2)
        recorded = body_of(path)
        rows = json.loads(recorded)
        count = len(rows.get("data") or rows.get("embeddings") or rows.get("predictions") or [])
        if "inputTextTokenCount" in rows:  # Titan's: one text a call
            count = 1
        if isinstance(rows.get("embeddings"), dict):  # Cohere's, by type
            count = len(rows["embeddings"]["float"])
        inputs = texts(count)
        dimensions = DIMENSIONS.get(path.stem, host.dimensions)
        answer = await stub.Embed(
            pb.EmbedRequest(model=f"{key.split('_')[0]}/{host.model}", inputs=inputs, dimensions=dimensions),
            timeout=20,
        )
        ours = gateway_vectors(answer)
        asked = fake.last(host.path).json()
        if "/embeddings" in host.path:  # the floats the recording holds, the size the client asked
            assert asked.get("encoding_format", "float") == "float"
            assert asked.get(host.size_field, 0) == dimensions
            assert set(asked) <= {"model", "input", host.size_field}
        theirs = await host.read(fake, inputs, recorded)
    assert len(ours.vectors) == len(inputs)
    assert ours.vectors == theirs.vectors
    if dimensions:
        assert {len(v) for v in ours.vectors} == {dimensions}
    if theirs.input_tokens >= 0:
        assert (ours.input_tokens, ours.estimated) == (theirs.input_tokens, theirs.estimated)
    else:  # no figure from the vendor: a local estimate, said to be one
        assert ours.estimated
        assert ours.input_tokens > 0
    if theirs.model:
        assert ours.model == theirs.model


# Error recordings: how many inputs the request that drew each had.
ERROR_INPUTS = {"gemini_too_many": 101}  # Gemini's batchEmbedContents takes at most 100


@pytest.mark.parametrize("path", cases(errors=True))
async def test_embed_error_matches_sdk(path: Path) -> None:
    """The vendor's refusal as a status a client can act on, in the vendor's words: never vectors."""
    key, host = host_of(path)
    status = int(path.suffixes[0].lstrip("."))
    inputs = texts(ERROR_INPUTS[path.name.split(".")[0]])
    async with host.gateway() as (fake, stub):
        fake.script(host.path, *[replay(path, "application/json", status)] * 2)
        with pytest.raises(grpc.aio.AioRpcError) as ours:
            await stub.Embed(
                pb.EmbedRequest(model=f"{key.split('_')[0]}/{host.model}", inputs=inputs), timeout=20
            )
        with pytest.raises(genai_errors.APIError) as theirs:
            await host.read(fake, inputs, body_of(path))
    assert theirs.value.code == status
    assert ours.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (theirs.value.message or "").strip() in ours.value.details()
