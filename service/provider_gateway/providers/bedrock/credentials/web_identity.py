"""Web identity (EKS IRSA and the like): an OIDC token file exchanged at STS for a role's credentials.

AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE [+ AWS_ROLE_SESSION_NAME], or the profile's `role_arn` +
`web_identity_token_file` [+ `role_session_name`]; the environment wins, as in botocore. The token
file is read at each refresh (the cluster rotates it). AssumeRoleWithWebIdentity is an unsigned
query-protocol POST with an XML reply, sent to AWS_ENDPOINT_URL_STS (or AWS_ENDPOINT_URL) when
set, else to the region's STS endpoint (the global one when no region is known, or with
AWS_STS_REGIONAL_ENDPOINTS=legacy).
"""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlencode

from provider_gateway.config import register_secret
from provider_gateway.errors import ErrorKind
from provider_gateway.http.errors import redact
from provider_gateway.http.pool import UpstreamPool
from provider_gateway.providers.bedrock.credentials.fetch import Unreachable, fetch
from provider_gateway.providers.bedrock.credentials.model import (
    AwsCredentials,
    credentials_error,
    issued,
    parse_expiration,
)
from provider_gateway.providers.bedrock.credentials.shared_files import SharedFiles

STS_TIMEOUT_S = 10.0
# STS codes that mean "try again later", not "fix the setup".
TRANSIENT_CODES = frozenset({"IDPCommunicationError", "Throttling", "ServiceUnavailable", "InternalFailure"})
MAX_MESSAGE = 200


def sts_endpoint(env: Mapping[str, str], region: str) -> str:
    if explicit := env.get("AWS_ENDPOINT_URL_STS") or env.get("AWS_ENDPOINT_URL"):
        return explicit.rstrip("/")
    if not region or env.get("AWS_STS_REGIONAL_ENDPOINTS", "").lower() == "legacy":
        return "https://sts.amazonaws.com"
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://sts.{region}.{suffix}"


def parse_sts_reply(body: bytes) -> tuple[dict[str, str], tuple[str, str] | None]:
    """(the Credentials element's fields, None) on success, ({}, (code, message)) for an ErrorResponse."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return {}, ("NotXml", "STS returned a body that is not XML")
    if (error := root.find(".//{*}Error")) is not None:
        return {}, (error.findtext("{*}Code", ""), error.findtext("{*}Message", ""))
    found = root.find(".//{*}Credentials")
    if found is None:
        return {}, ("NoCredentials", "STS returned no Credentials element")
    return {child.tag.rsplit("}", 1)[-1]: (child.text or "").strip() for child in found}, None


class WebIdentitySource:
    name = "web identity (STS AssumeRoleWithWebIdentity)"

    def __init__(self, env: Mapping[str, str], files: SharedFiles, region: str, pool: UpstreamPool) -> None:
        self.env = env
        self.files = files
        self.region = region
        self.pool = pool

    async def _setting(self, env_name: str, profile_key: str) -> str:
        if value := self.env.get(env_name, ""):
            return value
        return (await self.files.profile()).merged.get(profile_key, "")

    async def load(self) -> AwsCredentials | None:
        token_file = await self._setting("AWS_WEB_IDENTITY_TOKEN_FILE", "web_identity_token_file")
        if not token_file:
            return None
        role_arn = await self._setting("AWS_ROLE_ARN", "role_arn")
        if not role_arn:
            raise credentials_error(
                ErrorKind.UNAUTHENTICATED,
                "a web identity token file is set (AWS_WEB_IDENTITY_TOKEN_FILE or the profile's "
                "web_identity_token_file) but no role: set AWS_ROLE_ARN or the profile's role_arn",
            )
        session_name = await self._setting("AWS_ROLE_SESSION_NAME", "role_session_name")
        try:
            token = (await asyncio.to_thread(Path(token_file).read_text)).strip()
        except OSError as error:
            raise credentials_error(
                ErrorKind.UNAUTHENTICATED,
                f"cannot read the web identity token file {token_file}: {error.strerror}",
            ) from None
        if not token:
            raise credentials_error(
                ErrorKind.UNAUTHENTICATED, f"the web identity token file {token_file} is empty"
            )
        register_secret(token)
        region = self.region or (await self.files.profile()).merged.get("region", "")
        return await self._assume(sts_endpoint(self.env, region), role_arn, session_name, token)

    async def _assume(self, endpoint: str, role_arn: str, session_name: str, token: str) -> AwsCredentials:
        form = {
            "Action": "AssumeRoleWithWebIdentity",
            "Version": "2011-06-15",
            "RoleArn": role_arn,
            "RoleSessionName": session_name or f"provider-gateway-{int(time.time())}",
            "WebIdentityToken": token,
        }
        headers = {"content-type": "application/x-www-form-urlencoded; charset=utf-8", "accept": "text/xml"}
        try:
            reply = await fetch(
                self.pool,
                "POST",
                endpoint + "/",
                headers=headers,
                content=urlencode(form).encode(),
                timeout_s=STS_TIMEOUT_S,
            )
        except Unreachable as error:
            raise credentials_error(
                ErrorKind.UNAVAILABLE, f"no answer from STS at {endpoint} ({error})"
            ) from None
        fields, failure = parse_sts_reply(reply.body)
        if failure is None and reply.status == 200:
            key_id, secret = fields.get("AccessKeyId", ""), fields.get("SecretAccessKey", "")
            if key_id and secret:
                expiration = parse_expiration(fields.get("Expiration"), "STS")
                return issued(key_id, secret, fields.get("SessionToken"), expiration)
            failure = ("NoCredentials", "STS returned Credentials without AccessKeyId/SecretAccessKey")
        code, message = failure or ("", "")
        transient = reply.status >= 500 or reply.status == 429 or code in TRANSIENT_CODES
        text = redact(message, (token,))[:MAX_MESSAGE]
        hint = "" if transient else "; check the role's trust policy, AWS_ROLE_ARN and the token file"
        raise credentials_error(
            ErrorKind.UNAVAILABLE if transient else ErrorKind.UNAUTHENTICATED,
            f"STS refused AssumeRoleWithWebIdentity for {role_arn} (HTTP {reply.status} {code}: {text}){hint}",
        )
