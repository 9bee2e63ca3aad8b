"""A tool-calling round trip with the mock: `python examples/tools.py`.

Connects to PROVIDER_GATEWAY_TARGET, else localhost:50051 (`provider-gateway serve`).
"""

import json

from provider_gateway_client import SyncGatewayClient, message, pb, tool_result

weather = pb.Tool(name="get_weather", description="Current weather for a city")
weather.parameters.update(
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
)

with SyncGatewayClient() as gateway:
    conversation = [message("user", "What is the weather in Paris?")]
    answer = gateway.chat("mock/tools", conversation, tools=[weather])
    # The model's turn (with its tool calls), then one result per call: the next request.
    conversation.append(answer.message())
    for call in answer.tool_calls:
        print(f"model asks: {call.name}({call.arguments_json})")
        celsius = 18 if call.arguments["city"] == "Paris" else 20
        conversation.append(tool_result(call, json.dumps({"celsius": celsius})))
    print(gateway.chat("mock/echo", conversation).text)
