"""A tool-calling round trip with the mock: `python examples/tools.py`."""

import json
import os

from provider_gateway_client import SyncGatewayClient, message, pb

TARGET = os.environ.get("GATEWAY_TARGET", "localhost:50051")

weather = pb.Tool(name="get_weather", description="Current weather for a city")
weather.parameters.update(
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
)

with SyncGatewayClient(TARGET) as gateway:
    conversation = [message("user", "What is the weather in Paris?")]
    answer = gateway.chat("mock/tools", conversation, tools=[weather])
    for call in answer.tool_calls:
        print(f"model asks: {call.name}({call.arguments_json})")
        # Send the call and our result back, as the next turn of the conversation.
        conversation.append(pb.Message(role=pb.ROLE_ASSISTANT, content=[pb.ContentPart(tool_call=call)]))
        result = pb.ToolResult(tool_call_id=call.id, name=call.name, content=json.dumps({"celsius": 18}))
        conversation.append(pb.Message(role=pb.ROLE_TOOL, content=[pb.ContentPart(tool_result=result)]))
    print(gateway.chat("mock/echo", conversation).text)
