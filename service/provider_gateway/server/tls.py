"""TLS and mutual TLS for the gRPC server, with certificates reloaded without a restart.

    [tls]
    cert_file = "/etc/gateway/tls.crt"     # PEM chain, leaf first
    key_file = "/etc/gateway/tls.key"
    client_ca_file = "/etc/gateway/ca.crt" # PEM roots that client certificates must chain to
    require_client_cert = true             # mutual TLS: refuse clients without a valid certificate

grpc asks for the certificate configuration at each new handshake; the files are read again then
and a new configuration is handed over only when their bytes changed, so a rotated certificate
(cert-manager, a mounted Secret) is served to new connections while existing ones carry on. A
half-written or unreadable file keeps the previous certificate and is logged.
"""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc

from provider_gateway.config import ConfigError, GatewayConfig

log = logging.getLogger("provider_gateway.tls")
TLS_KEYS = ("cert_file", "key_file", "client_ca_file", "require_client_cert")


@dataclass(frozen=True, slots=True)
class TlsConfig:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None
    require_client_cert: bool
    source: str = ""

    @classmethod
    def from_config(cls, config: GatewayConfig) -> TlsConfig | None:
        """None without a [tls] table: plaintext, for loopback and meshes that terminate TLS."""
        if "tls" not in config.sections:
            return None
        section = config.section("tls")
        section.reject_unknown(TLS_KEYS)
        cert, key = section.string("cert_file"), section.string("key_file")
        if not cert or not key:
            raise section.error(
                "cert_file" if not cert else "key_file", "cert_file and key_file are both required"
            )
        ca = section.string("client_ca_file")
        require = section.flag("require_client_cert", False)
        if require and not ca:
            raise section.error(
                "require_client_cert", "needs client_ca_file to check client certificates against"
            )
        tls = cls(Path(cert), Path(key), Path(ca) if ca else None, require, config.source)
        try:
            _read_pems(tls)
        except ValueError as exc:
            raise ConfigError(config.source, "tls", str(exc)) from exc
        return tls


def _read_pems(tls: TlsConfig) -> tuple[bytes, bytes, bytes | None]:
    """The key, the chain and the client roots, checked to be PEM; ValueError names the file."""

    def read(path: Path, marker: bytes) -> bytes:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from exc
        if b"-----BEGIN " not in data or marker not in data:
            raise ValueError(f"{path} is not a PEM file with a {marker.decode()}")
        return data

    pems = (
        read(tls.key_file, b"PRIVATE KEY"),
        read(tls.cert_file, b"CERTIFICATE"),
        read(tls.client_ca_file, b"CERTIFICATE") if tls.client_ca_file else None,
    )
    # OpenSSL checks that the key belongs to the certificate, which grpc would find out only at
    # the first handshake.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_ca_file:
            context.load_verify_locations(tls.client_ca_file)
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(
            f"{tls.cert_file} / {tls.key_file}: not a usable certificate and key: {exc}"
        ) from exc
    return pems


class ReloadingCredentials:
    """Server credentials whose certificate configuration follows the files."""

    def __init__(self, tls: TlsConfig) -> None:
        self.tls = tls
        self._lock = threading.Lock()  # grpc calls the fetcher from its own threads
        self._current = _read_pems(tls)
        self.reloads = 0

    def _configuration(self, pems: tuple[bytes, bytes, bytes | None]) -> grpc.ServerCertificateConfiguration:
        key, chain, roots = pems
        return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=roots)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by grpc at each handshake: a new configuration if the files changed, else None."""
        try:
            pems = _read_pems(self.tls)
        except ValueError as exc:
            log.warning("keeping the current certificate: %s", exc)
            return None
        with self._lock:
            if pems == self._current:
                return None
            try:
                configuration = self._configuration(pems)
            except Exception as exc:  # never let a bad rotation take the listener down
                log.warning("keeping the current certificate: new files rejected: %s", exc)
                return None
            self._current = pems
            self.reloads += 1
        log.info("reloaded the TLS certificate from %s", self.tls.cert_file)
        return configuration

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(self._current),
            self.fetch,  # type: ignore[arg-type]  # grpc documents None as "unchanged"; the stub omits it
            require_client_authentication=self.tls.require_client_cert,
        )


def server_credentials(config: GatewayConfig) -> ReloadingCredentials | None:
    tls = TlsConfig.from_config(config)
    return ReloadingCredentials(tls) if tls else None
