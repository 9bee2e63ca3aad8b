"""The issuer of an answer's reasoning state (proto `Reasoning.issuer`), from the provider that
answered: a unary answer's Finish names it; a stream's attempt names its deployment
(server/coalesce.py `Relay.answering`). Asked only for reasoning that carries state."""

from __future__ import annotations

from provider_gateway.providers.issuers import issuer
from provider_gateway.routing.router import Router


class AnswerIssuers:
    __slots__ = ("_router",)

    def __init__(self, router: Router) -> None:
        self._router = router

    def of_provider(self, provider: str, model: str) -> str:
        """A configured provider's answer from `model` ("" for a provider no longer configured)."""
        adapter = self._router.registry.get(provider)
        return "" if adapter is None else issuer(adapter.kind, model)

    def of_deployment(self, key: str) -> str:
        """A deployment's answer ("" for none, or one forgotten since: routing/plans.py)."""
        deployment = self._router.planner.deployments.get(key) if key else None
        if deployment is None:
            return ""
        return issuer(deployment.provider.kind, deployment.spec.model)
