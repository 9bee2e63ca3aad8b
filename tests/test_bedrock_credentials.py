"""Each AWS credential source against files and fakes on 127.0.0.1, with botocore as the oracle."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from aws_credentials_support import failure, fake, isolated_env, pool, resolve, table
from botocore.session import Session as BotocoreSession

from provider_gateway.config import ConfigError, MissingSecret
from provider_gateway.errors import ErrorKind
from provider_gateway.fakes.aws_metadata import FakeAwsMetadata
from provider_gateway.http.pool import UpstreamPool
from provider_gateway.providers.bedrock.credentials import (
    AwsCredentials,
    bearer_token,
    resolver_from_config,
)

__all__ = ["fake", "pool"]  # fixtures


def test_repr_names_the_key_id_but_never_the_secret_or_token() -> None:
    credentials = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI-secret", "session-token-value")
    for text in (repr(credentials), str(credentials), f"{credentials}"):
        assert "AKIDEXAMPLE" in text
        assert "wJalrXUtnFEMI-secret" not in text
        assert "session-token-value" not in text


# --- environment and the table's keys ---------------------------------------------------------


async def test_environment_variables_with_session_token_and_expiration(
    tmp_path: Path, pool: UpstreamPool
) -> None:
    env = isolated_env(
        tmp_path,
        AWS_ACCESS_KEY_ID="AKIDENV",
        AWS_SECRET_ACCESS_KEY="env-secret",
        AWS_SESSION_TOKEN="env-token",
        AWS_CREDENTIAL_EXPIRATION="2030-01-02T03:04:05Z",
    )
    credentials, source = await resolve(env, pool)
    assert credentials == AwsCredentials(
        "AKIDENV", "env-secret", "env-token", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    )
    assert source == "environment variables"


async def test_credentials_that_are_already_expired_are_refused_as_botocore_refuses_them(
    tmp_path: Path, pool: UpstreamPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exported credentials past their AWS_CREDENTIAL_EXPIRATION were signed with anyway (each
    request then failing at Bedrock as an expired token, after asking the source again)."""
    env = isolated_env(
        tmp_path,
        AWS_ACCESS_KEY_ID="AKIDSTALE",
        AWS_SECRET_ACCESS_KEY="stale-secret-value",
        AWS_SESSION_TOKEN="stale-session-token",
        AWS_CREDENTIAL_EXPIRATION="2020-01-02T03:04:05Z",
    )
    with pytest.raises(RuntimeError, match="still expired"):  # the oracle
        botocore_reads(env, None, monkeypatch)
    error = await failure(resolver_from_config(table(), env, pool))
    assert error.kind is ErrorKind.UNAUTHENTICATED
    assert "environment variables" in error.message
    assert "expired at 2020-01-02T03:04:05" in error.message
    assert "stale-secret-value" not in str(error)
    assert "stale-session-token" not in str(error)


async def test_half_set_environment_names_the_missing_variable_without_the_secret(
    tmp_path: Path, pool: UpstreamPool
) -> None:
    env = isolated_env(tmp_path, AWS_SECRET_ACCESS_KEY="only-the-secret-value")
    error = await failure(resolver_from_config(table(), env, pool))
    assert error.kind is ErrorKind.UNAUTHENTICATED
    assert "AWS_ACCESS_KEY_ID" in error.message
    assert "only-the-secret-value" not in str(error)


async def test_table_keys_through_env_and_file_win_over_the_environment(
    tmp_path: Path, pool: UpstreamPool
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("table-secret\n")
    env = isolated_env(
        tmp_path, MY_KEY_ID="AKIDTABLE", AWS_ACCESS_KEY_ID="AKIDENV", AWS_SECRET_ACCESS_KEY="x"
    )
    options = {"access_key_id_env": "MY_KEY_ID", "secret_access_key_file": str(secret_file)}
    credentials, _ = await resolve(env, pool, **options)
    assert credentials == AwsCredentials("AKIDTABLE", "table-secret")


def test_a_literal_secret_in_the_table_is_refused_without_echoing_it(
    tmp_path: Path, pool: UpstreamPool
) -> None:
    with pytest.raises(ConfigError) as caught:
        resolver_from_config(table(secret_access_key="literal-secret-value"), isolated_env(tmp_path), pool)
    assert "secret_access_key_env" in str(caught.value)
    assert "literal-secret-value" not in str(caught.value)


def test_a_named_variable_that_is_unset_is_a_missing_secret(tmp_path: Path, pool: UpstreamPool) -> None:
    options = table(access_key_id_env="KEY_ID", secret_access_key_env="UNSET_SECRET")
    with pytest.raises(MissingSecret, match="UNSET_SECRET is not set"):
        resolver_from_config(options, isolated_env(tmp_path, KEY_ID="AKID"), pool)


def test_half_the_keys_in_the_table_is_a_config_error(tmp_path: Path, pool: UpstreamPool) -> None:
    with pytest.raises(ConfigError, match="secret_access_key_env or secret_access_key_file"):
        resolver_from_config(table(access_key_id_env="KEY_ID"), isolated_env(tmp_path, KEY_ID="AKID"), pool)


def test_bedrock_api_key_from_the_standard_variable_or_the_table(tmp_path: Path) -> None:
    assert bearer_token(table(), isolated_env(tmp_path)) is None
    env = isolated_env(tmp_path, AWS_BEARER_TOKEN_BEDROCK="bedrock-api-key-1", OTHER="bedrock-api-key-2")
    assert bearer_token(table(), env) == "bedrock-api-key-1"
    assert bearer_token(table(bearer_token_env="OTHER"), env) == "bedrock-api-key-2"
    with pytest.raises(ConfigError, match="bearer_token_env or bearer_token_file"):
        bearer_token(table(bearer_token="inline"), env)


# --- shared files -------------------------------------------------------------------------------

CREDENTIALS_FILE = """\
[default]
aws_access_key_id = AKIDDEFAULT
aws_secret_access_key = default-secret

[prod]
aws_access_key_id = AKIDPRODCREDS
aws_secret_access_key = prod-secret-from-credentials
aws_session_token = prod-token
"""
CONFIG_FILE = """\
[default]
region = us-east-1

[profile prod]
aws_access_key_id = AKIDPRODCONFIG
aws_secret_access_key = prod-secret-from-config

[profile staging]
region = eu-west-1
aws_access_key_id = AKIDSTAGING
aws_secret_access_key = staging-secret
"""


def write_files(home: Path) -> None:
    (home / "credentials").write_text(CREDENTIALS_FILE)
    (home / "config").write_text(CONFIG_FILE)


def botocore_reads(
    env: dict[str, str], profile: str | None, monkeypatch: pytest.MonkeyPatch
) -> AwsCredentials:
    """The oracle: what botocore resolves from the same files and variables."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    session = BotocoreSession(profile=profile)
    frozen = session.get_credentials().get_frozen_credentials()
    return AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token)


@pytest.mark.parametrize(
    ("option", "variables", "expected"),
    [
        (None, {}, "AKIDDEFAULT"),
        ("prod", {}, "AKIDPRODCREDS"),  # the credentials file wins over the config file
        ("staging", {}, "AKIDSTAGING"),  # `[profile staging]` of the config file
        (None, {"AWS_PROFILE": "staging"}, "AKIDSTAGING"),
        # An explicit profile skips the environment; AWS_PROFILE does not, as in botocore.
        ("prod", {"AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "s"}, "AKIDPRODCREDS"),
        (
            None,
            {"AWS_PROFILE": "prod", "AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "s"},
            "AKIDENV",
        ),
    ],
)
async def test_shared_files_and_profiles_resolve_as_botocore_does(
    tmp_path: Path,
    pool: UpstreamPool,
    monkeypatch: pytest.MonkeyPatch,
    option: str | None,
    variables: dict[str, str],
    expected: str,
) -> None:
    write_files(tmp_path)
    env = isolated_env(tmp_path, **variables)
    credentials, _ = await resolve(env, pool, **({"profile": option} if option else {}))
    assert credentials.access_key_id == expected
    assert credentials == botocore_reads(env, option, monkeypatch)


async def test_an_unknown_profile_names_itself_and_the_files(tmp_path: Path, pool: UpstreamPool) -> None:
    write_files(tmp_path)
    error = await failure(resolver_from_config(table(profile="typo"), isolated_env(tmp_path), pool))
    assert error.kind is ErrorKind.UNAUTHENTICATED
    assert "'typo'" in error.message
    assert "credentials" in error.message
    assert "AWS_PROFILE" in error.message


async def test_a_profile_without_a_secret_says_which_key_is_missing(
    tmp_path: Path, pool: UpstreamPool
) -> None:
    (tmp_path / "credentials").write_text("[default]\naws_access_key_id = AKIDHALF\n")
    error = await failure(resolver_from_config(table(), isolated_env(tmp_path), pool))
    assert "aws_secret_access_key" in error.message


# --- container endpoint ---------------------------------------------------------------------------


async def test_eks_pod_identity_sends_the_token_file_and_reads_the_json(
    tmp_path: Path, pool: UpstreamPool, fake: FakeAwsMetadata
) -> None:
    token_file = tmp_path / "eks-pod-identity-token"
    token_file.write_text("pod-identity-token-1\n")
    fake.container_token = "pod-identity-token-1"
    env = isolated_env(
        tmp_path,
        AWS_CONTAINER_CREDENTIALS_FULL_URI=fake.url + "/v1/credentials",
        AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=str(token_file),
    )
    credentials, source = await resolve(env, pool)
    issued = fake.issued[-1]
    assert credentials == AwsCredentials(
        issued.access_key_id, issued.secret_access_key, issued.session_token, issued.expiration
    )
    assert source == "the container credentials endpoint"
    assert fake.calls("container")[0].path == "/v1/credentials"


async def test_botocore_reads_the_fake_container_endpoint_the_same_way(fake: FakeAwsMetadata) -> None:
    import asyncio

    from botocore.utils import ContainerMetadataFetcher

    fake.container_token = "tok"
    fetched = await asyncio.to_thread(
        ContainerMetadataFetcher().retrieve_full_uri, fake.url + "/creds", {"Authorization": "tok"}
    )
    assert fetched["AccessKeyId"] == fake.issued[-1].access_key_id
    assert fetched["Expiration"] == fake.issued[-1].expiration_text


async def test_a_refused_container_token_is_unauthenticated_and_not_echoed(
    tmp_path: Path, pool: UpstreamPool, fake: FakeAwsMetadata
) -> None:
    fake.container_token = "the-right-token"
    env = isolated_env(
        tmp_path,
        AWS_CONTAINER_CREDENTIALS_FULL_URI=fake.url + "/v1/credentials",
        AWS_CONTAINER_AUTHORIZATION_TOKEN="a-wrong-token-value",
    )
    error = await failure(resolver_from_config(table(), env, pool))
    assert error.kind is ErrorKind.UNAUTHENTICATED
    assert "HTTP 403" in error.message
    assert "a-wrong-token-value" not in str(error)
    assert "AWS_CONTAINER_AUTHORIZATION_TOKEN" in error.message


async def test_a_container_5xx_is_tried_again(
    tmp_path: Path, pool: UpstreamPool, fake: FakeAwsMetadata
) -> None:
    fake.fail("container", 500)
    env = isolated_env(tmp_path, AWS_CONTAINER_CREDENTIALS_FULL_URI=fake.url + "/v1/credentials")
    resolver = resolver_from_config(table(), env, pool)
    for source in resolver.chain:  # no second's pause between tries in a test
        if hasattr(source, "pause_s"):
            source.pause_s = 0.0
    assert (await resolver.get()).access_key_id == fake.issued[-1].access_key_id
    assert len(fake.calls("container")) == 2
    await resolver.aclose()


def test_ecs_relative_uri_goes_to_the_agent_and_wins_over_full_uri() -> None:
    from provider_gateway.providers.bedrock.credentials.container import container_url

    both = {
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/task-1",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:9/creds",
    }
    assert container_url(both) == "http://169.254.170.2/v2/credentials/task-1"
    assert container_url({"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1/credentials"}) == (
        "http://169.254.170.23/v1/credentials"
    )
    assert container_url({}) == ""


async def test_a_full_uri_to_a_foreign_http_host_is_refused_before_any_request(
    tmp_path: Path, pool: UpstreamPool
) -> None:
    env = isolated_env(tmp_path, AWS_CONTAINER_CREDENTIALS_FULL_URI="http://192.0.2.10/creds")
    error = await failure(resolver_from_config(table(), env, pool))
    assert "must be HTTPS" in error.message
    assert "192.0.2.10" in error.message
    assert pool.stats() == {}


# --- IMDSv2 ---------------------------------------------------------------------------------------


def imds_env(home: Path, fake: FakeAwsMetadata, **values: str) -> dict[str, str]:
    env = isolated_env(home, AWS_EC2_METADATA_SERVICE_ENDPOINT=fake.url)
    del env["AWS_EC2_METADATA_DISABLED"]
    return {**env, **values}


async def test_imds_v2_token_then_role_then_credentials(
    tmp_path: Path, pool: UpstreamPool, fake: FakeAwsMetadata
) -> None:
    credentials, source = await resolve(imds_env(tmp_path, fake), pool)
    assert source == "the EC2 instance metadata service"
    assert credentials.access_key_id == fake.issued[-1].access_key_id
    assert credentials.expiration == fake.issued[-1].expiration
    calls = fake.calls("imds")
    assert [(c.method, c.path) for c in calls] == [
        ("PUT", "/latest/api/token"),
        ("GET", "/latest/meta-data/iam/security-credentials/"),
        ("GET", "/latest/meta-data/iam/security-credentials/gateway-role"),
    ]
    assert calls[0].headers["x-aws-ec2-metadata-token-ttl-seconds"] == "21600"
    assert all("x-aws-ec2-metadata-token" in c.headers for c in calls[1:])


async def test_botocore_reads_the_fake_imds_the_same_way(fake: FakeAwsMetadata) -> None:
    import asyncio

    from botocore.utils import InstanceMetadataFetcher

    fetched = await asyncio.to_thread(
        InstanceMetadataFetcher(timeout=2, base_url=fake.url).retrieve_iam_role_credentials
    )
    assert fetched["role_name"] == "gateway-role"
    assert fetched["access_key"] == fake.issued[-1].access_key_id
    assert fetched["expiry_time"] == fake.issued[-1].expiration_text


async def test_an_instance_without_a_role_says_to_attach_one(
    tmp_path: Path, pool: UpstreamPool, fake: FakeAwsMetadata
) -> None:
    fake.imds_role = None
    error = await failure(resolver_from_config(table(), imds_env(tmp_path, fake), pool))
    assert error.kind is ErrorKind.UNAUTHENTICATED
    assert "attach an instance profile" in error.message


async def test_a_dropped_token_answer_points_at_the_hop_limit(
    tmp_path: Path, pool: UpstreamPool, fake: FakeAwsMetadata
) -> None:
    fake.imds_put_hangs = True
    env = imds_env(tmp_path, fake, AWS_METADATA_SERVICE_TIMEOUT="0.2")
    error = await failure(resolver_from_config(table(), env, pool))
    assert error.kind is ErrorKind.UNAUTHENTICATED
    assert "none found" in error.message
    assert "hop limit" in error.message
    assert "0.2 s" in error.message


async def test_metadata_disabled_is_never_asked(
    tmp_path: Path, pool: UpstreamPool, fake: FakeAwsMetadata
) -> None:
    env = imds_env(tmp_path, fake, AWS_EC2_METADATA_DISABLED="true")
    error = await failure(resolver_from_config(table(), env, pool))
    assert "none found" in error.message
    assert "AWS_ACCESS_KEY_ID" in error.message
    assert fake.calls("imds") == []


def test_every_credential_key_is_documented_on_the_vendor_page() -> None:
    from provider_gateway.providers.bedrock.credentials import CREDENTIAL_KEYS

    page = (Path(__file__).resolve().parents[1] / "docs" / "vendor-providers.md").read_text()
    assert [key for key in CREDENTIAL_KEYS if key not in page] == []
