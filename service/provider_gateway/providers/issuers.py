"""Who issued a reasoning block's opaque state (signature, redacted data, item id): the vendor
family that can verify it. A provider that verifies signatures refuses the whole request for one it
never issued ("Invalid signature in thinking block"), as after a fallback from another vendor; so the
gateway names the issuer on answers (proto `Reasoning.issuer`) and each provider's replay leaves out
the blocks another family issued. "" (older clients) is unknown: such blocks are sent as before.

Claude on Vertex speaks the Anthropic API through the same codec, so it counts as Anthropic; Claude
on Bedrock is kept apart (Converse's signatures are not documented as interchangeable).
"""

from __future__ import annotations

ANTHROPIC = "anthropic"
BEDROCK = "bedrock"
GEMINI = "gemini"
MISTRAL = "mistral"
OPENROUTER = "openrouter"  # the state of any model it relays: verifiable only through OpenRouter
CLAUDE_PREFIX = "claude"  # as providers/vertex/codec.py tells Claude models from Gemini
# Provider kinds whose reasoning state Gemini issued: its own API, and its OpenAI-compatible one.
GEMINI_KINDS = frozenset({"gemini", "gemini-openai"})
# Provider kinds that serve the OpenAI Responses API, whose reasoning items (by id) it takes back.
RESPONSES_KINDS = frozenset({"openai", "azure"})


def issuer(kind: str, model: str) -> str:
    """The family that issued the reasoning state of a `kind` provider's answer from `model`; any
    other kind names itself (OpenAI Responses, Mistral, OpenRouter...)."""
    if kind == "vertex":
        return ANTHROPIC if model.startswith(CLAUDE_PREFIX) else GEMINI
    if kind in GEMINI_KINDS:
        return GEMINI
    return kind


def issued_by(issued: str, family: str) -> bool:
    """Whether a block whose issuer is `issued` may go back to `family`: its own, or unknown."""
    return not issued or issued == family
