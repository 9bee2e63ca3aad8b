"""The sync client in three lines, then a few more calls: `python examples/chat_sync.py`."""

import os

from provider_gateway_client import SyncGatewayClient

TARGET = os.environ.get("GATEWAY_TARGET", "localhost:50051")

with SyncGatewayClient(TARGET) as gateway:
    print(gateway.chat("mock/echo", "Hello").text)

    for piece in gateway.stream_text("mock/slow", "tokens as they come", timeout=10):
        print(piece, end="", flush=True)
    print()
    print([f"{m.provider}/{m.id}" for m in gateway.list_models()])
    print(gateway.health())
