"""Container credentials: ECS task roles and EKS Pod Identity.

AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is a path on ECS's agent at 169.254.170.2 (it wins when both
are set); AWS_CONTAINER_CREDENTIALS_FULL_URI a whole URL, which must be HTTPS or one of the hosts
botocore allows (loopback, ECS's 169.254.170.2, EKS Pod Identity's 169.254.170.23 and fd00:ec2::23).
The `Authorization` header comes from AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (read at each refresh:
EKS rotates it) or AWS_CONTAINER_AUTHORIZATION_TOKEN. Like botocore: 2 s per try, 3 tries on no
answer or a 5xx, a second apart; a 4xx is final.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from provider_gateway.config import register_secret
from provider_gateway.errors import ErrorKind
from provider_gateway.http.pool import UpstreamPool
from provider_gateway.providers.bedrock.credentials.fetch import Unreachable, fetch
from provider_gateway.providers.bedrock.credentials.model import AwsCredentials, credentials_error, from_json

ECS_AGENT = "http://169.254.170.2"
ALLOWED_HOSTS = frozenset({"169.254.170.2", "169.254.170.23", "fd00:ec2::23", "localhost"})
TIMEOUT_S = 2.0
ATTEMPTS = 3
PAUSE_S = 1.0


def container_url(env: Mapping[str, str]) -> str:
    """The endpoint, or "" when neither variable is set. A FULL_URI botocore would refuse is an error."""
    if relative := env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", ""):
        return ECS_AGENT + ("" if relative.startswith("/") else "/") + relative
    full = env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI", "")
    if not full:
        return ""
    parts = urlsplit(full)
    host = parts.hostname or ""
    if parts.scheme == "https" or (parts.scheme == "http" and _allowed_host(host)):
        return full
    raise credentials_error(
        ErrorKind.UNAUTHENTICATED,
        f"AWS_CONTAINER_CREDENTIALS_FULL_URI must be HTTPS or name a loopback or container-agent host "
        f"(169.254.170.2, 169.254.170.23, fd00:ec2::23); got host {host!r}",
    )


def _allowed_host(host: str) -> bool:
    if host in ALLOWED_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ContainerSource:
    name = "the container credentials endpoint"

    def __init__(self, env: Mapping[str, str], pool: UpstreamPool) -> None:
        self.env = env
        self.pool = pool
        self.attempts, self.pause_s, self.timeout_s = ATTEMPTS, PAUSE_S, TIMEOUT_S

    async def _authorization(self) -> dict[str, str]:
        token_file = self.env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "")
        if token_file:
            try:
                token = (await asyncio.to_thread(Path(token_file).read_text)).strip()
            except OSError as error:
                raise credentials_error(
                    ErrorKind.UNAUTHENTICATED,
                    f"cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE {token_file}: {error.strerror}",
                ) from None
        else:
            token = self.env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN", "")
        if not token:
            return {}
        if "\r" in token or "\n" in token:
            raise credentials_error(
                ErrorKind.UNAUTHENTICATED,
                "the container authorization token holds a line break; fix the token",
            )
        return {"authorization": register_secret(token)}

    async def load(self) -> AwsCredentials | None:
        url = container_url(self.env)
        if not url:
            return None
        headers = {"accept": "application/json", **await self._authorization()}
        problem = ""
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(self.pause_s)
            try:
                reply = await fetch(self.pool, "GET", url, headers=headers, timeout_s=self.timeout_s)
            except Unreachable as error:
                problem = f"no answer from {url} ({error})"
                continue
            if reply.status >= 500:
                problem = f"{url} answered HTTP {reply.status}"
                continue
            if reply.status != 200:
                raise credentials_error(
                    ErrorKind.UNAUTHENTICATED,
                    f"the container credentials endpoint {url} refused with HTTP {reply.status}; "
                    "check the task or pod role and AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE)",
                )
            try:
                document = orjson.loads(reply.body)
            except orjson.JSONDecodeError:
                raise credentials_error(
                    ErrorKind.UNAVAILABLE, f"{url} returned a body that is not JSON"
                ) from None
            return from_json(document, f"the container credentials endpoint {url}")
        raise credentials_error(ErrorKind.UNAVAILABLE, f"{problem} after {self.attempts} tries")
