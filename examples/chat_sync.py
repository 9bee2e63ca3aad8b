"""The sync client in three lines, then a few more calls: `python examples/chat_sync.py`.

Connects to PROVIDER_GATEWAY_TARGET, else localhost:50051 (`provider-gateway serve`).
"""

from provider_gateway_client import SyncGatewayClient

with SyncGatewayClient() as gateway:
    print(gateway.chat("mock/echo", "Hello").text)

    with gateway.chat_stream("mock/slow", "tokens as they come", timeout=10) as stream:
        for piece in stream.text_stream:
            print(piece, end="", flush=True)
        print(f"\n[{stream.final().usage}]")
    print([f"{m.provider}/{m.id}" for m in gateway.list_models()])
    print(gateway.health())
