"""Request builders: a prompt string or a list of messages, plus any other request field."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from provider_gateway_client.v1 import provider_service_pb2 as pb

ROLES = {"system": pb.ROLE_SYSTEM, "user": pb.ROLE_USER, "assistant": pb.ROLE_ASSISTANT, "tool": pb.ROLE_TOOL}

Prompt = str | Sequence[pb.Message]


def message(role: str, text: str) -> pb.Message:
    """A message with one text part: `message("user", "Hello")`."""
    return pb.Message(role=ROLES[role], content=[pb.ContentPart(text=text)])


def chat_request(model: str, prompt: Prompt, **fields: Any) -> pb.ChatRequest:
    """A ChatRequest from a prompt string (one user message) or a list of messages.

    `fields` are any other ChatRequest fields: `max_tokens=100`, `tools=[...]`, `fallbacks=[...]`.
    """
    messages = [message("user", prompt)] if isinstance(prompt, str) else list(prompt)
    return pb.ChatRequest(model=model, messages=messages, **fields)


def complete_request(model: str, prompt: str, **fields: Any) -> pb.CompleteRequest:
    return pb.CompleteRequest(model=model, prompt=prompt, **fields)


def default_stream_options[R: (pb.ChatRequest, pb.CompleteRequest)](request: R) -> R:
    """`request` asking for the stream options this client reads, unless the caller set
    `stream_options` itself: the usage in the finish only, and events in hand together sent as one
    batch (each saves messages, whose gRPC cost dwarfs a short answer's); the streams flatten the
    batches (events.py). A gateway that predates an option ignores it."""
    if not request.HasField("stream_options"):
        request.stream_options.usage_in_finish = True
        request.stream_options.batch_events = True
    return request
