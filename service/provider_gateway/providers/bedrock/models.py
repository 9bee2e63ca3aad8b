"""Bedrock model ids: which family a model belongs to, and cross-region inference profile ids.

Pure functions. A model id may be a foundation model (`anthropic.claude-...`), a cross-region
inference profile (`us.anthropic.claude-...`), or an ARN (foundation model, inference profile,
provisioned throughput, imported model); ARNs are passed to Bedrock unchanged. An application
inference profile's ARN names no model: `profiles.py` finds the one it runs, whose id the family
decisions then read.
"""

from __future__ import annotations

import enum


class Family(enum.Enum):
    """The InvokeModel body a model takes, as its provider's Bedrock page documents it."""

    ANTHROPIC = "anthropic"  # Claude Messages
    NOVA = "nova"  # Amazon Nova messages-v1
    TITAN = "titan"  # Amazon Titan Text (and Titan embeddings)
    LLAMA = "llama"  # Meta Llama 2, 3, 4
    MISTRAL = "mistral"  # Mistral AI text completion
    MISTRAL_CHAT = "mistral_chat"  # Mistral AI chat completion (Mistral Large 24.07+, Pixtral)
    COHERE = "cohere"  # Cohere Command (legacy) and Cohere embeddings
    COHERE_CHAT = "cohere_chat"  # Cohere Command R and R+
    JAMBA = "jamba"  # AI21 Labs Jamba
    GPT_OSS = "gpt_oss"  # OpenAI gpt-oss (Chat Completions body)
    DEEPSEEK = "deepseek"  # DeepSeek-R1 (text completion)
    WRITER = "writer"  # Writer Palmyra
    OTHER = "other"  # no documented InvokeModel body: Converse only


# Mistral models that take the text-completion body; the others take chat completion.
MISTRAL_TEXT_MODELS = ("mistral-7b", "mixtral-8x7b", "mistral-large-2402", "mistral-small-2402")


# Geographic prefixes of system-defined cross-region inference profiles.
GEO_PREFIXES = ("us-gov", "global", "apac", "us", "eu", "au", "jp", "ca", "sa", "ug")

# Region -> inference profile prefix, most specific first. GovCloud uses `us-gov.` in AWS's
# documentation; the TypeScript lineage sent `ug.`, which operators can still configure explicitly.
_REGION_PREFIXES: tuple[tuple[str, str], ...] = (
    ("us-gov-", "us-gov."),
    ("ap-southeast-2", "au."),
    ("ap-southeast-4", "au."),
    ("ap-northeast-1", "jp."),
    ("ap-northeast-3", "jp."),
    ("us-", "us."),
    ("eu-", "eu."),
    ("ap-", "apac."),
    ("ca-", "ca."),
    ("sa-", "sa."),
)


def is_arn(model_id: str) -> bool:
    return model_id.startswith("arn:")


def is_application_profile(model_id: str) -> bool:
    """An application inference profile's ARN (`...:application-inference-profile/<id>`): an
    operator's own profile, whose id names no model (`profiles.py` finds the one it runs)."""
    return is_arn(model_id) and model_id.rpartition("/")[0].endswith(":application-inference-profile")


def strip_profile(model_id: str) -> str:
    """The foundation model id under an inference profile prefix (`us.anthropic.x` -> `anthropic.x`)."""
    if is_arn(model_id):
        # arn:aws:bedrock:region:acct:inference-profile/us.anthropic.x or foundation-model/anthropic.x
        model_id = model_id.rsplit("/", 1)[-1]
    head, dot, rest = model_id.partition(".")
    if dot and head in GEO_PREFIXES and "." in rest:
        return rest
    return model_id


def family(model_id: str) -> Family:
    """The model family, from the vendor segment of the id; ARNs of custom models are OTHER."""
    base = strip_profile(model_id).lower()
    vendor, _, name = base.partition(".")
    if vendor == "amazon":
        return Family.NOVA if name.startswith("nova") else Family.TITAN
    if vendor == "mistral":
        return Family.MISTRAL if name.startswith(MISTRAL_TEXT_MODELS) else Family.MISTRAL_CHAT
    if vendor == "cohere":
        return Family.COHERE_CHAT if name.startswith("command-r") else Family.COHERE
    if vendor == "ai21":
        return Family.JAMBA if name.startswith("jamba") else Family.OTHER
    if vendor == "deepseek":
        return Family.DEEPSEEK if name.startswith("r1") else Family.OTHER  # V3 documents no body
    if vendor == "openai":
        return Family.GPT_OSS if name.startswith("gpt-oss") else Family.OTHER
    return VENDOR_FAMILIES.get(vendor, Family.OTHER)


VENDOR_FAMILIES = {"anthropic": Family.ANTHROPIC, "meta": Family.LLAMA, "writer": Family.WRITER}


def is_embedding_model(model_id: str) -> bool:
    return "embed" in strip_profile(model_id).lower()


def region_prefix(region: str) -> str:
    """The cross-region inference profile prefix for a source region, or "" when none is known."""
    for start, prefix in _REGION_PREFIXES:
        if region.startswith(start):
            return prefix
    return ""


def inference_model_id(model_id: str, region: str, mode: str, explicit_prefix: str = "") -> str:
    """The id to call: `model_id` as given, or with a cross-region profile prefix.

    `mode` is "none" (as given), "regional" (prefix derived from the region, or `explicit_prefix`),
    or "global". Ids that already carry a profile prefix and ARNs are never changed.
    """
    if mode == "none" or is_arn(model_id) or strip_profile(model_id) != model_id:
        return model_id
    if mode == "global":
        return f"global.{model_id}"
    prefix = explicit_prefix or region_prefix(region)
    if prefix and not prefix.endswith("."):
        prefix += "."
    return f"{prefix}{model_id}"
