"""The foundation model behind an application inference profile, so that its family decides.

An application inference profile's ARN (`arn:aws:bedrock:<region>:<account>:application-inference-
profile/<id>`) names no model, so `models.family` would read it as a model of no known family, and a
profile that runs Claude would lose Claude's request fields (thinking) and replay rules (signed
reasoning only, toolResult.status). The model it runs is, in this order:

1. the provider's `underlying_models` table (`{ "<model id or ARN>" = "<foundation model id>" }`),
   when the operator gave one: no control-plane call, and no IAM permission beyond the runtime's;
2. else GetInferenceProfile's first `models[].modelArn`, asked once per ARN (signed like every
   control-plane call; concurrent first calls share one lookup) and remembered for the provider's
   life: a profile's models are fixed when it is created (the API has no update), and a profile
   made again gets a new ARN.

The lookup never holds a call up for long: a call waits for an ARN's first lookup at most
`LOOKUP_WAIT_S`, and at most `DEADLINE_SHARE` of its deadline's time left, so that the call itself
still fits (a control plane that hangs, e.g. a VPC with only the bedrock-runtime endpoint, would
otherwise cost every caller its deadline). The lookup goes on in the background, up to
`LOOKUP_TIMEOUT_S`.

A lookup that fails or is not answered in time (no `bedrock:GetInferenceProfile` permission,
throttling, a timeout, an answer without models) fails no call: the call goes on as it did before
the lookup existed, as a model of no known family (no Claude-only fields, no toolResult.status,
reasoning refused as undocumented, the refusal saying why: `unresolved`). From then on calls get
that answer at once, and the lookup is asked again in the background, `RETRY_AFTER_S` after the
first failure, doubling after each (up to `MAX_RETRY_AFTER_S`). The first failure of an ARN logs a
warning naming it and both fixes; later ones log at debug level.

ARNs come from callers, so what is remembered is bounded, and failures (which any caller can
cause with made-up ARNs) are kept apart from answers, so they never push a real profile out. So
is what runs: at most `MAX_RUNNING` lookups at once. A call whose ARN finds no room goes on at once
as a model of no known family (`unresolved` says why), and a later call asks again.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from provider_gateway.errors import GatewayError
from provider_gateway.http import deadline
from provider_gateway.providers.bedrock import control
from provider_gateway.providers.bedrock.models import is_application_profile
from provider_gateway.providers.bedrock.transport import SignedUpstream

log = logging.getLogger(__name__)

LOOKUP_TIMEOUT_S = 10.0  # one GetInferenceProfile (it runs on after a caller stops waiting)
LOOKUP_WAIT_S = 2.0  # the longest a call waits for an ARN's first lookup
DEADLINE_SHARE = 0.5  # ... and the share of its deadline's time left it may spend on it
RETRY_AFTER_S = 60.0  # after a first failure; doubled after each further one
MAX_RETRY_AFTER_S = 16 * RETRY_AFTER_S  # a permission granted later is seen within this
MAX_KNOWN = 1024  # answers: only profiles that exist (and the role may read) get here
MAX_FAILED = 1024  # failures: any caller can add one, so they are bounded on their own
MAX_RUNNING = 16  # lookups at once: a caller naming many ARNs cannot hold tasks and connections

NOT_ANSWERED_YET = "GetInferenceProfile has not answered yet"
BUSY = f"{MAX_RUNNING} profile lookups were already running"


@dataclass(slots=True)
class _Failure:
    why: str  # what the caller is told (`unresolved`)
    retry_at: float  # on the clock: when a call may start the next lookup
    failures: int  # lookups that failed; 0 while the first is still running


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
        self._known: dict[str, str] = {}  # ARN -> the model it runs
        self._failed: dict[str, _Failure] = {}  # ARN -> why it is unknown, and when to ask again
        self._lookups: dict[str, asyncio.Task[None]] = {}

    async def underlying(self, model_id: str) -> str:
        """The foundation model `model_id` runs: configured, looked up, or `model_id` itself."""
        if configured := self._configured.get(model_id):
            return configured
        if not is_application_profile(model_id):
            return model_id
        if (known := self._known.get(model_id)) is not None:
            return known
        if (failure := self._failed.get(model_id)) is not None:
            if failure.retry_at <= self._clock():
                self._start(model_id)
            return model_id  # the remembered answer, at once; a lookup may refresh it meanwhile
        lookup = self._start(model_id)
        if lookup is None:  # no room: asked again by a later call
            self._remember_failure(model_id, _Failure(BUSY, self._clock(), 0))
            return model_id
        # `wait` cancels nothing: a caller giving up (its wait, a cancel) leaves the lookup to others.
        await asyncio.wait([lookup], timeout=self._wait_s())
        if not lookup.done():  # later callers do not wait for it either
            self._remember_failure(model_id, _Failure(NOT_ANSWERED_YET, self._clock(), 0))
        return self._known.get(model_id, model_id)

    def unresolved(self, model_id: str) -> str:
        """Why the model `model_id` runs is unknown, with both fixes; "" unless a lookup failed."""
        failure = self._failed.get(model_id)
        if failure is None or model_id in self._configured:
            return ""
        return (
            f"the model this application inference profile runs could not be resolved "
            f"({failure.why}): grant bedrock:GetInferenceProfile, or name its model in the "
            f"provider's underlying_models"
        )

    async def settled(self) -> None:
        """Wait for the lookups running now to end (their answers are then remembered)."""
        await asyncio.gather(*self._lookups.values(), return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel the lookups still running: nothing outlives the provider."""
        running = list(self._lookups.values())
        for lookup in running:
            lookup.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    def _wait_s(self) -> float:
        left = deadline.remaining()
        return LOOKUP_WAIT_S if left is None else min(LOOKUP_WAIT_S, left * DEADLINE_SHARE)

    def _start(self, arn: str) -> asyncio.Task[None] | None:
        """The ARN's lookup: the one running, else a new one; None when MAX_RUNNING run."""
        if (running := self._lookups.get(arn)) is not None:
            return running
        if len(self._lookups) >= MAX_RUNNING:
            return None
        # A context of its own: no caller's deadline may cut a lookup others rely on.
        lookup = asyncio.create_task(self._lookup(arn), context=contextvars.Context())
        self._lookups[arn] = lookup
        lookup.add_done_callback(lambda done: self._forget_lookup(arn, done))
        return lookup

    def _forget_lookup(self, arn: str, done: asyncio.Task[None]) -> None:
        if self._lookups.get(arn) is done:
            del self._lookups[arn]

    async def _lookup(self, arn: str) -> None:
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                arns = control.profile_model_arns(await control.inference_profile(self._control, arn))
            if not arns:
                raise ValueError("the answer names no model")
        except TimeoutError:
            self._lookup_failed(arn, f"GetInferenceProfile did not answer within {LOOKUP_TIMEOUT_S:.0f} s")
        except Exception as exc:  # any failure: calls go on as an unknown family (docstring)
            self._lookup_failed(arn, f"GetInferenceProfile failed: {failure_name(exc)}")
        else:
            self._failed.pop(arn, None)
            if len(self._known) >= MAX_KNOWN:
                del self._known[next(iter(self._known))]  # the oldest
            self._known[arn] = arns[0]

    def _lookup_failed(self, arn: str, why: str) -> None:
        previous = self._failed.get(arn)
        failures = (previous.failures if previous is not None else 0) + 1
        retry_after = min(RETRY_AFTER_S * 2 ** min(failures - 1, 16), MAX_RETRY_AFTER_S)
        # Once per ARN as a warning: a made-up ARN that keeps failing must not fill the log.
        log.log(
            logging.WARNING if failures == 1 else logging.DEBUG,
            "Bedrock: the model %s runs is unknown (%s): it is sent as a model of no known family "
            "and asked again in %.0f s; grant bedrock:GetInferenceProfile, or name its model in the "
            "provider's underlying_models",
            arn,
            why,
            retry_after,
        )
        self._remember_failure(arn, _Failure(why, self._clock() + retry_after, failures))

    def _remember_failure(self, arn: str, failure: _Failure) -> None:
        self._failed.pop(arn, None)
        if len(self._failed) >= MAX_FAILED:
            del self._failed[next(iter(self._failed))]  # the oldest
        self._failed[arn] = failure


def failure_name(exc: Exception) -> str:
    """AWS's error code (AccessDeniedException, ThrottlingException...) when it named one: the
    message translated for runtime calls would speak of model access and bedrock:InvokeModel."""
    if isinstance(exc, GatewayError) and isinstance(exc.upstream_status, str):
        return exc.upstream_status
    return getattr(exc, "message", "") or str(exc) or type(exc).__name__
