"""TLS and mutual TLS with certificates generated at test time, and rotation without a restart."""

from __future__ import annotations

import datetime
import ipaddress
import tomllib
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from conftest import run_gateway
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from processes import run_process
from served import CLI

from provider_gateway import config as config_module
from provider_gateway.server.tls import TlsConfig
from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc


@dataclass
class Issued:
    cert: bytes
    key: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(name: str) -> tuple[Issued, x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return Issued(_pem(cert), _key_pem(key)), cert, key


def issue(ca: tuple[Issued, x509.Certificate, ec.EllipticCurvePrivateKey], name: str, server: bool) -> Issued:
    _, ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return Issued(_pem(builder.sign(ca_key, hashes.SHA256())), _key_pem(key))


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Issued]:
    server_ca, client_ca, rogue_ca, next_ca = (
        make_ca(n) for n in ("server-ca", "client-ca", "rogue-ca", "next-ca")
    )
    return {
        "server_ca": server_ca[0],
        "client_ca": client_ca[0],
        "next_ca": next_ca[0],
        "server": issue(server_ca, "gateway", server=True),
        "next_server": issue(next_ca, "gateway", server=True),
        "client": issue(client_ca, "billing", server=False),
        "rogue_client": issue(rogue_ca, "intruder", server=False),
    }


def write_server_files(directory: Path, pki: dict[str, Issued], server: str = "server") -> dict[str, Path]:
    paths = {"cert": directory / "tls.crt", "key": directory / "tls.key", "ca": directory / "client-ca.crt"}
    paths["cert"].write_bytes(pki[server].cert)
    paths["key"].write_bytes(pki[server].key)
    paths["ca"].write_bytes(pki["client_ca"].cert)
    return paths


def tls_config(paths: dict[str, Path], require_client_cert: bool) -> str:
    return f"""
[tls]
cert_file = "{paths["cert"]}"
key_file = "{paths["key"]}"
client_ca_file = "{paths["ca"]}"
require_client_cert = {str(require_client_cert).lower()}
"""


def request() -> pb.ChatRequest:
    return pb.ChatRequest(
        model="mock/echo", messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="hi")])]
    )


async def call(target: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    """One Chat on a fresh channel (so a fresh handshake); the status it ended with."""
    channel = (
        grpc.aio.secure_channel(target, credentials) if credentials else grpc.aio.insecure_channel(target)
    )
    async with channel:
        try:
            await pb_grpc.ProviderServiceStub(channel).Chat(request(), timeout=10)
        except grpc.aio.AioRpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def creds(
    pki: dict[str, Issued], roots: str = "server_ca", client: str | None = None
) -> grpc.ChannelCredentials:
    pair = pki[client] if client else None
    return grpc.ssl_channel_credentials(
        root_certificates=pki[roots].cert,
        private_key=pair.key if pair else None,
        certificate_chain=pair.cert if pair else None,
    )


async def test_tls_server_accepts_tls_and_refuses_plaintext(tmp_path: Path, pki: dict[str, Issued]) -> None:
    paths = write_server_files(tmp_path, pki)
    async with run_gateway(tls_config(paths, require_client_cert=False)) as gw:
        assert await call(gw.target, creds(pki)) == grpc.StatusCode.OK
        assert await call(gw.target, None) == grpc.StatusCode.UNAVAILABLE
        # A client that does not trust the server's CA does not get in either.
        assert await call(gw.target, creds(pki, roots="client_ca")) == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_requires_a_client_certificate_from_the_ca(
    tmp_path: Path, pki: dict[str, Issued]
) -> None:
    paths = write_server_files(tmp_path, pki)
    async with run_gateway(tls_config(paths, require_client_cert=True)) as gw:
        assert await call(gw.target, creds(pki, client="client")) == grpc.StatusCode.OK
        assert await call(gw.target, creds(pki)) == grpc.StatusCode.UNAVAILABLE
        assert await call(gw.target, creds(pki, client="rogue_client")) == grpc.StatusCode.UNAVAILABLE


async def test_rotated_certificate_is_served_without_restart(tmp_path: Path, pki: dict[str, Issued]) -> None:
    paths = write_server_files(tmp_path, pki)
    async with run_gateway(tls_config(paths, require_client_cert=False)) as gw:
        assert await call(gw.target, creds(pki)) == grpc.StatusCode.OK
        assert await call(gw.target, creds(pki, roots="next_ca")) == grpc.StatusCode.UNAVAILABLE

        # A rotation writes the new pair; new connections get it, the listener stays up.
        write_server_files(tmp_path, pki, server="next_server")
        assert await call(gw.target, creds(pki, roots="next_ca")) == grpc.StatusCode.OK
        assert await call(gw.target, creds(pki)) == grpc.StatusCode.UNAVAILABLE
        assert gw.server.credentials is not None
        assert gw.server.credentials.reloads == 1

        # A broken file (half-written) keeps the current certificate.
        paths["cert"].write_bytes(b"-----BEGIN CERTIFICATE-----\ngarbage")
        assert await call(gw.target, creds(pki, roots="next_ca")) == grpc.StatusCode.OK
        assert gw.server.credentials.reloads == 1


def parse(text: str) -> config_module.GatewayConfig:
    return config_module.parse(tomllib.loads(text), "test.toml")


def test_tls_config_errors_name_the_key(tmp_path: Path, pki: dict[str, Issued]) -> None:
    paths = write_server_files(tmp_path, pki)
    with pytest.raises(config_module.ConfigError, match=r"tls.require_client_cert: needs client_ca_file"):
        TlsConfig.from_config(
            parse(
                f'[tls]\ncert_file = "{paths["cert"]}"\nkey_file = "{paths["key"]}"\nrequire_client_cert = true\n'
            )
        )
    with pytest.raises(config_module.ConfigError, match=r"tls.key_file"):
        TlsConfig.from_config(parse(f'[tls]\ncert_file = "{paths["cert"]}"\n'))
    with pytest.raises(config_module.ConfigError, match=r"cannot read"):
        TlsConfig.from_config(
            parse(f'[tls]\ncert_file = "{tmp_path / "nope"}"\nkey_file = "{paths["key"]}"\n')
        )
    # A key that does not belong to the certificate is found at start-up, not at the first handshake.
    (tmp_path / "other.key").write_bytes(pki["client"].key)
    with pytest.raises(config_module.ConfigError, match=r"not a usable certificate and key"):
        TlsConfig.from_config(
            parse(f'[tls]\ncert_file = "{paths["cert"]}"\nkey_file = "{tmp_path / "other.key"}"\n')
        )
    assert TlsConfig.from_config(parse("")) is None


async def test_the_cli_talks_tls_and_mutual_tls(tmp_path: Path, pki: dict[str, Issued]) -> None:
    paths = write_server_files(tmp_path, pki)
    (tmp_path / "server-ca.crt").write_bytes(pki["server_ca"].cert)
    (tmp_path / "client.crt").write_bytes(pki["client"].cert)
    (tmp_path / "client.key").write_bytes(pki["client"].key)
    trust = ("--ca-file", str(tmp_path / "server-ca.crt"))
    client = ("--cert-file", str(tmp_path / "client.crt"), "--key-file", str(tmp_path / "client.key"))
    async with run_gateway(tls_config(paths, require_client_cert=True)) as gw:
        code, out, err = await run_process(
            CLI, "health", "--target", gw.target, *trust, *client, cwd=tmp_path
        )
        assert (code, out.strip()) == (0, "SERVING"), err
        code, out, err = await run_process(
            CLI, "chat", "--target", gw.target, *trust, *client, "hi", cwd=tmp_path
        )
        assert code == 0, err
        assert "hi" in out
        refused, _, _ = await run_process(
            CLI, "health", "--target", gw.target, *trust, cwd=tmp_path, timeout_s=60
        )
        assert refused != 0  # no client certificate: mutual TLS refuses it
