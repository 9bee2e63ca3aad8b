"""Typed async and sync clients for provider-gateway's `ProviderService`.

    from provider_gateway_client import SyncGatewayClient
    with SyncGatewayClient() as gateway:          # PROVIDER_GATEWAY_TARGET, else localhost:50051
        print(gateway.chat("mock/echo", "Hello").text)

`chat` returns a `ChatResult`; `chat_stream` a stream of typed events (`Text`, `Reasoning`,
`ToolCallStarted`, `ToolCallArguments`, `ToolCallFinished`, `UsageReport`, `RawContent`, `Finished`),
batches of events (`StreamOptions.batch_events`) flattened, with `text_stream` and `final()`;
`list_models`, `list_providers`, `count_tokens` and `embed` return `ModelInfo`s, `Providers`,
`TokenCount` and `Embeddings`; failures raise `GatewayError` subclasses. `pb` is the generated
protobuf module for building requests with every field.
"""

from provider_gateway_client.client import GatewayClient
from provider_gateway_client.config import CHANNEL_OPTIONS, DEFAULT_TARGET, SERVICE_CONFIG
from provider_gateway_client.errors import (
    AuthenticationError,
    DeadlineExceededError,
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UnavailableError,
    retry_after,
)
from provider_gateway_client.events import (
    AttemptReport,
    Event,
    Finished,
    RawContent,
    Reasoning,
    Text,
    ToolCallArguments,
    ToolCallFinished,
    ToolCallStarted,
    UsageReport,
    text_of,
    typed_event,
    unbatched,
)
from provider_gateway_client.info import (
    Capabilities,
    Embedding,
    Embeddings,
    ModelInfo,
    ProviderInfo,
    Providers,
    RateLimits,
    TokenCount,
)
from provider_gateway_client.requests import chat_request, complete_request, message
from provider_gateway_client.results import ChatResult, ToolCall, tool_result
from provider_gateway_client.streams import AsyncChatStream, ChatStream
from provider_gateway_client.sync_client import SyncGatewayClient
from provider_gateway_client.v1 import provider_service_pb2 as pb

__all__ = [
    "CHANNEL_OPTIONS",
    "DEFAULT_TARGET",
    "SERVICE_CONFIG",
    "AsyncChatStream",
    "AttemptReport",
    "AuthenticationError",
    "Capabilities",
    "ChatResult",
    "ChatStream",
    "DeadlineExceededError",
    "Embedding",
    "Embeddings",
    "Event",
    "Finished",
    "GatewayClient",
    "GatewayError",
    "InvalidRequestError",
    "ModelInfo",
    "NotFoundError",
    "PermissionDeniedError",
    "ProviderInfo",
    "Providers",
    "RateLimitError",
    "RateLimits",
    "RawContent",
    "Reasoning",
    "SyncGatewayClient",
    "Text",
    "TokenCount",
    "ToolCall",
    "ToolCallArguments",
    "ToolCallFinished",
    "ToolCallStarted",
    "UnavailableError",
    "UsageReport",
    "chat_request",
    "complete_request",
    "message",
    "pb",
    "retry_after",
    "text_of",
    "tool_result",
    "typed_event",
    "unbatched",
]
