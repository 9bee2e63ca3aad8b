"""Typed async and sync clients for provider-gateway's `ProviderService`.

from provider_gateway_client import GatewayClient
async with GatewayClient("localhost:50051") as gateway:
    async for event in gateway.chat_stream("mock/echo", "Hello"): print(event.text_delta.text, end="")
"""

from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway_client.client import GatewayClient, SyncGatewayClient, chat_request, message
from provider_gateway_client.events import text_of

__all__ = ["GatewayClient", "SyncGatewayClient", "chat_request", "message", "pb", "text_of"]
