"""Which forward proxy, if any, carries the requests to one upstream origin: decided once per origin.

Egress through an HTTP proxy is how many clusters reach the internet, and the variables curl, httpx
and the vendors' SDKs read are the usual way to say so: `HTTPS_PROXY` for https origins,
`HTTP_PROXY` for http ones, `ALL_PROXY` for either, `NO_PROXY` for the exceptions. `[upstream]`
can name a proxy instead (`proxy`, `no_proxy`) or ignore the environment
(`proxy_from_environment = false`). Loopback and link-local hosts are never proxied, nor the cloud
metadata endpoints (`AWS_METADATA_IPV6`, `METADATA_HOST`): a sidecar (Ollama on localhost) or a
credentials agent is reached directly whatever the environment says. An environment value that is
not an http(s) URL (`ALL_PROXY=socks5://...` set for other tools) is ignored with a warning.

The decision is made when an origin's client is created, not per request: aiohttp's own
`trust_env` reads the whole environment again in a worker thread for every request.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass

from yarl import URL

from provider_gateway.config import register_secret

log = logging.getLogger(__name__)
# Never proxied besides loopback and link-local (IPv4 169.254.0.0/16: IMDS, ECS and EKS credential
# agents): AWS's IPv6 credential endpoints (IMDS fd00:ec2::254, EKS Pod Identity fd00:ec2::23) and
# GCP's metadata server by name. A token for them must not cross a proxy, which could not reach them.
AWS_METADATA_IPV6 = ipaddress.ip_network("fd00:ec2::/64")
METADATA_HOST = "metadata.google.internal"


@dataclass(frozen=True, slots=True)
class Proxy:
    """A proxy's URL without credentials, and the credentials (for `Proxy-Authorization`)."""

    url: URL
    user: str = ""
    password: str = ""

    @property
    def authorization(self) -> str:
        """The `Proxy-Authorization` value (Basic)."""
        return "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()

    @property
    def with_credentials(self) -> str:
        """The URL as httpx takes it, credentials included."""
        return str(self.url.with_user(self.user).with_password(self.password)) if self.user else str(self.url)


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """`[upstream]`'s proxy keys: an explicit proxy, its exceptions, and whether the environment counts."""

    proxy: str = ""
    no_proxy: tuple[str, ...] = ()
    from_environment: bool = True

    def for_origin(self, origin: str) -> Proxy | None:
        """The proxy for `origin` (`scheme://host:port`), or None to connect directly."""
        url = URL(origin)
        host = url.host or ""
        if _never_proxied(host) or _listed(host, self.no_proxy):
            return None
        if self.proxy:
            return parse_proxy(self.proxy)
        if not self.from_environment:
            return None
        proxies = urllib.request.getproxies_environment()  # the variables, either case, as curl's
        if _listed(host, proxies.get("no", "").split(",")):
            return None
        chosen = proxies.get(url.scheme) or proxies.get("all")
        if not chosen:
            return None
        try:
            return parse_proxy(chosen)
        except ValueError as error:  # e.g. ALL_PROXY=socks5://... meant for other tools
            log.warning("ignoring the environment's proxy for %s: %s", origin, error)
            return None


def parse_proxy(value: str) -> Proxy:
    """`http://user:password@host:port` -> the URL without its credentials, and the credentials
    (the password registered as a secret, so that no log or error shows it)."""
    url = URL(value if "://" in value else f"http://{value}")  # curl's reading of a bare host:port
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"not an HTTP proxy URL: {url.with_password(None) if url.password else url}")
    user, password = url.user or "", url.password or ""
    if password:
        register_secret(password)
    return Proxy(url.with_user(None), user, password)


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _never_proxied(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost") or host == METADATA_HOST:
        return True
    address = _address(host)
    return address is not None and (
        address.is_loopback or address.is_link_local or address in AWS_METADATA_IPV6
    )


def _listed(host: str, patterns: Sequence[str]) -> bool:
    """`NO_PROXY`-style entries, as curl reads them: a host or address (a port after it is ignored;
    an IPv6 address in brackets), an address range (`10.0.0.0/8`), a domain (`example.com` or
    `.example.com` covers its subdomains), or `*` for every host."""
    host = host.lower()
    address = _address(host)
    for pattern in patterns:
        entry = _without_port(pattern.strip().lower().lstrip("."))
        if not entry:
            continue
        if entry == "*" or host == entry or host.endswith("." + entry):
            return True
        if address is not None and "/" in entry:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        elif address is not None and _address(entry) == address:
            return True
    return False


def _without_port(entry: str) -> str:
    """`host:port` -> `host`; `[v6]:port` and `[v6]` -> `v6`; a bare IPv6 address stays whole."""
    if entry.startswith("["):
        return entry[1:].split("]", 1)[0]
    return entry.split(":", 1)[0] if entry.count(":") == 1 else entry
