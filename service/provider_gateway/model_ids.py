"""Finding a model's row in a per-model table (prices, the model catalog) from the id a request used.

A dated or versioned id uses its model's row ("gpt-4o-2024-08-06", "claude-sonnet-4-5@20250929",
"amazon.nova-pro-v1:0"), a Bedrock cross-region profile drops its prefix ("us.anthropic...."), an
Ollama id its default tag ("llama3.2:latest" is "llama3.2"), and
another model of the family does not ("o4-mini-deep-research" is not "o4-mini").
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_VERSION_SUFFIX = re.compile(r"(?:[-@:]v?\d[\w.:@-]*)?")
_PROFILE_PREFIX = re.compile(r"^(?:us|eu|apac|global|us-gov)\.")

# Answers kept per table for ids it does not list exactly; ids come from callers, hence a bound.
MAX_REMEMBERED_IDS = 1024


def row_for[T](rows: Mapping[str, T], model: str) -> T | None:
    """The row of `model`: its exact id, else the longest id it is a dated or versioned form of,
    else the table's "*" row; None when none applies."""
    if (exact := rows.get(model)) is not None:
        return exact
    bare = _PROFILE_PREFIX.sub("", model).removesuffix(":latest")  # Ollama's default tag: the same model
    matches = [key for key in rows if bare.startswith(key) and _VERSION_SUFFIX.fullmatch(bare[len(key) :])]
    if matches:
        return rows[max(matches, key=len)]
    return rows.get("*")


class ModelRows[T]:
    """Per provider kind, a table of rows by model id, and `row_for` over it.

    An id the table does not list exactly costs a scan of the whole table (a regular expression per
    row it starts with), and every call asks again (its price, its catalog entry): those answers are
    remembered, at most `MAX_REMEMBERED_IDS` of them (the oldest goes first), and forgotten whenever
    a row is added (`put`). `rows` is the table itself: add rows through `put`, not to `rows`.
    """

    __slots__ = ("_answers", "rows")

    def __init__(self, rows: dict[str, dict[str, T]]) -> None:
        self.rows = rows
        self._answers: dict[tuple[str, str], T | None] = {}

    def find(self, kind: str, model: str) -> T | None:
        rows = self.rows.get(kind)
        if rows is None:
            return None
        if (exact := rows.get(model)) is not None:
            return exact
        key = (kind, model)
        if key in self._answers:
            return self._answers[key]
        row = row_for(rows, model)
        if len(self._answers) >= MAX_REMEMBERED_IDS:
            del self._answers[next(iter(self._answers))]
        self._answers[key] = row
        return row

    def put(self, kind: str, model: str, row: T) -> None:
        """Add or replace the row of `model` (a configuration row): remembered answers may change."""
        self.rows.setdefault(kind, {})[model] = row
        self._answers.clear()
