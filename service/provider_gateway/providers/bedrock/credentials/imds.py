"""EC2 instance metadata (IMDSv2): a session token by PUT, then the role's credentials by GET.

AWS_EC2_METADATA_DISABLED=true skips it. AWS_EC2_METADATA_SERVICE_ENDPOINT (or
AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6) moves it; AWS_METADATA_SERVICE_TIMEOUT (1 s) and
AWS_METADATA_SERVICE_NUM_ATTEMPTS (1) bound each call, botocore's defaults. The token's PUT answer
carries the instance's hop limit (1 by default), so from inside a container on the instance it is
dropped and the PUT times out: the error says to raise the limit to 2. IMDSv1 (no token) is never
used: it is what the hop limit and the token exist to protect against.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from provider_gateway.config import register_secret
from provider_gateway.errors import ErrorKind
from provider_gateway.http.pool import UpstreamPool
from provider_gateway.providers.bedrock.credentials.fetch import Reply, Unreachable, fetch
from provider_gateway.providers.bedrock.credentials.model import (
    AwsCredentials,
    NotSetUp,
    credentials_error,
    from_json,
)

IPV4, IPV6 = "http://169.254.169.254", "http://[fd00:ec2::254]"
TOKEN_PATH = "/latest/api/token"
ROLES_PATH = "/latest/meta-data/iam/security-credentials/"
TOKEN_TTL_S = "21600"
HOP_LIMIT_HINT = (
    "in a container, the instance's metadata hop limit must be at least 2 "
    "(aws ec2 modify-instance-metadata-options --http-put-response-hop-limit 2)"
)


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    try:
        value = float(env.get(name) or default)
    except ValueError:
        raise credentials_error(
            ErrorKind.UNAUTHENTICATED, f"{name} must be a number, got {env.get(name)!r}"
        ) from None
    return value if value > 0 else default


class InstanceMetadataSource:
    name = "the EC2 instance metadata service"

    def __init__(self, env: Mapping[str, str], pool: UpstreamPool) -> None:
        self.env = env
        self.pool = pool
        self._worked = False

    @property
    def disabled(self) -> bool:
        return self.env.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true"

    @property
    def endpoint(self) -> str:
        explicit = self.env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", "")
        if explicit:
            return explicit.rstrip("/")
        return IPV6 if self.env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "").lower() == "ipv6" else IPV4

    async def _call(self, method: str, path: str, headers: dict[str, str]) -> Reply:
        """One metadata call with botocore's attempts: again on no answer or a 5xx."""
        timeout_s = _number(self.env, "AWS_METADATA_SERVICE_TIMEOUT", 1.0)
        attempts = max(1, int(_number(self.env, "AWS_METADATA_SERVICE_NUM_ATTEMPTS", 1)))
        url = self.endpoint + path
        attempt = 1
        while True:
            try:
                reply = await fetch(self.pool, method, url, headers=headers, timeout_s=timeout_s)
            except Unreachable as error:
                if attempt < attempts:
                    attempt += 1
                    continue
                if self._worked:
                    raise credentials_error(
                        ErrorKind.UNAVAILABLE, f"no answer from {self.endpoint} ({error})"
                    ) from None
                hint = f"; {HOP_LIMIT_HINT}" if error.timed_out and method == "PUT" else ""
                raise NotSetUp(f"no instance metadata service at {self.endpoint} ({error}{hint})") from None
            if reply.status < 500 or attempt >= attempts:
                return reply
            attempt += 1

    async def load(self) -> AwsCredentials | None:
        if self.disabled:
            return None
        reply = await self._call("PUT", TOKEN_PATH, {"x-aws-ec2-metadata-token-ttl-seconds": TOKEN_TTL_S})
        if reply.status != 200 or not reply.body.strip():
            kind = ErrorKind.UNAVAILABLE if reply.status >= 500 else ErrorKind.UNAUTHENTICATED
            raise credentials_error(
                kind,
                f"the instance metadata service refused an IMDSv2 token (HTTP {reply.status}); "
                "IMDSv1 is not used: allow IMDSv2 on the instance",
            )
        token = register_secret(reply.body.decode("ascii", errors="replace").strip())
        authorized = {"x-aws-ec2-metadata-token": token}
        reply = await self._call("GET", ROLES_PATH, authorized)
        role = (
            reply.body.decode("utf-8", errors="replace").strip().splitlines()[0] if reply.body.strip() else ""
        )
        if reply.status == 404 or (reply.status == 200 and not role):
            raise credentials_error(
                ErrorKind.UNAUTHENTICATED, "this instance has no IAM role: attach an instance profile to it"
            )
        self._check(reply, "the role's name")
        reply = await self._call("GET", ROLES_PATH + role, authorized)
        self._check(reply, f"the credentials of role {role!r}")
        try:
            document = orjson.loads(reply.body)
        except orjson.JSONDecodeError:
            raise credentials_error(
                ErrorKind.UNAVAILABLE, "instance metadata returned credentials that are not JSON"
            ) from None
        code = document.get("Code", "Success") if isinstance(document, dict) else "Success"
        if code != "Success":
            raise credentials_error(
                ErrorKind.UNAVAILABLE,
                f"instance metadata has no credentials for role {role!r} (Code {code!r})",
            )
        credentials = from_json(document, "the instance metadata service")
        self._worked = True
        return credentials

    def _check(self, reply: Reply, what: str) -> None:
        if reply.status != 200:
            kind = ErrorKind.UNAVAILABLE if reply.status >= 500 else ErrorKind.UNAUTHENTICATED
            raise credentials_error(
                kind, f"the instance metadata service gave no {what} (HTTP {reply.status})"
            )
