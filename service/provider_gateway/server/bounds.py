"""Upper bounds of a request's size-like fields, so that no request asks for unbounded work.

Each bound is documented (docs/configuration.md, "Request bounds"). Those that depend on the model
(`SizeBounds`) come from `bounds_for`, the one place a model catalog plugs in its per-model limits;
until there is one, every model gets the documented caps. The rest bound what a client chooses
freely: names, tags, stop sequences, and the size of an embedding answer (against the server's send
limit, [server] max_message_bytes).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SizeBounds:
    """Per-model caps. A catalog returns the model's own; these defaults are the documented caps."""

    # Above every model's output limit; a model's own limit is usually far lower.
    max_output_tokens: int = 1_000_000
    max_reasoning_budget: int = 1_000_000
    # Above every embedding model's widest vector (3072 at OpenAI and Google, 4096 for the widest open
    # models): enough for any, small enough that one vector is cheap.
    max_embed_dimensions: int = 8192


DOCUMENTED_BOUNDS = SizeBounds()


def bounds_for(provider: str, model: str) -> SizeBounds:
    """The bounds of the model a request names (`provider` may be empty: the model says it).

    The one place per-model limits plug in: a model catalog replaces this function's body.
    """
    return DOCUMENTED_BOUNDS


# A model, provider or fallback name: ids are short (the longest real ones, Bedrock ARNs of
# inference profiles, stay near 120 characters).
MAX_NAME_CHARS = 256
MAX_FALLBACKS = 16
MAX_STOP_CHARS = 1000
MAX_METADATA_ENTRIES = 64
MAX_METADATA_KEY_CHARS = 128
MAX_METADATA_VALUE_CHARS = 1024
# An Embed answer's bytes beyond its floats (4 bytes each), at most: per vector, the Embedding's tag
# and length, its index, the values' tag and length (1 + 5 each); per answer, usage and names.
EMBED_BYTES_PER_VECTOR = 18
EMBED_ANSWER_RESERVE_BYTES = 4096


def embed_answer_bytes(inputs: int, dimensions: int) -> int:
    """The most an Embed answer of `inputs` vectors of `dimensions` values can take encoded, so that
    one that would not fit the server's send limit is refused before any provider works on it."""
    return inputs * (4 * dimensions + EMBED_BYTES_PER_VECTOR) + EMBED_ANSWER_RESERVE_BYTES
