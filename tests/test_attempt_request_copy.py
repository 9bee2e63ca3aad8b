"""An attempt sends the deployment's model id, and every other field of the request as the client
gave it: the router's copy of a request renamed for a deployment (`provider/model`, an alias)."""

from __future__ import annotations

import dataclasses

import pytest

from provider_gateway import domain as d
from provider_gateway.routing.attempts import _for_model


@pytest.mark.parametrize("kind", [d.ChatRequest, d.CompletionRequest])
def test_a_renamed_request_keeps_every_other_field(kind: type[d.ChatRequest | d.CompletionRequest]) -> None:
    # A distinct object in every field, so that a field left out, swapped or copied shows.
    values = {f.name: object() for f in dataclasses.fields(kind)}
    values["model"] = "openai/gpt-4o"
    request = kind(**values)

    renamed = _for_model(request, "gpt-4o")

    assert type(renamed) is kind
    assert renamed.model == "gpt-4o"
    assert request.model == "openai/gpt-4o"  # the client's request is left as it was
    for name, value in values.items():
        if name != "model":
            assert getattr(renamed, name) is value, name
    assert renamed == dataclasses.replace(request, model="gpt-4o")


def test_a_request_already_naming_the_model_is_not_copied() -> None:
    request = d.ChatRequest(model="gpt-4o", messages=[])
    assert _for_model(request, "gpt-4o") is request


def test_a_kind_not_listed_is_copied_the_general_way() -> None:
    @dataclasses.dataclass(slots=True)
    class Tagged(d.ChatRequest):
        tag: str = ""

    renamed = _for_model(Tagged(model="openai/gpt-4o", messages=[], tag="x"), "gpt-4o")
    assert type(renamed) is Tagged
    assert (renamed.model, renamed.tag) == ("gpt-4o", "x")
