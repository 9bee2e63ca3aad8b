"""Typed async and sync clients for provider-gateway's `ProviderService`.

    from provider_gateway_client import SyncGatewayClient
    with SyncGatewayClient("localhost:50051") as gateway:
        print(gateway.chat("mock/echo", "Hello").text)

Streams yield typed events (`Text`, `Reasoning`, `ToolCallStarted`, `ToolCallArguments`,
`ToolCallFinished`, `UsageReport`, `Finished`); `pb` is the generated protobuf module for
building requests with every field.
"""

from provider_gateway_client.client import (
    CHANNEL_OPTIONS,
    SERVICE_CONFIG,
    GatewayClient,
    SyncGatewayClient,
    chat_request,
    complete_request,
    message,
    retry_after,
)
from provider_gateway_client.events import (
    Event,
    Finished,
    Reasoning,
    Text,
    ToolCallArguments,
    ToolCallFinished,
    ToolCallStarted,
    UsageReport,
    text_of,
    typed_event,
)
from provider_gateway_client.v1 import provider_service_pb2 as pb

__all__ = [
    "CHANNEL_OPTIONS",
    "SERVICE_CONFIG",
    "Event",
    "Finished",
    "GatewayClient",
    "Reasoning",
    "SyncGatewayClient",
    "Text",
    "ToolCallArguments",
    "ToolCallFinished",
    "ToolCallStarted",
    "UsageReport",
    "chat_request",
    "complete_request",
    "message",
    "pb",
    "retry_after",
    "text_of",
    "typed_event",
]
