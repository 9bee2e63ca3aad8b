"""The foundation model behind an application inference profile, so that its family decides.

An application inference profile's ARN (`arn:aws:bedrock:<region>:<account>:application-inference-
profile/<id>`) names no model, so `models.family` would read it as a model of no known family, and a
profile that runs Claude would lose Claude's request fields (thinking) and replay rules (signed
reasoning only, toolResult.status). The model it runs is, in this order:

1. the provider's `underlying_models` table (`{ "<model id or ARN>" = "<foundation model id>" }`),
   when the operator gave one: no control-plane call, and no IAM permission beyond the runtime's;
2. else GetInferenceProfile's first `models[].modelArn`, asked once per ARN (signed like every
   control-plane call, within `LOOKUP_TIMEOUT_S`; concurrent first calls share one lookup) and
   remembered for the provider's life: a profile's models are fixed when it is created (the API
   has no update), and a profile made again gets a new ARN.

A failed lookup (no `bedrock:GetInferenceProfile` permission, throttling, a timeout, an answer
without models) fails no call: the call goes on as it did before the lookup existed, as a model of
no known family (no Claude-only fields, no toolResult.status, reasoning refused as undocumented),
a warning names the ARN and both fixes, and the lookup is tried again `RETRY_AFTER_S` later, so
calls meanwhile do not wait on a failing control plane.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import time
from collections.abc import Callable, Mapping

from provider_gateway.providers.bedrock import control
from provider_gateway.providers.bedrock.models import is_application_profile
from provider_gateway.providers.bedrock.transport import SignedUpstream

log = logging.getLogger(__name__)

LOOKUP_TIMEOUT_S = 10.0
RETRY_AFTER_S = 60.0
# ARNs come from callers: the answers kept are bounded (the oldest goes first).
MAX_REMEMBERED = 1024


class ProfileModels:
    """`underlying(model_id)`: the id whose family decides the request's shape."""

    def __init__(
        self,
        control_plane: SignedUpstream,
        configured: Mapping[str, str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._control = control_plane
        self._configured = dict(configured)
        self._clock = clock
        self._answers: dict[str, tuple[str, float]] = {}  # ARN -> (model, good until)
        self._lookups: dict[str, asyncio.Task[str]] = {}

    async def underlying(self, model_id: str) -> str:
        """The foundation model `model_id` runs: configured, looked up, or `model_id` itself."""
        if configured := self._configured.get(model_id):
            return configured
        if not is_application_profile(model_id):
            return model_id
        answer = self._answers.get(model_id)
        if answer is not None and answer[1] > self._clock():
            return answer[0]
        lookup = self._lookups.get(model_id)
        if lookup is None:
            # A context of its own: the first caller's deadline must not cut everyone's lookup.
            lookup = asyncio.create_task(self._lookup(model_id), context=contextvars.Context())
            self._lookups[model_id] = lookup
            lookup.add_done_callback(lambda _: self._lookups.pop(model_id, None))
        # One caller giving up (a cancel) leaves the lookup to the others.
        return await asyncio.shield(lookup)

    async def _lookup(self, arn: str) -> str:
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                arns = control.profile_model_arns(await control.inference_profile(self._control, arn))
            if not arns:
                raise ValueError("the answer names no model")
        except Exception as exc:  # any failure: the call goes on as an unknown family (docstring)
            log.warning(
                "Bedrock GetInferenceProfile for %s failed (%s): it is sent as a model of no known "
                "family for %.0f s; grant bedrock:GetInferenceProfile, or name its model in the "
                "provider's underlying_models",
                arn,
                getattr(exc, "message", "") or str(exc) or type(exc).__name__,
                RETRY_AFTER_S,
            )
            self._remember(arn, arn, self._clock() + RETRY_AFTER_S)
            return arn
        self._remember(arn, arns[0], math.inf)
        return arns[0]

    def _remember(self, arn: str, model: str, until: float) -> None:
        self._answers.pop(arn, None)
        if len(self._answers) >= MAX_REMEMBERED:
            del self._answers[next(iter(self._answers))]
        self._answers[arn] = (model, until)
