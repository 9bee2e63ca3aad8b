"""Value types (`domain.value`): built as plain slotted dataclasses (a frozen one's construction costs
about 1.6k instructions a field), they must still behave as the frozen dataclasses they replace:
equal and hashable by value, copied with `dataclasses.replace`, and never assigned (mypy refuses it)."""

from __future__ import annotations

import dataclasses
import inspect
import sys
import textwrap
from pathlib import Path

import pytest
from mypy import api as mypy_api

from provider_gateway import domain
from provider_gateway.domain import (
    Attempt,
    Cost,
    Finish,
    FinishReason,
    ProviderFinish,
    TextDelta,
    Timing,
)
from provider_gateway.routing.attempt import AttemptInfo

ROOT = Path(__file__).resolve().parents[1]

SAMPLES = [
    TextDelta("hello"),
    ProviderFinish(FinishReason.LENGTH, "length", "gpt-4o-mini", "id-2", ("stop",)),
    Cost(12, True, "provider"),
    Timing(1, 2, 3, 4),
    Attempt("openai", "gpt-4o-mini", "ok", "", 120, Cost(1, True, "provider")),
    Finish(FinishReason.STOP, "stop", "openai", "gpt-4o-mini", Timing(1, 2, 3, 4), (), "id-1"),
    AttemptInfo(1, "default/openai/gpt-4o-mini", "closed"),
    AttemptInfo(2, "default/openai/gpt-4o-mini", "open", print, print),  # with sinks, as the router sets it
]


def frozen_twin(value: object) -> object:
    """The same fields in a frozen slotted dataclass of the same name: the general path. A field
    kept out of comparisons and printing (AttemptInfo's sinks) is kept out of the twin's too."""
    cls = type(value)
    twin = dataclasses.make_dataclass(
        cls.__name__,
        [
            (f.name, f.type, dataclasses.field(compare=f.compare, repr=f.repr, hash=f.hash))
            for f in dataclasses.fields(cls)
        ],
        frozen=True,
        slots=True,
    )
    return twin(*(getattr(value, f.name) for f in dataclasses.fields(cls)))


@pytest.mark.parametrize("value", SAMPLES, ids=lambda v: type(v).__name__)
def test_a_value_type_hashes_compares_prints_and_copies_as_its_frozen_twin(value: object) -> None:
    twin = frozen_twin(value)
    assert hash(value) == hash(twin)
    assert repr(value) == repr(twin)
    assert value == type(value)(*(getattr(value, f.name) for f in dataclasses.fields(value)))
    field = dataclasses.fields(value)[0].name
    changed = dataclasses.replace(value, **{field: getattr(value, field)})
    assert changed == value
    assert changed is not value
    assert {value, changed} == {value}  # usable as a set member and dict key, as before
    with pytest.raises(AttributeError):
        value.__dict__  # noqa: B018  (slotted: no per-instance dict)


def test_every_dataclass_of_the_domain_is_a_value_type_or_declared_mutable() -> None:
    """A frozen dataclass left in the domain would cost its construction again; a mutable one is
    mutable on purpose (requests, responses and usage are built up field by field)."""
    mutable = {"ChatRequest", "CompletionRequest", "CountTokensRequest", "EmbedRequest", "Usage"}
    mutable |= {"ChatResponse", "CompletionResponse", "EmbedResult"}
    for name, cls in inspect.getmembers(domain, inspect.isclass):
        if not dataclasses.is_dataclass(cls) or cls.__module__ != domain.__name__:
            continue
        params = cls.__dataclass_params__
        assert not params.frozen, f"{name}: frozen at run time (use @value)"
        assert name in mutable or cls.__hash__ is not None, f"{name}: neither a value type nor mutable"


def test_the_type_checker_refuses_an_assignment_to_a_value_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MYPYPATH", str(ROOT / "service"))  # the package's source, not the installed copy
    snippet = tmp_path / "assign.py"
    snippet.write_text(
        textwrap.dedent(
            """
            from provider_gateway.domain import Cost, TextDelta

            cost = Cost(1, True, "provider")
            cost.amount_micros = 2
            TextDelta("a").text = "b"
            """
        )
    )
    out, _, status = mypy_api.run(
        [
            "--no-incremental",
            "--follow-imports=silent",
            "--python-version",
            f"{sys.version_info.major}.{sys.version_info.minor}",
            str(snippet),
        ]
    )
    assert status == 1
    assert out.count("is read-only") == 2, out
