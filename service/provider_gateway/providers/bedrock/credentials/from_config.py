"""The provider table's credential keys, the chain in botocore's order, and the Bedrock API key.

Secrets follow the project's rule: never in the file, only `<key>_env` (a variable's name) or
`<key>_file` (a path). The chain, first match wins: the table's keys alone when set; else the
environment (skipped when the table names a `profile`, as botocore skips it for an explicit
profile), an assume-role profile, web identity, an SSO profile, the shared credentials file, a
`credential_process` profile, the shared config file, the container endpoint, then IMDS.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from provider_gateway.config import MissingSecret, Section, register_secret
from provider_gateway.http.pool import UpstreamPool
from provider_gateway.providers.bedrock.credentials.botocore_profile import BotocoreProfileSource
from provider_gateway.providers.bedrock.credentials.container import ContainerSource
from provider_gateway.providers.bedrock.credentials.environment import EnvironmentSource, StaticSource
from provider_gateway.providers.bedrock.credentials.imds import InstanceMetadataSource
from provider_gateway.providers.bedrock.credentials.model import AwsCredentials, CredentialSource
from provider_gateway.providers.bedrock.credentials.resolver import CredentialResolver
from provider_gateway.providers.bedrock.credentials.shared_files import ProfileKeysSource, SharedFiles
from provider_gateway.providers.bedrock.credentials.web_identity import WebIdentitySource

SECRET_NAMES = ("access_key_id", "secret_access_key", "session_token", "bearer_token")
# The keys this package reads from a Bedrock provider's table (the adapter adds them to its own).
CREDENTIAL_KEYS = tuple(f"{name}_{how}" for name in SECRET_NAMES for how in ("env", "file"))
BEARER_TOKEN_ENV = "AWS_BEARER_TOKEN_BEDROCK"


def configured_secret(section: Section, name: str, env: Mapping[str, str], default_env: str = "") -> str:
    """`<name>_file` (wins) or the variable `<name>_env` names, read from `env`; "" when neither is set.

    A variable named explicitly but empty is a MissingSecret (the provider is kept, unready)."""
    if name in section:
        raise section.error(name, f"secrets are not read from the file; set {name}_env or {name}_file")
    file_name = section.string(f"{name}_file")
    if file_name:
        try:
            value = Path(file_name).read_text().strip()  # at start-up, as Section.secret does
        except OSError as error:
            raise section.error(f"{name}_file", f"cannot read {file_name}: {error.strerror}") from None
        if not value:
            raise section.error(f"{name}_file", f"{file_name} is empty")
        return register_secret(value)
    env_name = section.string(f"{name}_env")
    if not env_name:
        return register_secret(env.get(default_env, "")) if default_env else ""
    value = env.get(env_name, "")
    if not value:
        state = "is empty" if env_name in env else "is not set"
        raise MissingSecret(
            section.source, section.key(f"{name}_env"), f"environment variable {env_name} {state}"
        )
    return register_secret(value)


def static_credentials(section: Section, env: Mapping[str, str]) -> AwsCredentials | None:
    key_id = configured_secret(section, "access_key_id", env)
    secret = configured_secret(section, "secret_access_key", env)
    token = configured_secret(section, "session_token", env)
    if not key_id and not secret:
        if token:
            raise section.error(
                "session_token_env", "a session token needs access_key_id and secret_access_key"
            )
        return None
    if not key_id or not secret:
        missing = "secret_access_key" if key_id else "access_key_id"
        raise section.error(f"{missing}_env", f"set {missing}_env or {missing}_file too (or neither key)")
    return AwsCredentials(key_id, secret, token or None)


def credential_chain(section: Section, env: Mapping[str, str], http: UpstreamPool) -> list[CredentialSource]:
    if (static := static_credentials(section, env)) is not None:
        return [StaticSource(static)]
    profile_option = section.string("profile")
    files = SharedFiles(profile_option, env)
    region = section.string("region") or env.get("AWS_REGION", "") or env.get("AWS_DEFAULT_REGION", "")
    chain: list[CredentialSource] = [] if profile_option else [EnvironmentSource(env)]
    chain += [
        BotocoreProfileSource(files, "assume-role", region),
        WebIdentitySource(env, files, region, http),
        BotocoreProfileSource(files, "SSO", region),
        ProfileKeysSource(files, config_file=False),
        BotocoreProfileSource(files, "credential_process", region),
        ProfileKeysSource(files, config_file=True),
        ContainerSource(env, http),
        InstanceMetadataSource(env, http),
    ]
    return chain


def resolver_from_config(section: Section, env: Mapping[str, str], http: UpstreamPool) -> CredentialResolver:
    """The provider's credential resolver. Raises ConfigError for a mistake in the table; finding
    the credentials waits for the first `get()` (no I/O here but `*_file` reads at start-up)."""
    return CredentialResolver(credential_chain(section, env, http))


def bearer_token(section: Section, env: Mapping[str, str]) -> str | None:
    """A Bedrock API key (`Authorization: Bearer`, instead of SigV4): `bearer_token_file`, the variable
    `bearer_token_env` names, else AWS_BEARER_TOKEN_BEDROCK as AWS's SDKs read it; None when unset."""
    return configured_secret(section, "bearer_token", env, BEARER_TOKEN_ENV) or None
