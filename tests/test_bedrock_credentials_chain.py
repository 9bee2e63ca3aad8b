"""Web identity over STS, the chain's order, refresh before expiry, single flight, and botocore kept away."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aws_credentials_support import failure, fake, isolated_env, pool, resolve, table

from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.fakes.aws_metadata import FakeAwsMetadata, sts_form
from provider_gateway.http.pool import UpstreamPool
from provider_gateway.providers.bedrock.credentials import (
    AwsCredentials,
    CredentialResolver,
    credential_chain,
    resolver_from_config,
)
from provider_gateway.providers.bedrock.credentials.web_identity import sts_endpoint

__all__ = ["fake", "pool"]  # fixtures
ROLE = "arn:aws:iam::123456789012:role/gateway"


def irsa_env(home: Path, fake: FakeAwsMetadata, token: str | None = None, **values: str) -> dict[str, str]:
    token_file = home / "web-identity-token"
    token_file.write_text((token or fake.sts_token) + "\n")
    return isolated_env(
        home,
        AWS_ROLE_ARN=ROLE,
        AWS_WEB_IDENTITY_TOKEN_FILE=str(token_file),
        AWS_ENDPOINT_URL_STS=fake.url,
        **values,
    )


# --- web identity -------------------------------------------------------------------------------


async def test_web_identity_posts_an_unsigned_form_and_reads_the_xml(
    tmp_path: Path, pool: UpstreamPool, fake: FakeAwsMetadata
) -> None:
    env = irsa_env(tmp_path, fake, AWS_ROLE_SESSION_NAME="gateway-pod")
    credentials, source = await resolve(env, pool)
    issued = fake.issued[-1]
    assert (credentials.access_key_id, credentials.secret_access_key) == (
        issued.access_key_id,
        issued.secret_access_key,
    )
    assert (credentials.session_token, credentials.expiration) == (issued.session_token, issued.expiration)
    assert source.startswith("web identity")
    sent = fake.calls("sts")[0]
    assert sts_form(sent) == {
        "Action": "AssumeRoleWithWebIdentity",
        "Version": "2011-06-15",
        "RoleArn": ROLE,
        "RoleSessionName": "gateway-pod",
        "WebIdentityToken": fake.sts_token,
    }
    assert "authorization" not in sent.headers  # an unsigned call
    assert sent.headers["content-type"].startswith("application/x-www-form-urlencoded")


async def test_botocore_reads_the_fake_sts_reply_the_same_way(fake: FakeAwsMetadata) -> None:
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.session import Session

    client = Session().create_client(
        "sts", region_name="us-east-1", endpoint_url=fake.url, config=Config(signature_version=UNSIGNED)
    )
    reply = await asyncio.to_thread(
        client.assume_role_with_web_identity,
        RoleArn=ROLE,
        RoleSessionName="oracle",
        WebIdentityToken=fake.sts_token,
    )
    issued = fake.issued[-1]
    assert reply["Credentials"]["AccessKeyId"] == issued.access_key_id
    assert reply["Credentials"]["Expiration"] == issued.expiration


@pytest.mark.parametrize("region", ["eu-west-1", "us-gov-west-1", "cn-north-1", ""])
def test_the_default_sts_endpoint_is_the_one_botocore_picks(region: str) -> None:
    from botocore.session import Session

    client = Session().create_client(
        "sts", region_name=region or "aws-global", aws_access_key_id="a", aws_secret_access_key="b"
    )
    assert sts_endpoint({}, region) == client.meta.endpoint_url


async def test_a_rejected_token_is_unauthenticated_with_sts_code_and_no_token(
    tmp_path: Path, pool: UpstreamPool, fake: FakeAwsMetadata
) -> None:
    env = irsa_env(tmp_path, fake, token="an-expired-oidc-token-value")
    error = await failure(resolver_from_config(table(), env, pool))
    assert error.kind is ErrorKind.UNAUTHENTICATED
    assert "InvalidIdentityToken" in error.message
    assert "trust policy" in error.message
    assert "an-expired-oidc-token-value" not in str(error)


async def test_each_refresh_reads_the_rotated_token_file(
    tmp_path: Path, pool: UpstreamPool, fake: FakeAwsMetadata
) -> None:
    clock = Clock()
    env = irsa_env(tmp_path, fake)
    resolver = CredentialResolver(credential_chain(table(), env, pool), clock=clock)
    first = await resolver.get()
    assert first.expiration is not None
    fake.sts_token = "rotated-oidc-token-eyJhbGciOi"
    (tmp_path / "web-identity-token").write_text(fake.sts_token)
    clock.now = first.expiration - timedelta(minutes=9)
    second = await resolver.get()
    assert second.access_key_id == fake.issued[-1].access_key_id != first.access_key_id
    assert sts_form(fake.calls("sts")[-1])["WebIdentityToken"] == "rotated-oidc-token-eyJhbGciOi"
    await resolver.aclose()


async def test_an_sts_outage_is_unavailable(
    tmp_path: Path, pool: UpstreamPool, fake: FakeAwsMetadata
) -> None:
    fake.fail("sts", 503)
    error = await failure(resolver_from_config(table(), irsa_env(tmp_path, fake), pool))
    assert error.kind is ErrorKind.UNAVAILABLE
    assert error.retryable
    assert "ServiceUnavailable" in error.message


async def test_a_token_file_without_a_role_says_to_set_one(
    tmp_path: Path, pool: UpstreamPool, fake: FakeAwsMetadata
) -> None:
    env = irsa_env(tmp_path, fake)
    del env["AWS_ROLE_ARN"]
    error = await failure(resolver_from_config(table(), env, pool))
    assert "AWS_ROLE_ARN" in error.message
    assert fake.calls("sts") == []


async def test_a_profile_with_web_identity_needs_no_botocore(
    tmp_path: Path, pool: UpstreamPool, fake: FakeAwsMetadata
) -> None:
    (tmp_path / "token").write_text(fake.sts_token)
    (tmp_path / "config").write_text(
        f"[profile irsa]\nrole_arn = {ROLE}\nweb_identity_token_file = {tmp_path / 'token'}\nrole_session_name = from-profile\n"
    )
    env = isolated_env(tmp_path, AWS_ENDPOINT_URL_STS=fake.url)
    credentials, _ = await resolve(env, pool, profile="irsa")
    assert credentials.access_key_id == fake.issued[-1].access_key_id
    assert sts_form(fake.calls("sts")[0])["RoleSessionName"] == "from-profile"


# --- the chain's order --------------------------------------------------------------------------


async def test_the_chain_takes_the_first_source_set_up_in_botocores_order(
    tmp_path: Path, pool: UpstreamPool, fake: FakeAwsMetadata
) -> None:
    (tmp_path / "credentials").write_text(
        "[default]\naws_access_key_id = AKIDCREDSFILE\naws_secret_access_key = s1\n"
    )
    (tmp_path / "config").write_text(
        "[default]\naws_access_key_id = AKIDCONFIGFILE\naws_secret_access_key = s2\n"
    )
    env = irsa_env(
        tmp_path,
        fake,
        AWS_ACCESS_KEY_ID="AKIDENVIRONMENT",
        AWS_SECRET_ACCESS_KEY="s0",
        AWS_CONTAINER_CREDENTIALS_FULL_URI=fake.url + "/v1/credentials",
        AWS_EC2_METADATA_SERVICE_ENDPOINT=fake.url,
    )
    del env["AWS_EC2_METADATA_DISABLED"]
    order = []
    while True:
        _credentials, source = await resolve(env, pool)
        order.append(source)
        if source == "environment variables":
            del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
        elif source.startswith("web identity"):
            del env["AWS_WEB_IDENTITY_TOKEN_FILE"]
        elif source == "the shared credentials file":
            (tmp_path / "credentials").unlink()
        elif source == "the shared config file":
            (tmp_path / "config").unlink()
        elif source == "the container credentials endpoint":
            del env["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
        else:
            break
    assert order == [
        "environment variables",
        "web identity (STS AssumeRoleWithWebIdentity)",
        "the shared credentials file",
        "the shared config file",
        "the container credentials endpoint",
        "the EC2 instance metadata service",
    ]


# --- refresh and single flight ------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def imds_resolver(home: Path, fake: FakeAwsMetadata, pool: UpstreamPool, clock: Clock) -> CredentialResolver:
    env = isolated_env(home, AWS_EC2_METADATA_SERVICE_ENDPOINT=fake.url)
    del env["AWS_EC2_METADATA_DISABLED"]
    return CredentialResolver(credential_chain(table(), env, pool), clock=clock)


async def resolved_once(
    home: Path, fake: FakeAwsMetadata, pool: UpstreamPool
) -> tuple[CredentialResolver, Clock, AwsCredentials, datetime]:
    """A resolver on IMDS with a clock the test moves, its first credentials and their expiry."""
    clock = Clock()
    resolver = imds_resolver(home, fake, pool, clock)
    first = await resolver.get()
    assert first.expiration is not None
    return resolver, clock, first, first.expiration


async def test_credentials_are_cached_then_refreshed_in_the_advisory_window(
    tmp_path: Path, pool: UpstreamPool, fake: FakeAwsMetadata
) -> None:
    resolver, clock, first, expiry = await resolved_once(tmp_path, fake, pool)
    assert await resolver.get() is first
    assert len(fake.issued) == 1
    clock.now = expiry - timedelta(minutes=16)
    assert await resolver.get() is first
    clock.now = expiry - timedelta(minutes=14)
    second = await resolver.get()
    assert second.access_key_id == fake.issued[-1].access_key_id != first.access_key_id
    await resolver.aclose()


async def test_a_failed_refresh_keeps_valid_credentials_and_fails_once_they_expire(
    tmp_path: Path, pool: UpstreamPool, fake: FakeAwsMetadata, caplog: pytest.LogCaptureFixture
) -> None:
    resolver, clock, first, expiry = await resolved_once(tmp_path, fake, pool)
    fake.fail("imds", 500, 500)
    clock.now = expiry - timedelta(minutes=5)  # mandatory window, still valid
    assert await resolver.get() is first
    assert "refreshing AWS credentials" in caplog.text
    assert first.secret_access_key not in caplog.text
    clock.now = expiry + timedelta(seconds=1)
    error = await failure(resolver)
    assert error.kind is ErrorKind.UNAVAILABLE
    assert "HTTP 500" in error.message


async def held_callers(
    resolver: CredentialResolver, fake: FakeAwsMetadata, count: int
) -> list[asyncio.Task[AwsCredentials]]:
    """`count` callers of `get()`, started while the fake holds its answers, once a request waits."""
    fake.hold()
    callers = [asyncio.create_task(resolver.get()) for _ in range(count)]
    await fake.until_held()
    return callers


async def test_concurrent_callers_share_one_refresh(
    tmp_path: Path, pool: UpstreamPool, fake: FakeAwsMetadata
) -> None:
    resolver = imds_resolver(tmp_path, fake, pool, Clock())
    callers = await held_callers(resolver, fake, 20)
    fake.release()
    results = await asyncio.gather(*callers)
    assert len(fake.issued) == 1
    assert {r.access_key_id for r in results} == {fake.issued[0].access_key_id}
    assert len(fake.calls("imds")) == 3  # one token, one role name, one credentials call
    await resolver.aclose()


async def test_in_the_advisory_window_only_one_caller_waits_for_the_refresh(
    tmp_path: Path, pool: UpstreamPool, fake: FakeAwsMetadata
) -> None:
    resolver, clock, first, expiry = await resolved_once(tmp_path, fake, pool)
    clock.now = expiry - timedelta(minutes=12)
    (refreshing,) = await held_callers(resolver, fake, 1)
    assert await resolver.get() is first  # does not wait for the held refresh
    fake.release()
    assert (await refreshing).access_key_id == fake.issued[-1].access_key_id != first.access_key_id
    await resolver.aclose()


async def test_a_caller_that_gives_up_does_not_cancel_the_shared_refresh(
    tmp_path: Path, pool: UpstreamPool, fake: FakeAwsMetadata
) -> None:
    resolver = imds_resolver(tmp_path, fake, pool, Clock())
    impatient, patient = await held_callers(resolver, fake, 2)
    impatient.cancel()
    fake.release()
    assert (await patient).access_key_id == fake.issued[0].access_key_id
    assert impatient.cancelled()
    await resolver.aclose()


async def test_aclose_stops_a_refresh_in_flight(
    tmp_path: Path, pool: UpstreamPool, fake: FakeAwsMetadata
) -> None:
    resolver = imds_resolver(tmp_path, fake, pool, Clock())
    (waiting,) = await held_callers(resolver, fake, 1)
    await resolver.aclose()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    fake.release()
    # Nothing is left half-done: the next caller resolves afresh.
    assert (await resolver.get()).access_key_id == fake.issued[-1].access_key_id
    await resolver.aclose()


# --- botocore only where it is needed -----------------------------------------------------------

PROBE = """
import asyncio, os, sys
from provider_gateway.config import Section
from provider_gateway.http.pool import UpstreamPool
from provider_gateway.providers.bedrock.credentials import resolver_from_config

async def main():
    pool = UpstreamPool()
    options = {"kind": "bedrock", **({"profile": os.environ["PROBE_PROFILE"]} if "PROBE_PROFILE" in os.environ else {})}
    resolver = resolver_from_config(Section(options, "probe.toml", "providers.b"), dict(os.environ), pool)
    credentials = await resolver.get()
    await resolver.aclose()
    await pool.aclose()
    loaded = sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in ("botocore", "aiobotocore", "boto3")})
    print(credentials.access_key_id, ",".join(loaded) or "-")

asyncio.run(main())
"""


def run_probe(env: dict[str, str]) -> str:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "HOME"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**keep, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


async def test_environment_files_and_irsa_never_import_botocore(
    tmp_path: Path, fake: FakeAwsMetadata
) -> None:
    env_vars = isolated_env(tmp_path, AWS_ACCESS_KEY_ID="AKIDENV", AWS_SECRET_ACCESS_KEY="s")
    (tmp_path / "credentials").write_text(
        "[files]\naws_access_key_id = AKIDFILES\naws_secret_access_key = s\n"
    )
    files = isolated_env(tmp_path, AWS_PROFILE="files")
    irsa = irsa_env(tmp_path, fake)
    outputs = await asyncio.gather(*(asyncio.to_thread(run_probe, env) for env in (env_vars, files, irsa)))
    assert outputs == ["AKIDENV -", "AKIDFILES -", f"{fake.issued[-1].access_key_id} -"]


async def test_a_credential_process_profile_goes_through_botocore(tmp_path: Path) -> None:
    reply = {"Version": 1, "AccessKeyId": "AKIDPROCESS", "SecretAccessKey": "process-secret"}
    script = tmp_path / "print_credentials.py"
    script.write_text(f"print({json.dumps(json.dumps(reply))})\n")
    (tmp_path / "config").write_text(f"[profile tool]\ncredential_process = {sys.executable} {script}\n")
    output = await asyncio.to_thread(run_probe, {**isolated_env(tmp_path), "PROBE_PROFILE": "tool"})
    assert output == "AKIDPROCESS aiobotocore,botocore"


async def test_callers_sharing_a_failed_refresh_each_get_their_own_error(
    tmp_path: Path, pool: UpstreamPool, fake: FakeAwsMetadata
) -> None:
    fake.fail("imds", 503)
    resolver = imds_resolver(tmp_path, fake, pool, Clock())
    callers = await held_callers(resolver, fake, 3)
    fake.release()
    errors = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(e, GatewayError) and e.kind is ErrorKind.UNAVAILABLE for e in errors)
    assert len({id(e) for e in errors}) == 3
    assert len(fake.calls("imds")) == 1  # one refresh for the three
    await resolver.aclose()


async def test_an_assume_role_profile_goes_through_botocore_to_sts(
    tmp_path: Path, fake: FakeAwsMetadata
) -> None:
    (tmp_path / "credentials").write_text("[base]\naws_access_key_id = AKIDBASE\naws_secret_access_key = s\n")
    (tmp_path / "config").write_text(f"[profile chained]\nrole_arn = {ROLE}\nsource_profile = base\n")
    env = isolated_env(
        tmp_path, AWS_ENDPOINT_URL_STS=fake.url, AWS_REGION="us-east-1", PROBE_PROFILE="chained"
    )
    output = await asyncio.to_thread(run_probe, env)
    assert output == f"{fake.issued[-1].access_key_id} aiobotocore,botocore"
    sent = fake.calls("sts")[-1]
    assert sts_form(sent)["Action"] == "AssumeRole"
    assert sent.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDBASE/")
