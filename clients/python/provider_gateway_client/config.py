"""Where to connect and how: explicit arguments, else the environment, else a local plaintext gateway.

PROVIDER_GATEWAY_TARGET     host:port or any gRPC target (default localhost:50051)
PROVIDER_GATEWAY_API_KEY    sent as `authorization: Bearer ...` (the server's CLI reads it too)
PROVIDER_GATEWAY_API_KEY_FILE  a file holding the key (a mounted secret), when the key is not set
PROVIDER_GATEWAY_TLS        1/true: TLS trusting the system's CAs
PROVIDER_GATEWAY_CA_FILE    PEM CA bundle to trust (implies TLS)
PROVIDER_GATEWAY_CERT_FILE  PEM client certificate, for mutual TLS (with the key file)
PROVIDER_GATEWAY_KEY_FILE   PEM private key of the client certificate
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc

DEFAULT_TARGET = "localhost:50051"
DEFAULT_TIMEOUT_S = 60.0
ENV_PREFIX = "PROVIDER_GATEWAY_"
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})

# round_robin spreads calls over every address a DNS name resolves to (a headless Kubernetes
# service). No retryPolicy: the client retries itself (`max_retries`), honouring RetryInfo, and a
# second layer in the channel would multiply the attempts.
SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
CHANNEL_OPTIONS: tuple[tuple[str, str | int], ...] = (
    ("grpc.service_config", SERVICE_CONFIG),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
)


@dataclass(frozen=True, slots=True)
class Settings:
    target: str
    api_key: str | None
    tls: bool
    ca_file: str | None
    cert_file: str | None
    key_file: str | None

    def credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials from the files, or None for plaintext. A certificate or key file alone is
        refused even in plaintext: mutual TLS was asked for and must not be silently skipped."""
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("mutual TLS needs both a client certificate file and its key file")
        if not self.tls:
            return None
        read = lambda path: Path(path).read_bytes() if path else None  # noqa: E731
        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca_file),
            private_key=read(self.key_file),
            certificate_chain=read(self.cert_file),
        )

    @property
    def metadata(self) -> tuple[tuple[str, str], ...] | None:
        return (("authorization", f"Bearer {self.api_key}"),) if self.api_key else None


def settings(
    target: str | None = None,
    api_key: str | None = None,
    tls: bool | None = None,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Settings:
    """Each setting from its argument when given, else from its PROVIDER_GATEWAY_* variable."""

    def env(name: str) -> str | None:
        return environ.get(ENV_PREFIX + name) or None

    api_key = api_key or env("API_KEY") or _key_from_file(env("API_KEY_FILE"))
    ca_file = ca_file or env("CA_FILE")
    cert_file = cert_file or env("CERT_FILE")
    if tls is None:
        tls = (env("TLS") or "").lower() in TRUE_WORDS or bool(ca_file or cert_file)
    return Settings(
        target=target or env("TARGET") or DEFAULT_TARGET,
        api_key=api_key,
        tls=tls,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file or env("KEY_FILE"),
    )


def _key_from_file(path: str | None) -> str | None:
    """The key in a secret file, surrounding whitespace (a trailing newline) stripped."""
    if path is None:
        return None
    key = Path(path).read_text().strip()
    if not key:  # sending no key would fail later as UNAUTHENTICATED, far from the cause
        raise ValueError(f"the API key file {path} (PROVIDER_GATEWAY_API_KEY_FILE) is empty")
    return key
