"""Request checks at the edge: a bad request is rejected with INVALID_ARGUMENT naming the field.

Checks run on the protobuf message, before any provider sees the request.
"""

from __future__ import annotations

from provider_gateway.errors import invalid_argument
from provider_gateway.v1 import provider_service_pb2 as pb


def _sampling(request: pb.ChatRequest | pb.CompleteRequest) -> None:
    if request.HasField("temperature") and not 0.0 <= request.temperature <= 2.0:
        raise invalid_argument(f"temperature: must be between 0 and 2, got {request.temperature:g}")
    if request.HasField("top_p") and not 0.0 <= request.top_p <= 1.0:
        raise invalid_argument(f"top_p: must be between 0 and 1, got {request.top_p:g}")
    if request.HasField("max_tokens") and request.max_tokens <= 0:
        raise invalid_argument(f"max_tokens: must be positive, got {request.max_tokens}")


def chat(request: pb.ChatRequest) -> pb.ChatRequest:
    if not request.messages:
        raise invalid_argument("messages: at least one message is required")
    for i, message in enumerate(request.messages):
        if not message.content:
            raise invalid_argument(f"messages[{i}].content: a message needs at least one content part")
    _sampling(request)
    return request


def complete(request: pb.CompleteRequest) -> pb.CompleteRequest:
    if not request.prompt:
        raise invalid_argument("prompt: must not be empty")
    _sampling(request)
    return request


def count(request: pb.CountTokensRequest) -> pb.CountTokensRequest:
    if not request.text and not request.messages:
        raise invalid_argument("text or messages: give the text or the conversation to count")
    return request


def embed(request: pb.EmbedRequest) -> pb.EmbedRequest:
    if not request.inputs:
        raise invalid_argument("inputs: at least one text to embed is required")
    if request.dimensions < 0:
        raise invalid_argument(f"dimensions: must not be negative, got {request.dimensions}")
    return request
