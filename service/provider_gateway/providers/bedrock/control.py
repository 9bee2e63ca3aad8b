"""Bedrock's control plane as signed GETs: ListFoundationModels, ListInferenceProfiles and
GetInferenceProfile."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from provider_gateway.providers.bedrock.codec import decode_json_object
from provider_gateway.providers.bedrock.transport import Payload, SignedUpstream
from provider_gateway.providers.http_common import path_segment

MAX_LIST_PAGES = 20  # a bound on a misbehaving nextToken loop


async def _get(control: SignedUpstream, path: str) -> dict[str, Any]:
    raw, _ = await control.fetch("GET", path, Payload())
    return decode_json_object(raw, f"Bedrock {path.split('?', 1)[0]} response")


def _objects(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


async def foundation_models(control: SignedUpstream) -> list[dict[str, Any]]:
    """GET /foundation-models: every model summary (one page: the API does not paginate)."""
    return _objects((await _get(control, "/foundation-models")).get("modelSummaries"))


async def inference_profiles(control: SignedUpstream) -> list[dict[str, Any]]:
    """GET /inference-profiles, following nextToken."""
    found: list[dict[str, Any]] = []
    token = ""
    for _ in range(MAX_LIST_PAGES):
        query = f"?nextToken={quote(token, safe='/')}" if token else ""  # `/` as aiohttp sends it
        page = await _get(control, f"/inference-profiles{query}")
        found += _objects(page.get("inferenceProfileSummaries"))
        token = str(page.get("nextToken") or "")
        if not token:
            break
    return found


async def inference_profile(control: SignedUpstream, identifier: str) -> dict[str, Any]:
    """GET /inference-profiles/{inferenceProfileIdentifier}: one profile (an ARN or an id, one path
    segment: an ARN's `/` is sent as `%2F`), with `models: [{"modelArn": ...}]`."""
    return await _get(
        control, f"/inference-profiles/{path_segment(identifier, 'inference profile', 'bedrock')}"
    )


def profile_model_arns(profile: dict[str, Any]) -> list[str]:
    """The foundation-model ARNs of a GetInferenceProfile answer (one per region it routes to)."""
    return [
        arn
        for model in _objects(profile.get("models"))
        if isinstance(arn := model.get("modelArn"), str) and arn
    ]
