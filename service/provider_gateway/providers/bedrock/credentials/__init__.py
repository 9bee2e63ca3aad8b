"""AWS credentials for Bedrock without botocore: the standard chain, cached and refreshed before expiry.

One module per source (`environment`, `shared_files`, `web_identity`, `container`, `imds`, and
`botocore_profile` for what only botocore does), the cache in `resolver`, the table's keys and the
chain's order in `from_config`.
"""

from provider_gateway.providers.bedrock.credentials.from_config import (
    BEARER_TOKEN_ENV,
    CREDENTIAL_KEYS,
    bearer_token,
    credential_chain,
    resolver_from_config,
)
from provider_gateway.providers.bedrock.credentials.model import AwsCredentials, CredentialSource
from provider_gateway.providers.bedrock.credentials.resolver import CredentialResolver

__all__ = [
    "BEARER_TOKEN_ENV",
    "CREDENTIAL_KEYS",
    "AwsCredentials",
    "CredentialResolver",
    "CredentialSource",
    "bearer_token",
    "credential_chain",
    "resolver_from_config",
]
