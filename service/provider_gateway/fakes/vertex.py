"""A fake Vertex AI endpoint: Gemini (`publishers/google`) and Claude (`publishers/anthropic`) on one
server, as on `{location}-aiplatform.googleapis.com`, checking the bearer token and request shapes.

Run by hand: `python -m provider_gateway.fakes.vertex --port 8084`.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

from provider_gateway.fakes.anthropic import FakeAnthropic
from provider_gateway.fakes.gemini import FakeGemini
from provider_gateway.fakes.vendor_base import FakeVendor

PREFIX = "/v1/projects/{project}/locations/{location}/publishers"


class FakeVertex(FakeGemini, FakeAnthropic):
    def __init__(self, vertex_token: str = "test-vertex-token") -> None:
        FakeVendor.__init__(self)
        self.api_key = ""
        self.vertex_token = vertex_token

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(PREFIX + "/google/models/{model_action}", self.vertex),
            web.post(PREFIX + "/anthropic/models/{model_action}", self.vertex_raw_predict),
        ]


async def _serve(port: int) -> None:
    fake = FakeVertex()
    print(f"fake vertex on {await fake.start(port)} (Bearer {fake.vertex_token})", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8084)
    asyncio.run(_serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
