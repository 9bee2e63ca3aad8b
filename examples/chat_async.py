"""Stream a chat answer with the async client: `python examples/chat_async.py "Hello there"`.

Connects to PROVIDER_GATEWAY_TARGET, else localhost:50051 (`provider-gateway serve`).
"""

import asyncio
import sys

from provider_gateway_client import Finished, GatewayClient, Reasoning, Text, ToolCallFinished, UsageReport


async def main(prompt: str) -> None:
    async with GatewayClient(timeout=30) as gateway:
        async for event in gateway.chat_stream("mock/reasoner", prompt, max_tokens=20):
            match event:
                case Reasoning(text=text):
                    print(f"\033[2m{text}\033[0m", end="", flush=True)
                case Text(text=text):
                    print(text, end="", flush=True)
                case ToolCallFinished(name=name):
                    print(f"\n[tool call {name}({event.arguments()})]")
                case UsageReport(input_tokens=tokens_in, output_tokens=tokens_out):
                    print(f"\n[{tokens_in} tokens in, {tokens_out} out]")
                case Finished(provider=provider, model=model, reason=reason):
                    print(f"[{provider}/{model}: {reason}]")


if __name__ == "__main__":
    asyncio.run(main(" ".join(sys.argv[1:]) or "Hello"))
