"""The answers of the catalogue calls as dataclasses, like `ChatResult`: `list_models`,
`list_providers`, `count_tokens` and `embed`. Field names are the protobuf's, so code written
against the protobuf answers reads the same; the protobuf stays reachable as `.raw`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from provider_gateway_client.events import UsageReport, usage_report
from provider_gateway_client.v1 import provider_service_pb2 as pb


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model the gateway can route to; call it as `name` (`provider/id`) or by an alias."""

    id: str
    provider: str
    display_name: str = ""
    context_window: int = 0  # 0: unknown
    max_output_tokens: int = 0  # 0: unknown
    vision: bool = False
    tools: bool = False
    reasoning: bool = False
    embeddings: bool = False
    aliases: tuple[str, ...] = ()
    raw: pb.ModelInfo | None = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        return f"{self.provider}/{self.id}"


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The provider's configured limits; 0 means none."""

    requests_per_minute: int = 0
    tokens_per_minute: int = 0
    max_concurrent: int = 0


@dataclass(frozen=True, slots=True)
class Capabilities:
    max_tokens: int = 0
    streaming: bool = False
    tools: bool = False
    vision: bool = False
    embeddings: bool = False
    reasoning: bool = False
    json_output: bool = False
    exact_token_count: bool = False
    completion: bool = False
    rate_limits: RateLimits = RateLimits()


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """A configured provider. `health`: "serving", "not_serving" or "unspecified"."""

    name: str
    kind: str
    health: str
    health_message: str = ""
    capabilities: Capabilities = Capabilities()
    breaker_state: str = ""
    raw: pb.ProviderInfo | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Providers:
    """What `list_providers` returns: the providers, and the one a bare model name goes to."""

    providers: tuple[ProviderInfo, ...]
    default_provider: str = ""
    raw: pb.ListProvidersResponse | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class TokenCount:
    """`estimated`: the provider has no counting API, so the gateway estimated the count."""

    input_tokens: int
    estimated: bool = False
    provider: str = ""
    model: str = ""
    raw: pb.CountTokensResponse | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Embedding:
    index: int  # the position of its input in the request
    values: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Embeddings:
    """What `embed` returns; `vectors` are the values in the order of the inputs."""

    embeddings: tuple[Embedding, ...]
    usage: UsageReport | None = None
    provider: str = ""
    model: str = ""
    raw: pb.EmbedResponse | None = field(default=None, compare=False, repr=False)

    @property
    def vectors(self) -> list[tuple[float, ...]]:
        return [e.values for e in sorted(self.embeddings, key=lambda e: e.index)]


def model_info(model: pb.ModelInfo) -> ModelInfo:
    return ModelInfo(
        id=model.id,
        provider=model.provider,
        display_name=model.display_name,
        context_window=model.context_window,
        max_output_tokens=model.max_output_tokens,
        vision=model.vision,
        tools=model.tools,
        reasoning=model.reasoning,
        embeddings=model.embeddings,
        aliases=tuple(model.aliases),
        raw=model,
    )


def models(response: pb.ListModelsResponse) -> list[ModelInfo]:
    return [model_info(model) for model in response.models]


def _capabilities(caps: pb.Capabilities) -> Capabilities:
    limits = caps.rate_limits
    return Capabilities(
        max_tokens=caps.max_tokens,
        streaming=caps.streaming,
        tools=caps.tools,
        vision=caps.vision,
        embeddings=caps.embeddings,
        reasoning=caps.reasoning,
        json_output=caps.json_output,
        exact_token_count=caps.exact_token_count,
        completion=caps.completion,
        rate_limits=RateLimits(limits.requests_per_minute, limits.tokens_per_minute, limits.max_concurrent),
    )


def providers(response: pb.ListProvidersResponse) -> Providers:
    listed = tuple(
        ProviderInfo(
            name=p.name,
            kind=p.kind,
            health=pb.ProviderHealth.Name(p.health).removeprefix("PROVIDER_HEALTH_").lower(),
            health_message=p.health_message,
            capabilities=_capabilities(p.capabilities),
            breaker_state=p.breaker_state,
            raw=p,
        )
        for p in response.providers
    )
    return Providers(listed, response.default_provider, raw=response)


def token_count(response: pb.CountTokensResponse) -> TokenCount:
    return TokenCount(
        response.input_tokens, response.estimated, response.provider, response.model, raw=response
    )


def embeddings(response: pb.EmbedResponse) -> Embeddings:
    return Embeddings(
        tuple(Embedding(e.index, tuple(e.values)) for e in response.embeddings),
        usage_report(response.usage) if response.HasField("usage") else None,
        response.provider,
        response.model,
        raw=response,
    )
