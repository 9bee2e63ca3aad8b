"""The AWS Bedrock provider: Converse for chat, InvokeModel for completions, over the shared HTTP pool.

Requests are built, signed (SigV4, with AWS's standalone signer) and sent by the gateway itself
(`transport.py`); event streams are decoded by `event_stream.py`. No AWS SDK is loaded for this:
botocore costs ~38 MB of RSS and stalls the event loop while it loads its service models. Nothing
is retried here: the router owns retries and failover. Credentials come from
`credentials/` (environment, profiles and roles; Bedrock API keys from AWS_BEARER_TOKEN_BEDROCK,
sent as `Authorization: Bearer`); nothing secret is read from the gateway's config file.

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
    underlying_models = {}          # { "<application inference profile ARN>" = "<foundation model id>" }:
                                    # the model whose family decides; else GetInferenceProfile, once
                                    # (a call waits for it at most 2 s: profiles.py)
    default_max_tokens = 4096       # InvokeModel bodies that require a maximum
    connect_timeout_s = 10.0
    read_timeout_s = 3600.0         # per read; AWS advises an hour: unary Converse waits for the whole answer
    max_connections = 50            # calls open at once per endpoint (runtime, control); more wait
    count_tokens = "api"            # "api": CountTokens for Claude, else the local estimate
    health_check = "credentials"    # "credentials", "list_models" (a control-plane call) or "none"
    access_key_id_env = ""          # credentials by a variable's name or a file (`*_file`), never the
    secret_access_key_env = ""      # value; likewise session_token_* and bearer_token_*; unset: the
                                    # AWS chain (docs/vendor-providers.md, "Bedrock credentials")
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    UsageEvent,
)
from provider_gateway.errors import ErrorKind, GatewayError, invalid_argument
from provider_gateway.http.client import Timeouts
from provider_gateway.http.pool import UpstreamPool
from provider_gateway.providers.base import BaseProvider, accumulate, all_or_first_error, estimate_tokens
from provider_gateway.providers.bedrock import codec, control, models
from provider_gateway.providers.bedrock.credentials import (
    CREDENTIAL_KEYS,
    CredentialResolver,
    bearer_token,
    resolver_from_config,
)
from provider_gateway.providers.bedrock.errors import BedrockErrorPolicy, translate
from provider_gateway.providers.bedrock.event_stream import FrameReader
from provider_gateway.providers.bedrock.invoke import converse_features
from provider_gateway.providers.bedrock.invoke.base import ConverseFeatures
from provider_gateway.providers.bedrock.models import Family
from provider_gateway.providers.bedrock.profiles import ProfileModels
from provider_gateway.providers.bedrock.transport import JSON, Payload, SignedUpstream, model_path
from provider_gateway.providers.context import ProviderContext
from provider_gateway.providers.relay import relay_reads
from provider_gateway.providers.reported_usage import report_partial_usage

OPTION_KEYS = (
    "kind",
    "region",
    "profile",
    "endpoint_url",
    "control_endpoint_url",
    "inference_profile",
    "inference_profile_prefix",
    "prompt_caching",
    "underlying_models",
    "default_max_tokens",
    "connect_timeout_s",
    "read_timeout_s",
    "max_connections",
    "count_tokens",
    "health_check",
)
INFERENCE_PROFILE_MODES = ("none", "regional", "global")
# What ListModels reports for a model of no known family (imported, custom): nothing it cannot vouch for.
UNKNOWN_FEATURES = ConverseFeatures()
INPUT_TOKENS_HEADER, OUTPUT_TOKENS_HEADER = (
    "X-Amzn-Bedrock-Input-Token-Count",
    "X-Amzn-Bedrock-Output-Token-Count",
)


@dataclass(slots=True, frozen=True)
class BedrockSettings:
    region: str
    profile: str = ""
    endpoint_url: str = ""
    control_endpoint_url: str = ""
    inference_profile: str = "none"
    inference_profile_prefix: str = ""
    prompt_caching: bool = False
    # Model id or ARN -> the foundation model it runs (profiles.py), as the operator says.
    underlying_models: Mapping[str, str] = field(default_factory=dict)
    default_max_tokens: int = 4096
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 3600.0
    max_connections: int = 50
    count_tokens: str = "api"  # "api" (CountTokens where the model supports it) or "estimate"
    health_check: str = "credentials"  # "credentials", "list_models" or "none"

    @property
    def runtime_url(self) -> str:
        return self.endpoint_url or f"https://bedrock-runtime.{self.region}.amazonaws.com"

    @property
    def control_url(self) -> str:
        return (
            self.control_endpoint_url or self.endpoint_url or f"https://bedrock.{self.region}.amazonaws.com"
        )


class BedrockProvider(BaseProvider):
    kind = "bedrock"

    def __init__(
        self,
        name: str,
        settings: BedrockSettings,
        http: UpstreamPool,
        credentials: CredentialResolver,
        bearer: str | None = None,
        *,
        merge_reads: bool = True,
    ) -> None:
        super().__init__(name)
        self.merge_reads = merge_reads  # the deltas of one read go on merged (providers/relay.py)
        self.settings = settings
        self.credentials = credentials
        self.bearer = bearer
        # Built once from the settings: the router's honour check asks on every call.
        self._capabilities = Capabilities(
            max_tokens=settings.default_max_tokens,
            streaming=True,
            tools=True,
            vision=True,
            embeddings=True,
            reasoning=True,
            json_output=True,  # Converse outputConfig (JSON schema); schema-less JSON is refused by the codec
            exact_token_count=settings.count_tokens == "api",
            completion=True,
        )
        timeouts = Timeouts(
            connect=settings.connect_timeout_s,
            first_byte=settings.read_timeout_s,
            idle=settings.read_timeout_s,
        )

        def upstream(url: str) -> SignedUpstream:
            return SignedUpstream(
                http,
                url,
                name,
                region=settings.region,
                credentials=credentials,
                bearer=bearer,
                timeouts=timeouts,
                errors=BedrockErrorPolicy(settings.region),
                max_in_flight=settings.max_connections,
            )

        self.runtime = upstream(settings.runtime_url)
        self.control = upstream(settings.control_url)
        self.profiles = ProfileModels(self.control, settings.underlying_models)

    @classmethod
    def from_config(
        cls,
        name: str,
        options: Section,
        http: UpstreamPool,
        env: Mapping[str, str],
        *,
        merge_reads: bool = True,
    ) -> BedrockProvider:
        options.reject_unknown(OPTION_KEYS + CREDENTIAL_KEYS)
        profile = options.string("profile")
        # The standard chain: the option, then AWS_REGION / AWS_DEFAULT_REGION / the profile's region.
        region = options.string("region") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        region = region or profile_region(env, profile or env.get("AWS_PROFILE", ""))
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
            underlying_models=underlying_models(options),
            default_max_tokens=options.integer("default_max_tokens", 4096, minimum=1),
            connect_timeout_s=options.number("connect_timeout_s", 10.0, minimum=0.1),
            read_timeout_s=options.number("read_timeout_s", 3600.0, minimum=0.1),
            max_connections=options.integer("max_connections", 50, minimum=1),
            count_tokens=options.choice("count_tokens", ("api", "estimate"), "api"),
            health_check=options.choice(
                "health_check", ("credentials", "list_models", "none"), "credentials"
            ),
        )
        credentials = resolver_from_config(options, env, http)
        return cls(name, settings, http, credentials, bearer_token(options, env), merge_reads=merge_reads)

    async def aclose(self) -> None:
        await self.profiles.aclose()
        await self.credentials.aclose()  # the pool's connections belong to the server

    # --- helpers -------------------------------------------------------------------------------

    def model_id(self, model: str) -> str:
        if not model:
            raise invalid_argument("model: a Bedrock model id or ARN is required")
        s = self.settings
        return models.inference_model_id(model, s.region, s.inference_profile, s.inference_profile_prefix)

    async def _family_id(self, model_id: str) -> str:
        """The id whose family decides what `model_id` is sent (its own, but for an application
        inference profile: the model it runs)."""
        return await self.profiles.underlying(model_id)

    def _error(self, exc: BaseException, model: str) -> GatewayError:
        return translate(exc, self.name, model, self.settings.region)

    async def _post(
        self, model: str, model_id: str, operation: str, body: bytes, accept: bool = False
    ) -> tuple[dict[str, Any], Mapping[str, str]]:
        """A unary runtime call: its JSON object and the response headers."""
        headers = {"Content-Type": JSON, **({"Accept": JSON} if accept else {})}
        try:
            raw, response_headers = await self.runtime.fetch(
                "POST", model_path(model_id, operation), Payload(body, headers), model=model
            )
        except Exception as exc:
            raise self._error(exc, model) from exc
        return codec.decode_json_object(raw, f"Bedrock {operation} response"), response_headers

    async def _events(
        self,
        model: str,
        model_id: str,
        operation: str,
        payload: Payload,
        decode: Callable[[dict[str, Any]], list[StreamEvent]],
        end: Callable[[], list[StreamEvent]],
    ) -> AsyncGenerator[StreamEvent, None]:
        """POST, then decode the event stream; the response is closed on every exit (cancel too),
        which drops an unfinished connection: Bedrock stops generating."""
        frames = FrameReader()

        def step(event: dict[str, Any]) -> list[StreamEvent]:
            decoded = decode(event)
            for item in decoded:
                if isinstance(item, UsageEvent):  # ConverseStream's `metadata`
                    report_partial_usage(item.usage)  # charged if the stream is cut
            return decoded

        try:
            async with self.runtime.stream_bytes(
                model_path(model_id, operation), payload, model=model
            ) as chunks:
                async for decoded in relay_reads(chunks, frames.feed, step, merge=self.merge_reads):
                    yield decoded
            frames.end()
            for decoded in end():
                yield decoded
        except Exception as exc:
            raise self._error(exc, model) from exc

    # --- capabilities and health ---------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        return self._capabilities

    async def health_check(self) -> HealthStatus:
        started = time.perf_counter_ns()
        mode = self.settings.health_check
        if mode == "none":
            return HealthStatus(healthy=True)
        try:
            if mode == "list_models":
                await control.foundation_models(self.control)
            elif not self.bearer:
                await self.credentials.get()
        except Exception as exc:  # a probe reports; it never raises
            return HealthStatus(healthy=False, message=self._error(exc, "").message)
        return HealthStatus(healthy=True, latency_us=(time.perf_counter_ns() - started) // 1000)

    # --- chat (Converse) -----------------------------------------------------------------------

    async def _converse_kwargs(self, request: ChatRequest) -> dict[str, Any]:
        model_id = self.model_id(request.model)
        family_id = await self._family_id(model_id)
        return codec.converse_request(
            request,
            model_id,
            prompt_caching=self.settings.prompt_caching,
            family_id=family_id,
            unresolved=self.profiles.unresolved(model_id),
        )

    async def chat(self, request: ChatRequest) -> ChatResponse:
        kwargs = await self._converse_kwargs(request)
        response, _ = await self._post(request.model, kwargs["modelId"], "converse", json_body(kwargs))
        emulated = codec.emulated_fields(request)
        return await accumulate(replay(codec.converse_response_events(response, request.model, emulated)))

    async def chat_stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        kwargs = await self._converse_kwargs(request)
        payload = Payload(json_body(kwargs), {"Content-Type": JSON})
        decoder = codec.ConverseStreamDecoder(request.model, codec.emulated_fields(request))
        events = self._events(
            request.model, kwargs["modelId"], "converse-stream", payload, decoder.feed, decoder.end
        )
        async with aclosing(events) as stream:
            async for event in stream:
                yield event

    # --- completions (InvokeModel with the family's body) --------------------------------------

    async def _invoke_family(self, request: CompletionRequest) -> tuple[str, Family]:
        """The id to call and its family (an application profile's: its model's); OTHER for models
        with no known InvokeModel body (imported models, profiles whose model is unknown), which go
        through Converse."""
        model_id = self.model_id(request.model)
        return model_id, models.family(await self._family_id(model_id))

    def _invoke_body(self, request: CompletionRequest, family: Family, stream: bool = False) -> bytes:
        body = codec.invoke_body(family, request, self.settings.default_max_tokens, stream=stream)
        return json.dumps(body).encode()

    async def complete(self, request: CompletionRequest) -> CompletionResponse:
        model_id, family = await self._invoke_family(request)
        if family is Family.OTHER:
            whole = await self.chat(request.as_chat())
            return CompletionResponse(text=whole.text, usage=whole.usage, finish=whole.finish)
        body = self._invoke_body(request, family)
        response, headers = await self._post(request.model, model_id, "invoke", body, accept=True)
        events = with_header_usage(codec.InvokeDecoder(family, request.model).response(response), headers)
        whole = await accumulate(replay(events))
        return codec.completion(whole, request.model)

    async def complete_stream(self, request: CompletionRequest) -> AsyncGenerator[StreamEvent, None]:
        model_id, family = await self._invoke_family(request)
        if family is Family.OTHER:
            async with aclosing(self.chat_stream(request.as_chat())) as chat_events:
                async for event in chat_events:
                    yield event
            return
        body = self._invoke_body(request, family, stream=True)
        # botocore's headers for this call: the body's type, and the type wanted inside the chunks.
        payload = Payload(body, {"Content-Type": JSON, "X-Amzn-Bedrock-Accept": JSON})
        decoder = codec.InvokeDecoder(family, request.model)
        # Read only if the stream is cut before its end: what the chunks reported until then.
        report_partial_usage(decoder.heard)

        def decode(event: dict[str, Any]) -> list[StreamEvent]:
            chunk = codec.stream_chunk_payload(event)
            return [] if chunk is None else decoder.feed(chunk)

        events = self._events(
            request.model, model_id, "invoke-with-response-stream", payload, decode, decoder.end
        )
        async with aclosing(events) as stream:
            async for event in stream:
                yield event

    async def _invoke_json(self, model_id: str, body: dict[str, Any], model: str) -> dict[str, Any]:
        response, _ = await self._post(model, model_id, "invoke", json.dumps(body).encode(), accept=True)
        return response

    # --- models, tokens, embeddings ------------------------------------------------------------

    async def list_models(self) -> list[ModelInfo]:
        try:
            summaries = await control.foundation_models(self.control)
            profiles = await control.inference_profiles(self.control)
        except Exception as exc:
            raise self._error(exc, "") from exc
        result: list[ModelInfo] = []
        for summary in summaries:
            inputs, outputs = summary.get("inputModalities", []), summary.get("outputModalities", [])
            model_id = str(summary.get("modelId", ""))
            offered = converse_features(model_id) or UNKNOWN_FEATURES
            result.append(
                ModelInfo(
                    id=model_id,
                    display_name=f"{summary.get('providerName', '')} {summary.get('modelName', '')}".strip(),
                    vision="IMAGE" in inputs,
                    tools="TEXT" in outputs and offered.tools,
                    reasoning=bool(offered.reasoning),
                    embeddings="EMBEDDING" in outputs,
                )
            )
        for profile in profiles:
            model_id = str(profile.get("inferenceProfileId", ""))
            offered = converse_features(model_id) or UNKNOWN_FEATURES
            result.append(
                ModelInfo(
                    id=model_id,
                    display_name=profile.get("inferenceProfileName", ""),
                    vision=offered.vision,
                    tools=offered.tools,
                    reasoning=bool(offered.reasoning),
                )
            )
        return result

    async def count_tokens(self, request: CountTokensRequest) -> TokenCount:
        model_id = self.model_id(request.model)
        if self.settings.count_tokens == "estimate":
            return await super().count_tokens(request)
        family_id = await self._family_id(model_id)
        if models.family(family_id) is not Family.ANTHROPIC:
            return await super().count_tokens(request)  # the documented local estimate
        messages = request.messages or [Message(Role.USER, (TextPart(request.text or " "),))]
        chat = ChatRequest(model=request.model, messages=messages, tools=request.tools)
        kwargs = await self._converse_kwargs(chat)
        body = json_body({"input": codec.count_tokens_input(kwargs)})
        try:
            # CountTokens takes the foundation model id, not an inference profile.
            foundation = models.strip_profile(family_id)
            counted, _ = await self._post(request.model, foundation, "count-tokens", body)
        except GatewayError as exc:
            if exc.kind is ErrorKind.INVALID_ARGUMENT:  # the model does not support counting
                return await super().count_tokens(request)
            raise
        return TokenCount(
            input_tokens=int(counted.get("inputTokens", 0)), estimated=False, model=request.model
        )

    async def embed(self, request: EmbedRequest) -> EmbedResult:
        model_id = self.model_id(request.model)
        family_id = await self._family_id(model_id)  # the body is the model's; the call, `model_id`
        family = models.family(family_id)
        if family is Family.TITAN and models.is_embedding_model(family_id):
            # Titan embeds one text per call: make the calls concurrently (the pool bounds them).
            bodies = await all_or_first_error(
                self._invoke_json(
                    model_id, codec.titan_embed_body(text, family_id, request.dimensions), request.model
                )
                for text in request.inputs
            )
            results = [codec.titan_embed_response(body) for body in bodies]
            tokens = sum(count for _, count in results)
            return EmbedResult([v for v, _ in results], Usage(input_tokens=tokens), model=request.model)
        if family is Family.COHERE and models.is_embedding_model(family_id):
            body = await self._invoke_json(
                model_id,
                codec.cohere_embed_body(request.inputs, family_id, request.dimensions),
                request.model,
            )
            vectors = codec.cohere_embed_response(body, len(request.inputs))
            # Cohere on Bedrock reports no token counts for embeddings: estimate them.
            tokens = sum(estimate_tokens(text) for text in request.inputs)
            return EmbedResult(vectors, Usage(input_tokens=tokens, estimated=True), model=request.model)
        unresolved = self.profiles.unresolved(model_id)
        raise invalid_argument(
            f"model: {request.model!r} is not a Bedrock embedding model (use amazon.titan-embed-* or cohere.embed-*)"
            + (f"; {unresolved}" if unresolved else "")
        )


async def replay(events: list[StreamEvent]) -> AsyncIterator[StreamEvent]:
    """A whole response's events as a stream, so unary calls accumulate exactly like streams."""
    for event in events:
        yield event


def json_body(kwargs: Mapping[str, Any]) -> bytes:
    """A Converse-style request body as botocore serialises it: the members but `modelId` (it is in
    the path), `json.dumps` with its defaults, and bytes (images) as base64."""
    return json.dumps({k: v for k, v in kwargs.items() if k != "modelId"}, default=_base64).encode()


def _base64(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def with_header_usage(events: list[StreamEvent], headers: Mapping[str, str]) -> list[StreamEvent]:
    """InvokeModel's token counts from its response headers where the body reported none."""
    counted = (_header_int(headers, INPUT_TOKENS_HEADER), _header_int(headers, OUTPUT_TOKENS_HEADER))
    if counted == (0, 0):
        return events
    fixed: list[StreamEvent] = []
    for event in events:
        if isinstance(event, UsageEvent) and not event.usage.input_tokens and not event.usage.output_tokens:
            raw = {**event.usage.raw, INPUT_TOKENS_HEADER: counted[0], OUTPUT_TOKENS_HEADER: counted[1]}
            event = UsageEvent(Usage(input_tokens=counted[0], output_tokens=counted[1], raw=raw))
        fixed.append(event)
    return fixed


def _header_int(headers: Mapping[str, str], name: str) -> int:
    value = headers.get(name, "").strip()
    return int(value) if value.isdigit() else 0


def underlying_models(options: Section) -> dict[str, str]:
    """`underlying_models`: model id or ARN -> the foundation model id it runs (profiles.py)."""
    table = options.table("underlying_models").raw()
    for arn, model in table.items():
        if not isinstance(model, str) or not model:
            raise options.error("underlying_models", f"{arn!r}: the foundation model id, a string")
    return {str(arn): str(model) for arn, model in table.items()}


def profile_region(env: Mapping[str, str], profile: str) -> str:
    """The `region` of a profile in the AWS config file (AWS_CONFIG_FILE, else ~/.aws/config).

    A synchronous read, on purpose: the region names the endpoints and signs every request, and a
    missing one must fail the configuration at start-up. It runs only when neither `region` nor
    AWS_REGION / AWS_DEFAULT_REGION is set, once, while the server is built (providers, and routing
    groups' own-credential deployments, are all built then; there is no configuration reload):
    before the port is bound, so no request can be waiting on the loop. Measured on a 22-profile
    file: 3.2 ms for the first read (configparser's import included), 0.5 ms (median) after;
    0.13 ms when the file is absent. The credential chain's own reads of the same files run in a
    thread (credentials/shared_files.py).
    """
    import configparser  # only when no region is configured (~160 KiB of heap otherwise held)

    path = Path(env.get("AWS_CONFIG_FILE") or Path.home() / ".aws" / "config").expanduser()
    parser = configparser.RawConfigParser()
    try:
        parser.read(path)  # at start-up, before the port is bound (see above)
    except configparser.Error:
        return ""
    section = f"profile {profile}" if profile and profile != "default" else "default"
    return parser.get(section, "region", fallback="")


def from_config(name: str, options: Section, context: ProviderContext) -> BedrockProvider:
    return BedrockProvider.from_config(
        name, options, context.http, os.environ, merge_reads=context.merge_reads
    )
