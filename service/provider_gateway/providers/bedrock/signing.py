"""SigV4 and Bedrock API keys: the headers that authenticate one request, without botocore.

Signing uses AWS's standalone `aws-sdk-signers` (its async signer). One difference from botocore is
bridged: aws-sdk-signers leaves `Accept` unsigned, botocore signs it (InvokeModel sends one); the
signer here signs what botocore signs, so both produce the same SignedHeaders and signature.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from aws_sdk_signers import (
    URI,
    AsyncBytesReader,
    AsyncSigV4Signer,
    AWSCredentialIdentity,
    AWSRequest,
    Fields,
    SigV4SigningProperties,
)
from aws_sdk_signers import Field as SignerField

from provider_gateway.providers.bedrock.credentials import AwsCredentials

SERVICE = "bedrock"  # the signing name of both bedrock-runtime and the control plane
# botocore's SIGNED_HEADERS_BLACKLIST: everything else that is sent is signed.
UNSIGNED_HEADERS = frozenset(("expect", "transfer-encoding", "user-agent", "x-amzn-trace-id"))


class BotocoreCompatibleSigner(AsyncSigV4Signer):
    def _is_signable_header(self, field_name: str) -> bool:
        return field_name not in UNSIGNED_HEADERS


SIGNER = BotocoreCompatibleSigner()  # stateless


async def sigv4_headers(
    credentials: AwsCredentials,
    region: str,
    method: str,
    url: httpx.URL,
    headers: Mapping[str, str],
    body: bytes,
    *,
    date: str | None = None,
) -> dict[str, str]:
    """`headers` plus X-Amz-Date, X-Amz-Security-Token (with a session token) and Authorization.

    `url` is the URL as sent (path and query already percent-encoded); `headers` are the ones to
    sign (Host is derived from the URL); `date` (YYYYMMDDTHHMMSSZ) freezes the clock for tests.
    """
    destination = URI(
        scheme=url.scheme,
        host=url.host,
        port=url.port,
        path=url.raw_path.split(b"?", 1)[0].decode("ascii"),
        query=url.query.decode("ascii") or None,
    )
    request = AWSRequest(
        destination=destination,
        method=method,
        body=AsyncBytesReader(body) if body else None,
        fields=Fields([SignerField(name=name, values=[value]) for name, value in headers.items()]),
    )
    identity = AWSCredentialIdentity(
        access_key_id=credentials.access_key_id,
        secret_access_key=credentials.secret_access_key,
        session_token=credentials.session_token,
    )
    properties = SigV4SigningProperties(region=region, service=SERVICE)
    if date is not None:
        properties["date"] = date
    signed = await SIGNER.sign(request=request, identity=identity, properties=properties)
    return {field.name: field.as_string() for field in signed.fields}


def bearer_headers(token: str, headers: Mapping[str, str]) -> dict[str, str]:
    """A Bedrock API key, sent as AWS documents it: `Authorization: Bearer <key>`, nothing signed."""
    return {**headers, "Authorization": f"Bearer {token}"}
