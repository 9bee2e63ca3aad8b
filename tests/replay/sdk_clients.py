"""The official SDKs' clients pointed at a replay's fake upstream, built one way for every replay
test: google-genai for the Gemini API or Vertex AI, botocore for Bedrock's runtime."""

from __future__ import annotations

from typing import Any

import google.oauth2.credentials
from botocore.config import Config
from botocore.session import get_session
from google import genai
from google.genai import types

from provider_gateway.fakes import FakeUpstream
from provider_gateway.fakes.bedrock import ACCESS_KEY, SECRET_KEY
from replay.support import KEY


def google_client(fake: FakeUpstream, *, vertex: bool = False) -> genai.Client:
    """google-genai's Gemini API client, or its Vertex AI client (which reads Vertex's fields as
    Vertex names them), at the fake."""
    if vertex:
        return genai.Client(
            vertexai=True,
            project="replay-project",
            location="us-east5",
            credentials=google.oauth2.credentials.Credentials(token=KEY),
            http_options=types.HttpOptions(base_url=fake.url, api_version="v1"),
        )
    return genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=fake.url, api_version="v1beta"))


def bedrock_runtime(fake: FakeUpstream, region: str) -> Any:
    """botocore's bedrock-runtime client at the fake, on the fake's credentials, one attempt a call
    (it blocks: call it in a thread, the fake answers on the test's loop)."""
    return get_session().create_client(
        "bedrock-runtime",
        region_name=region,
        endpoint_url=fake.url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"total_max_attempts": 1}),
    )
