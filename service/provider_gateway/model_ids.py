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
