"""What the Anthropic, Gemini/Vertex and Cohere fakes share: a loopback aiohttp server that records
every request, checks it against the vendor's documented format, and plays a scenario chosen by the
model name (so a person can try each behaviour by hand: `provider-gateway` pointed at the fake, model
`tools`, `error-429`, `cut`...).

Scenarios: text, tools, reasoning, vision (text, after checking the image encoding), cut (stream
stops without its terminal event), malformed (an event that is not JSON), midstream-error (the
vendor's in-stream error after the first text), early-error (Anthropic's in-stream error before
any content), hang (one event, then wait until the client goes away), error-<status>
(an error response before the first byte), cut-after-end (a whole stream, then a dropped
connection instead of a clean close), tools-max-tokens (a tool call cut by max_tokens: half its
arguments, then the stop reason, and no end of the call). A non-streaming request gets the vendor's
documented unary body for the same conversation (`whole`), or the failure a unary call meets where
a stream would fail midway. A model name may also end in a scenario
(`claude-tools`, `gemini-error-429`), which Vertex's Claude routing needs.

Trying a provider by hand:
    python -m provider_gateway.fakes.anthropic --port 8081 &
    export FAKE_KEY=test-anthropic-key
    cat > fake.toml <<'TOML'
    [providers.claude]
    kind = "anthropic"
    base_url = "http://127.0.0.1:8081"
    api_key_env = "FAKE_KEY"
    TOML
    provider-gateway serve --config fake.toml &
    provider-gateway chat --model claude/reasoning --show-reasoning "hi"
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

SCENARIOS = (
    "text",
    "tools",
    "reasoning",
    "vision",
    "cut",
    "malformed",
    "midstream-error",
    "early-error",
    "hang",
    "cut-after-end",
    "tools-max-tokens",
)


@dataclass(slots=True)
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


_ERROR_SUFFIX = re.compile(r"(?:^|-)(error-\d{3})$")


def scenario_of(model: str) -> str:
    """The scenario a model name asks for, as its whole name or a suffix: `tools`, `claude-tools`,
    `gemini-error-429`; any other name plays `text`."""
    name = model.rsplit("/", 1)[-1]
    if match := _ERROR_SUFFIX.search(name):
        return match.group(1)
    for scenario in sorted(SCENARIOS, key=len, reverse=True):
        if name == scenario or name.endswith("-" + scenario):
            return scenario
    return "text"


def error_status(scenario: str) -> int | None:
    if scenario.startswith("error-"):
        try:
            return int(scenario.removeprefix("error-"))
        except ValueError:
            return None
    return None


@dataclass
class FakeVendor:
    """Base: subclasses add routes and vendor checks; tests read `requests`, `problems`, events."""

    requests: list[Recorded] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    streams_started: int = 0
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    hanging: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def calls(self) -> list[Recorded]:
        """The requests other than GETs (model listings, which health probes also send)."""
        return [r for r in self.requests if r.method != "GET"]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.add_routes(self.routes())
        # Cancel the handler when the client goes away, so `hang` can see the disconnect.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeVendor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- helpers for subclasses ------------------------------------------------------------------

    async def record(self, request: web.Request) -> Recorded:
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            try:
                body = json.loads(raw)
            except ValueError:
                self.problems.append(f"{request.path}: body is not JSON")
                body = raw
        headers = {k.lower(): v for k, v in request.headers.items()}
        recorded = Recorded(request.method, request.path, dict(request.query), headers, body)
        self.requests.append(recorded)
        return recorded

    def check(self, condition: bool, problem: str) -> bool:
        if not condition:
            self.problems.append(problem)
        return condition

    def check_fields(self, body: Any, required: Mapping[str, type | tuple[type, ...]], where: str) -> bool:
        ok = self.check(isinstance(body, dict), f"{where}: body must be a JSON object")
        for name, kind in required.items():
            ok = ok and self.check(
                isinstance(body.get(name), kind), f"{where}: {name!r} missing or not {kind}"
            )
        return ok

    async def stream(
        self,
        request: web.Request,
        frames: list[str],
        *,
        ending: str = "",
        content_type: str = "text/event-stream",
    ) -> web.StreamResponse:
        """Write frames one by one; `ending` is "" (clean), "cut" (drop the connection), or "hang"."""
        self.streams_started += 1
        response = web.StreamResponse(headers={"Content-Type": content_type, "Cache-Control": "no-cache"})
        await response.prepare(request)
        for frame in frames:
            await response.write(frame.encode())
        if ending == "cut":
            transport = request.transport
            if transport is not None:
                transport.close()
            return response
        if ending == "hang":
            try:
                self.hanging.set()
                await asyncio.Event().wait()
            finally:
                self.disconnected.set()
        await response.write_eof()
        return response

    async def whole(
        self, request: web.Request, body: Any, scenario: str, failed: web.Response
    ) -> web.StreamResponse:
        """A unary answer: `body`, or for the failure scenarios a body that is not JSON (malformed),
        half a body then a dropped connection (cut) or a wait (hang), and `failed`, what the vendor
        answers where its stream would fail midway (midstream-error, early-error)."""
        if scenario == "malformed":
            return web.Response(body=b"{not json", content_type="application/json")
        if scenario in ("midstream-error", "early-error"):
            return failed
        if scenario in ("cut", "hang"):
            payload = json.dumps(body)
            half = [payload[: len(payload) // 2]]
            return await self.stream(request, half, ending=scenario, content_type="application/json")
        return json_response(body)


def sse(data: Any, event: str = "") -> str:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=dict(headers or {}))
