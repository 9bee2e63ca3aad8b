"""What a Converse model takes back of earlier turns, where a history built elsewhere (another
provider before a fallback) or a generic codec would break its rules:

- `toolUseId` must match `^[a-zA-Z0-9_-]+$` (1 to 64 characters) for every model: other ids are
  rewritten alike on call and result (providers/tool_ids.py);
- `toolResult.status` is documented for Claude and Nova only; Converse refuses it for others
  ("This model doesn't support the toolResult.status field"), so they get none;
- Claude verifies a reasoning block's signature: reasoning without one, or signed by another
  vendor (issuer set and not Bedrock, providers/issuers.py), is left out for Claude, as on the
  Anthropic API (providers/anthropic/replay_rules.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from provider_gateway.domain import ContentPart, ReasoningPart
from provider_gateway.providers.bedrock.models import Family, family
from provider_gateway.providers.issuers import BEDROCK, issued_by

STATUS_FAMILIES = (Family.ANTHROPIC, Family.NOVA)


@dataclass(slots=True, frozen=True)
class ReplayRules:
    """One model's rules; the defaults send every part and every status."""

    tool_status: bool = True
    signed_reasoning_only: bool = False

    def sendable(self, part: ContentPart) -> bool:
        if not (self.signed_reasoning_only and isinstance(part, ReasoningPart)):
            return True
        return bool(part.signature) and issued_by(part.issuer, BEDROCK)


SEND_ALL = ReplayRules()  # immutable: for callers that know no model


def replay_rules(model_id: str) -> ReplayRules:
    """The rules of `model_id`'s family (for an application inference profile, the caller passes
    the model it runs: profiles.py). An ARN of no known family (an imported model, a profile whose
    model is unknown) gets no status: the field is optional, an unknown model may refuse it."""
    model_family = family(model_id)
    return ReplayRules(
        tool_status=model_family in STATUS_FAMILIES,
        signed_reasoning_only=model_family is Family.ANTHROPIC,
    )
