"""A completion that asks for token log-probabilities, run as the one-message chat.

Providers answer `complete` through their completion endpoint where they have one (Anthropic's
legacy one, Bedrock's InvokeModel bodies) and as a one-message chat everywhere else. Log-
probabilities are a chat feature: the routing refuses them where a provider or model has none
(FAILED_PRECONDITION naming `logprobs`, routing/capabilities.py) and the chat adapters ask for and
read them. So a CompleteRequest with `logprobs` is sent as that chat (`CompletionRequest.as_chat`,
with every one of its fields), and answered as a completion: its text, usage, finish and entries. Completions without them keep
their own path. (The provider's span and metrics name the operation `chat` for these.)
"""

from __future__ import annotations

from provider_gateway import domain as d
from provider_gateway.server import convert
from provider_gateway.server.finish_templates import FinishTemplates
from provider_gateway.v1 import provider_service_pb2 as pb


def answer(response: d.ChatResponse, finish: d.Finish, finishes: FinishTemplates) -> pb.CompleteResponse:
    """The chat's answer as the completion's: what a completion has, and the entries of its text."""
    completion = d.CompletionResponse(text=response.text, usage=response.usage, finish=response.finish)
    message = convert.completion_response_to_proto(completion, finish, finishes)
    for entry in response.logprobs:
        message.logprobs.add(**convert.logprob_fields(entry))
    return message
