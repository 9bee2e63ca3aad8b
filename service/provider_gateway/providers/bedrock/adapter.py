"""The AWS Bedrock provider: aiobotocore clients, Converse for chat, InvokeModel for completions.

Clients are long-lived (one per service and region), created on first use and closed with the
provider. botocore's own retries are off: the gateway's router owns retries and failover.
Credentials come from the standard AWS chain (environment, shared files and `profile`, SSO,
container and instance roles; botocore also honours Bedrock API keys in AWS_BEARER_TOKEN_BEDROCK);
nothing secret is read from the gateway's config file.

    [providers.bedrock]
    kind = "bedrock"
    region = "us-east-1"            # else AWS_REGION / AWS_DEFAULT_REGION / the profile's region
    profile = "prod"                # a profile of ~/.aws/config; default: the standard chain
    endpoint_url = ""               # runtime endpoint override (VPC endpoints, tests)
    control_endpoint_url = ""       # control-plane override; defaults to endpoint_url
    inference_profile = "none"      # "regional": us./eu./apac./au./jp./us-gov./ca./sa. from the region;
                                    # "global": global.; ids with a prefix and ARNs are never changed
    inference_profile_prefix = ""   # with inference_profile = "regional": this prefix instead of the region's (e.g. "ug.")
    prompt_caching = false          # cachePoint after the system prompt and the last two user turns
    default_max_tokens = 4096       # InvokeModel bodies that require a maximum
    connect_timeout_s = 10.0
    read_timeout_s = 3600.0         # per read; AWS advises an hour: unary Converse waits for the whole answer
    max_connections = 50
    count_tokens = "api"            # "api": CountTokens for Claude, else the local estimate
    health_check = "credentials"    # "credentials", "list_models" (a control-plane call) or "none"
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession

from provider_gateway.config import Section
from provider_gateway.domain import (
    Capabilities,
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    CompletionResponse,
    CountTokensRequest,
    EmbedRequest,
    EmbedResult,
    HealthStatus,
    Message,
    ModelInfo,
    Role,
    StreamEvent,
    TextPart,
    TokenCount,
    Usage,
)
from provider_gateway.errors import ErrorKind, GatewayError, invalid_argument
from provider_gateway.providers.base import BaseProvider, accumulate, all_or_first_error, estimate_tokens
from provider_gateway.providers.bedrock import codec, models
from provider_gateway.providers.bedrock.errors import translate
from provider_gateway.providers.bedrock.models import Family
from provider_gateway.providers.context import ProviderContext

OPTION_KEYS = (
    "kind",
    "region",
    "profile",
    "endpoint_url",
    "control_endpoint_url",
    "inference_profile",
    "inference_profile_prefix",
    "prompt_caching",
    "default_max_tokens",
    "connect_timeout_s",
    "read_timeout_s",
    "max_connections",
    "count_tokens",
    "health_check",
)
INFERENCE_PROFILE_MODES = ("none", "regional", "global")
RUNTIME, CONTROL = "bedrock-runtime", "bedrock"
MAX_LIST_PAGES = 20


@dataclass(slots=True, frozen=True)
class BedrockSettings:
    region: str
    profile: str = ""
    endpoint_url: str = ""
    control_endpoint_url: str = ""
    inference_profile: str = "none"
    inference_profile_prefix: str = ""
    prompt_caching: bool = False
    default_max_tokens: int = 4096
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 3600.0
    max_connections: int = 50
    count_tokens: str = "api"  # "api" (CountTokens where the model supports it) or "estimate"
    health_check: str = "credentials"  # "credentials", "list_models" or "none"


class BedrockProvider(BaseProvider):
    kind = "bedrock"

    def __init__(self, name: str, settings: BedrockSettings, session: AioSession | None = None) -> None:
        super().__init__(name)
        self.settings = settings
        self._session = session or AioSession(profile=settings.profile or None)
        self._clients: dict[tuple[str, str], Any] = {}
        self._exit = AsyncExitStack()
        self._lock = asyncio.Lock()

    @classmethod
    def from_config(cls, name: str, options: Section) -> BedrockProvider:
        options.reject_unknown(OPTION_KEYS)
        profile = options.string("profile")
        session = AioSession(profile=profile or None)
        # The standard chain: the option, then AWS_REGION / AWS_DEFAULT_REGION / the profile's region.
        region = options.string("region") or session.get_config_variable("region") or ""
        if not region:
            raise options.error("region", "no AWS region: set `region` here or AWS_REGION in the environment")
        settings = BedrockSettings(
            region=region,
            profile=profile,
            endpoint_url=options.string("endpoint_url"),
            control_endpoint_url=options.string("control_endpoint_url"),
            inference_profile=options.choice("inference_profile", INFERENCE_PROFILE_MODES, "none"),
            inference_profile_prefix=options.string("inference_profile_prefix"),
            prompt_caching=options.flag("prompt_caching", False),
            default_max_tokens=options.integer("default_max_tokens", 4096, minimum=1),
            connect_timeout_s=options.number("connect_timeout_s", 10.0, minimum=0.1),
            read_timeout_s=options.number("read_timeout_s", 3600.0, minimum=0.1),
            max_connections=options.integer("max_connections", 50, minimum=1),
            count_tokens=options.choice("count_tokens", ("api", "estimate"), "api"),
            health_check=options.choice(
                "health_check", ("credentials", "list_models", "none"), "credentials"
            ),
        )
        return cls(name, settings, session)

    # --- clients -------------------------------------------------------------------------------

    async def client(self, service: str = RUNTIME, region: str = "") -> Any:
        """The long-lived client for a service and region, created on first use."""
        key = (service, region or self.settings.region)
        client = self._clients.get(key)
        if client is not None:
            return client
        async with self._lock:
            if key not in self._clients:
                endpoint = self.settings.endpoint_url
                if service == CONTROL:
                    endpoint = self.settings.control_endpoint_url or endpoint
                config = AioConfig(
                    connect_timeout=self.settings.connect_timeout_s,
                    read_timeout=self.settings.read_timeout_s,
                    max_pool_connections=self.settings.max_connections,
                    retries={"total_max_attempts": 1, "mode": "standard"},
                    user_agent_extra="provider-gateway",
                    # Parse the service model JSON in a thread: the event loop stalls ~15 ms, not ~70.
                    warm_up_loader_caches=True,
                )
                creator = self._session.create_client(
                    service, region_name=key[1], endpoint_url=endpoint or None, config=config
                )
                self._clients[key] = await self._exit.enter_async_context(creator)
        return self._clients[key]

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        if clients:
            await self._exit.aclose()
            self._exit = AsyncExitStack()

    # --- helpers -------------------------------------------------------------------------------

    def model_id(self, model: str) -> str:
        if not model:
            raise invalid_argument("model: a Bedrock model id or ARN is required")
        s = self.settings
        return models.inference_model_id(model, s.region, s.inference_profile, s.inference_profile_prefix)

    def _error(self, exc: Exception, model: str) -> GatewayError:
        return translate(exc, self.name, model, self.settings.region)

    async def _call(self, model: str, operation: str, service: str = RUNTIME, **kwargs: Any) -> Any:
        try:
            client = await self.client(service)
            return await getattr(client, operation)(**kwargs)
        except Exception as exc:
            raise self._error(exc, model) from exc

    async def _events(
        self,
        model: str,
        stream: Any,
        decode: Callable[[Any], list[StreamEvent]],
        end: Callable[[], list[StreamEvent]],
    ) -> AsyncGenerator[StreamEvent, None]:
        """Decode a botocore event stream; always close its HTTP response (cancel included)."""
        try:
            async for event in stream:
                for decoded in decode(event):
                    yield decoded
            for decoded in end():
                yield decoded
        except Exception as exc:
            raise self._error(exc, model) from exc
        finally:
            stream.close()  # drops the connection if the stream did not finish: Bedrock stops

    # --- capabilities and health ---------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        return Capabilities(
            max_tokens=self.settings.default_max_tokens,
            streaming=True,
            tools=True,
            vision=True,
            embeddings=True,
            reasoning=True,
            json_output=True,  # Converse outputConfig (JSON schema); schema-less JSON is refused by the codec
            exact_token_count=self.settings.count_tokens == "api",
            completion=True,
        )

    async def health_check(self) -> HealthStatus:
        started = time.perf_counter_ns()
        mode = self.settings.health_check
        if mode == "none":
            return HealthStatus(healthy=True)
        try:
            if mode == "list_models":
                await self._call("", "list_foundation_models", CONTROL)
            else:
                credentials = await self._session.get_credentials()
                if credentials is None:
                    return HealthStatus(healthy=False, message="no AWS credentials found")
                await self.client()  # created at start-up, so the first request does not pay for it
        except Exception as exc:  # a probe reports; it never raises
            return HealthStatus(healthy=False, message=self._error(exc, "").message)
        return HealthStatus(healthy=True, latency_us=(time.perf_counter_ns() - started) // 1000)

    # --- chat (Converse) -----------------------------------------------------------------------

    def _converse_kwargs(self, request: ChatRequest) -> dict[str, Any]:
        model_id = self.model_id(request.model)
        return codec.converse_request(
            request, model_id, models.family(model_id), prompt_caching=self.settings.prompt_caching
        )

    async def chat(self, request: ChatRequest) -> ChatResponse:
        kwargs = self._converse_kwargs(request)
        response = await self._call(request.model, "converse", **kwargs)
        return await accumulate(replay(codec.converse_response_events(response, request.model)))

    async def chat_stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        kwargs = self._converse_kwargs(request)
        response = await self._call(request.model, "converse_stream", **kwargs)
        decoder = codec.ConverseStreamDecoder(request.model)
        async with aclosing(
            self._events(request.model, response["stream"], decoder.feed, decoder.end)
        ) as events:
            async for event in events:
                yield event

    # --- completions (InvokeModel with the family's body) --------------------------------------

    def _invoke_kwargs(
        self, request: CompletionRequest, stream: bool = False
    ) -> tuple[dict[str, Any], Family]:
        model_id = self.model_id(request.model)
        family = models.family(model_id)
        body = codec.invoke_body(family, request, self.settings.default_max_tokens, stream=stream)
        kwargs = {
            "modelId": model_id,
            "body": json.dumps(body).encode(),
            "contentType": "application/json",
            "accept": "application/json",
        }
        return kwargs, family

    def _uses_converse(self, request: CompletionRequest) -> bool:
        """Models with no known InvokeModel body (imported models, application profile ARNs)."""
        return models.family(self.model_id(request.model)) is Family.OTHER

    async def complete(self, request: CompletionRequest) -> CompletionResponse:
        if self._uses_converse(request):
            whole = await self.chat(as_chat(request))
            return CompletionResponse(text=whole.text, usage=whole.usage, finish=whole.finish)
        kwargs, family = self._invoke_kwargs(request)
        response = await self._call(request.model, "invoke_model", **kwargs)
        body = await self._read_json(response, request.model)
        whole = await accumulate(replay(codec.InvokeDecoder(family, request.model).response(body)))
        return codec.completion(whole, request.model)

    async def complete_stream(self, request: CompletionRequest) -> AsyncGenerator[StreamEvent, None]:
        if self._uses_converse(request):
            async with aclosing(self.chat_stream(as_chat(request))) as chat_events:
                async for event in chat_events:
                    yield event
            return
        kwargs, family = self._invoke_kwargs(request, stream=True)
        response = await self._call(request.model, "invoke_model_with_response_stream", **kwargs)
        decoder = codec.InvokeDecoder(family, request.model)

        def decode(event: Any) -> list[StreamEvent]:
            chunk = codec.stream_chunk_payload(event)
            return decoder.feed(chunk) if chunk is not None else []

        async with aclosing(self._events(request.model, response["body"], decode, decoder.end)) as events:
            async for event in events:
                yield event

    async def _read_json(self, response: Mapping[str, Any], model: str) -> dict[str, Any]:
        body = response["body"]
        try:
            data = await body.read()
        except Exception as exc:
            raise self._error(exc, model) from exc
        finally:
            body.close()
        return codec.decode_json_object(data, "InvokeModel response")

    async def _invoke_json(self, model_id: str, body: dict[str, Any], model: str) -> dict[str, Any]:
        response = await self._call(
            model,
            "invoke_model",
            modelId=model_id,
            body=json.dumps(body).encode(),
            contentType="application/json",
            accept="application/json",
        )
        return await self._read_json(response, model)

    # --- models, tokens, embeddings ------------------------------------------------------------

    async def list_models(self) -> list[ModelInfo]:
        found = await self._call("", "list_foundation_models", CONTROL)
        result: list[ModelInfo] = []
        for summary in found.get("modelSummaries", []):
            inputs, outputs = summary.get("inputModalities", []), summary.get("outputModalities", [])
            result.append(
                ModelInfo(
                    id=summary.get("modelId", ""),
                    display_name=f"{summary.get('providerName', '')} {summary.get('modelName', '')}".strip(),
                    vision="IMAGE" in inputs,
                    tools="TEXT" in outputs and can_use_tools(summary.get("modelId", "")),
                    embeddings="EMBEDDING" in outputs,
                )
            )
        token: str | None = None
        for _ in range(MAX_LIST_PAGES):
            page = await self._call(
                "", "list_inference_profiles", CONTROL, **({"nextToken": token} if token else {})
            )
            for profile in page.get("inferenceProfileSummaries", []):
                result.append(
                    ModelInfo(
                        id=profile.get("inferenceProfileId", ""),
                        display_name=profile.get("inferenceProfileName", ""),
                        tools=can_use_tools(profile.get("inferenceProfileId", "")),
                    )
                )
            token = page.get("nextToken")
            if not token:
                break
        return result

    async def count_tokens(self, request: CountTokensRequest) -> TokenCount:
        model_id = self.model_id(request.model)
        if self.settings.count_tokens == "estimate" or models.family(model_id) is not Family.ANTHROPIC:
            return await super().count_tokens(request)  # the documented local estimate
        messages = request.messages or [Message(Role.USER, (TextPart(request.text or " "),))]
        chat = ChatRequest(model=request.model, messages=messages, tools=request.tools)
        kwargs = self._converse_kwargs(chat)
        try:
            # CountTokens takes the foundation model id, not an inference profile.
            counted = await self._call(
                request.model,
                "count_tokens",
                modelId=models.strip_profile(model_id),
                input=codec.count_tokens_input(kwargs),
            )
        except GatewayError as exc:
            if exc.kind is ErrorKind.INVALID_ARGUMENT:  # the model does not support counting
                return await super().count_tokens(request)
            raise
        return TokenCount(
            input_tokens=int(counted.get("inputTokens", 0)), estimated=False, model=request.model
        )

    async def embed(self, request: EmbedRequest) -> EmbedResult:
        model_id = self.model_id(request.model)
        family = models.family(model_id)
        if family is Family.TITAN and models.is_embedding_model(model_id):
            # Titan embeds one text per call: make the calls concurrently (the pool bounds them).
            bodies = await all_or_first_error(
                self._invoke_json(model_id, codec.titan_embed_body(text, request.dimensions), request.model)
                for text in request.inputs
            )
            results = [codec.titan_embed_response(body) for body in bodies]
            tokens = sum(count for _, count in results)
            return EmbedResult([v for v, _ in results], Usage(input_tokens=tokens), model=request.model)
        if family is Family.COHERE and models.is_embedding_model(model_id):
            body = await self._invoke_json(model_id, codec.cohere_embed_body(request.inputs), request.model)
            vectors = codec.cohere_embed_response(body, len(request.inputs))
            # Cohere on Bedrock reports no token counts for embeddings: estimate them.
            tokens = sum(estimate_tokens(text) for text in request.inputs)
            return EmbedResult(vectors, Usage(input_tokens=tokens, estimated=True), model=request.model)
        raise invalid_argument(
            f"model: {request.model!r} is not a Bedrock embedding model (use amazon.titan-embed-* or cohere.embed-*)"
        )


def can_use_tools(model_id: str) -> bool:
    """Whether Converse tool use is offered: every chat family but Titan text (a coarse guess)."""
    family = models.family(model_id)
    return family not in (Family.TITAN, Family.OTHER) and not models.is_embedding_model(model_id)


def as_chat(request: CompletionRequest) -> ChatRequest:
    """A completion as a one-message conversation, for models only Converse knows how to call."""
    return ChatRequest(
        model=request.model,
        messages=[Message(Role.USER, (TextPart(request.prompt),))],
        temperature=request.temperature,
        top_p=request.top_p,
        max_tokens=request.max_tokens,
        stop=list(request.stop),
        provider_options=dict(request.provider_options),
    )


async def replay(events: list[StreamEvent]) -> AsyncIterator[StreamEvent]:
    """A whole response's events as a stream, so unary calls accumulate exactly like streams."""
    for event in events:
        yield event


def from_config(name: str, options: Section, context: ProviderContext) -> BedrockProvider:
    # Bedrock speaks through aiobotocore's own connection pool, not the shared HTTP pool.
    del context
    return BedrockProvider.from_config(name, options)
