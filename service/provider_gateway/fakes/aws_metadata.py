"""Fake AWS credential endpoints on 127.0.0.1: EC2 instance metadata (IMDSv2), the ECS/EKS container
endpoint and STS (AssumeRoleWithWebIdentity, AssumeRole), in one server, speaking each wire format as AWS documents it.

- IMDS: `PUT /latest/api/token` (needs `x-aws-ec2-metadata-token-ttl-seconds`, else 400) answers a
  token; `GET /latest/meta-data/iam/security-credentials/` the role's name and `.../<role>` its
  credentials JSON, both only with that token (else 401). `imds_role = None` is an instance with no
  role (404); `imds_put_hangs` drops the token's answer, as a hop limit of 1 does in a container.
- Container: `GET /v1/credentials` (any path), checking `Authorization` against `container_token`.
- STS: `POST /` with the query protocol's form; an XML `<Action>Response`, or an XML ErrorResponse
  (InvalidIdentityToken for a token other than `sts_token`; AssumeRole must carry a SigV4
  `Authorization`, whose signature is not checked).

Every answer hands out new credentials (`ASIAFAKE000000000001`, ...) that expire after `lifetime`.
`fail(route, status, ...)` scripts the next answers of a route ("imds", "container", "sts");
`hold()` keeps credential answers waiting until `release()`, to see concurrent callers queue.
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from aiohttp import web

from provider_gateway.fakes.server import FakeUpstream, RecordedRequest, Reply

STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
# The STS actions served, with the parameters each needs besides RoleArn and RoleSessionName.
STS_ACTIONS = {"AssumeRoleWithWebIdentity": ("WebIdentityToken",), "AssumeRole": ()}
SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}")  # STS's documented RoleSessionName pattern
IMDS_TOKEN = "fake-imds-session-token-AQAEAK"
ROLES_PATH = "/latest/meta-data/iam/security-credentials/"


@dataclass(frozen=True, slots=True)
class Issued:
    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: datetime

    @property
    def expiration_text(self) -> str:
        return self.expiration.strftime("%Y-%m-%dT%H:%M:%SZ")


def route_of(request: RecordedRequest) -> str:
    if request.path.startswith("/latest/"):
        return "imds"
    return "sts" if request.method == "POST" else "container"


class FakeAwsMetadata(FakeUpstream):
    """`async with FakeAwsMetadata() as fake`: `fake.url` serves IMDS, the container endpoint and STS."""

    def __init__(self, *, lifetime: timedelta = timedelta(hours=1)) -> None:
        super().__init__()
        self.lifetime = lifetime
        self.imds_role: str | None = "gateway-role"
        self.imds_put_hangs = False
        self.container_token: str | None = None
        self.sts_token = "fake-oidc-token-eyJhbGciOi"
        self.issued: list[Issued] = []
        self._failures: dict[str, deque[int]] = defaultdict(deque)
        self._held: asyncio.Event | None = None
        self._holding = asyncio.Event()
        self.on("PUT", "/latest/api/token", self._imds_token)
        self.on("GET", ROLES_PATH, self._imds_role_name)
        self.on("GET", ROLES_PATH + "*", self._imds_credentials)
        self.on("POST", "/", self._sts)
        self.on("GET", "/*", self._container)

    # --- scripting -----------------------------------------------------------------------------

    def fail(self, route: str, *statuses: int) -> None:
        self._failures[route].extend(statuses)

    def hold(self) -> None:
        self._held = asyncio.Event()
        self._holding = asyncio.Event()

    async def until_held(self, within_s: float = 10.0) -> None:
        """Until a request is waiting for `release()`."""
        async with asyncio.timeout(within_s):
            await self._holding.wait()

    def release(self) -> None:
        if self._held is not None:
            self._held.set()

    def calls(self, route: str) -> list[RecordedRequest]:
        return [request for request in self.requests if route_of(request) == route]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self._held is not None:
            self._holding.set()
            await self._held.wait()
        return await super()._handle(request)

    async def stop(self) -> None:
        self.release()
        await super().stop()

    # --- helpers -------------------------------------------------------------------------------

    def _issue(self, source: str) -> Issued:
        number = len(self.issued) + 1
        issued = Issued(
            access_key_id=f"ASIAFAKE{number:012d}",
            secret_access_key=f"fake-secret-{source}-{number:04d}",
            session_token=f"fake-session-token-{source}-{number:04d}",
            expiration=datetime.now(UTC).replace(microsecond=0) + self.lifetime,
        )
        self.issued.append(issued)
        return issued

    def _scripted(self, route: str) -> int | None:
        return self._failures[route].popleft() if self._failures[route] else None

    def _credentials_json(self, source: str) -> Reply:
        issued = self._issue(source)
        return Reply.json(
            {
                "Code": "Success",
                "LastUpdated": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "Type": "AWS-HMAC",
                "AccessKeyId": issued.access_key_id,
                "SecretAccessKey": issued.secret_access_key,
                "Token": issued.session_token,
                "Expiration": issued.expiration_text,
            }
        )

    # --- IMDS ----------------------------------------------------------------------------------

    def _imds_token(self, request: RecordedRequest) -> Reply:
        if self.imds_put_hangs:
            return Reply(stall=True)  # the answer never makes it back (hop limit)
        if "x-aws-ec2-metadata-token-ttl-seconds" not in request.headers:
            return text_reply("Missing x-aws-ec2-metadata-token-ttl-seconds", 400)
        if (status := self._scripted("imds")) is not None:
            return text_reply("", status)
        return text_reply(IMDS_TOKEN)

    def _imds_denied(self, request: RecordedRequest) -> Reply | None:
        if request.headers.get("x-aws-ec2-metadata-token") != IMDS_TOKEN:
            return text_reply("", 401)
        if self.imds_role is None:
            return text_reply("", 404)
        return None

    def _imds_role_name(self, request: RecordedRequest) -> Reply:
        return self._imds_denied(request) or text_reply(self.imds_role or "")

    def _imds_credentials(self, request: RecordedRequest) -> Reply:
        if denied := self._imds_denied(request):
            return denied
        if request.path.removeprefix(ROLES_PATH) != self.imds_role:
            return text_reply("", 404)
        if (status := self._scripted("imds")) is not None:
            return text_reply("", status)
        return self._credentials_json("imds")

    # --- container -----------------------------------------------------------------------------

    def _container(self, request: RecordedRequest) -> Reply:
        if self.container_token is not None and request.headers.get("authorization") != self.container_token:
            return Reply.error(403, {"code": "AccessDeniedException", "message": "bad token"})
        if (status := self._scripted("container")) is not None:
            return Reply.error(status, {"code": "ServerError", "message": "scripted"})
        return self._credentials_json("container")

    # --- STS -----------------------------------------------------------------------------------

    def _sts(self, request: RecordedRequest) -> Reply:
        form = sts_form(request)
        action = form.get("Action", "")
        if action not in STS_ACTIONS or form.get("Version") != "2011-06-15":
            return sts_error(400, "InvalidAction", "Could not find operation for this Action and Version")
        for name in ("RoleArn", "RoleSessionName", *STS_ACTIONS[action]):
            if not form.get(name):
                return sts_error(400, "MissingParameter", f"The request must contain the parameter {name}")
        if not SESSION_NAME.fullmatch(form["RoleSessionName"]):
            return sts_error(
                400, "ValidationError", "1 validation error detected: Value at 'roleSessionName' failed"
            )
        if action == "AssumeRole":  # signed by the caller's credentials (the signature is not checked)
            if not request.headers.get("authorization", "").startswith("AWS4-HMAC-SHA256 Credential="):
                return sts_error(403, "MissingAuthenticationToken", "Request is missing Authentication Token")
        elif form["WebIdentityToken"] != self.sts_token:
            return sts_error(
                400, "InvalidIdentityToken", "Couldn't retrieve verification key from your identity provider"
            )
        if (status := self._scripted("sts")) is not None:
            code = "IDPCommunicationError" if status == 400 else "ServiceUnavailable"
            return sts_error(status, code, "scripted failure")
        return sts_reply(action, self._issue("sts"), form["RoleArn"], form["RoleSessionName"])


def sts_form(request: RecordedRequest) -> dict[str, str]:
    """The query protocol's form body (each parameter once)."""
    return {
        name: values[0] for name, values in parse_qs(request.body.decode(), keep_blank_values=True).items()
    }


def text_reply(text: str, status: int = 200) -> Reply:
    return Reply(status=status, body=text.encode(), content_type="text/plain")


def sts_reply(action: str, issued: Issued, role_arn: str, session: str) -> Reply:
    role = role_arn.rsplit("/", 1)[-1]
    assumed = f"arn:aws:sts::123456789012:assumed-role/{escape(role)}/{escape(session)}"
    web_identity = action == "AssumeRoleWithWebIdentity"
    body = (
        f'<{action}Response xmlns="{STS_NAMESPACE}">\n'
        f"  <{action}Result>\n"
        + (
            "    <SubjectFromWebIdentityToken>system:serviceaccount:default:gateway</SubjectFromWebIdentityToken>\n"
            "    <Audience>sts.amazonaws.com</Audience>\n"
            if web_identity
            else ""
        )
        + f"    <AssumedRoleUser><Arn>{assumed}</Arn><AssumedRoleId>AROAFAKE:{escape(session)}</AssumedRoleId>"
        "</AssumedRoleUser>\n"
        "    <Credentials>\n"
        f"      <SessionToken>{issued.session_token}</SessionToken>\n"
        f"      <SecretAccessKey>{issued.secret_access_key}</SecretAccessKey>\n"
        f"      <Expiration>{issued.expiration_text}</Expiration>\n"
        f"      <AccessKeyId>{issued.access_key_id}</AccessKeyId>\n"
        "    </Credentials>\n"
        + (
            "    <Provider>arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/FAKE</Provider>\n"
            if web_identity
            else ""
        )
        + f"  </{action}Result>\n"
        "  <ResponseMetadata><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ResponseMetadata>\n"
        f"</{action}Response>\n"
    )
    return Reply(body=body.encode(), content_type="text/xml")


def sts_error(status: int, code: str, message: str) -> Reply:
    kind = "Receiver" if status >= 500 else "Sender"
    body = (
        f'<ErrorResponse xmlns="{STS_NAMESPACE}">\n'
        f"  <Error><Type>{kind}</Type><Code>{code}</Code><Message>{escape(message)}</Message></Error>\n"
        "  <RequestId>00000000-0000-0000-0000-000000000000</RequestId>\n"
        "</ErrorResponse>\n"
    )
    return Reply(status=status, body=body.encode(), content_type="text/xml")
