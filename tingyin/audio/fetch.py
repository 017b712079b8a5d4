"""Download audio from a user-supplied URL without letting the URL reach inside the network.

Only http(s); every address the host name resolves to must be public (no loopback, private,
link-local — which includes cloud metadata at 169.254.169.254 — multicast, reserved or unspecified
addresses) unless the operator allow-lists the host or its network (``TINGYIN_FETCH_ALLOW``). The
connection goes to the address that was checked (no second DNS lookup that could answer
differently), each redirect is checked the same way, and size and time are bounded while streaming.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from tingyin.config import get_settings
from tingyin.errors import InvalidRequest

MAX_REDIRECTS = 5


class FetchError(InvalidRequest):
    """The audio URL could not be fetched."""

    code = "fetch_failed"


class FetchRefused(FetchError):
    """The URL is not allowed (scheme, or an address inside the network)."""

    code = "fetch_refused"


class FetchTooLarge(FetchError):
    """The download is larger than allowed."""

    code = "fetch_too_large"


class FetchEmpty(FetchError):
    """The download is empty."""

    code = "fetch_empty"


@dataclass(frozen=True)
class UrlPolicy:
    allow: tuple[str, ...] = ()  # host names, addresses or networks (CIDR) exempt from the address rules
    max_bytes: int = 500 * 1024 * 1024
    timeout_s: float = 300.0

    @classmethod
    def from_settings(cls) -> UrlPolicy:
        settings = get_settings()
        allow = tuple(item.strip() for item in settings.fetch_allow.split(",") if item.strip())
        return cls(allow, settings.fetch_max_bytes, settings.fetch_timeout_s)

    def _allowed_address(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        for item in self.allow:
            try:
                if address in ipaddress.ip_network(item, strict=False):
                    return True
            except ValueError:
                continue
        return False

    def check(self, url: str) -> tuple[str, str, int, str]:
        """Validate ``url``; returns (scheme, host, port, address to connect to)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise FetchRefused(f"only http and https URLs are fetched, not {parts.scheme or 'no scheme'!r}")
        host = parts.hostname
        if not host:
            raise FetchRefused("the URL has no host")
        if parts.username or parts.password:
            raise FetchRefused("URLs with credentials are not fetched")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise FetchError(f"cannot resolve {host}: {exc}") from exc
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        host_allowed = host.lower() in (a.lower() for a in self.allow)
        for address in addresses:
            if host_allowed or self._allowed_address(address):
                continue
            if not address.is_global or address.is_multicast:
                raise FetchRefused(f"{host} resolves to {address}, an address inside the network; refused")
        return parts.scheme, host, port, str(addresses[0])


def check_url(url: str, policy: UrlPolicy | None = None) -> None:
    """Refuse a URL early (at submit time), before any job is queued."""
    (policy or UrlPolicy.from_settings()).check(url)


def fetch_to_file(url: str, destination: Path, policy: UrlPolicy | None = None) -> int:
    """Download ``url`` to ``destination``; returns the byte count."""
    policy = policy or UrlPolicy.from_settings()
    deadline = time.monotonic() + policy.timeout_s
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        scheme, host, port, address = policy.check(current)
        parts = urlsplit(current)
        literal = f"[{address}]" if ":" in address else address
        pinned = urlunsplit((scheme, f"{literal}:{port}", parts.path or "/", parts.query, ""))
        host_header = host if parts.port is None else f"{host}:{parts.port}"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError("the download took too long")
        try:
            with httpx.Client(timeout=min(remaining, 30.0), follow_redirects=False) as client:
                request = client.build_request(
                    "GET", pinned, headers={"Host": host_header}, extensions={"sni_hostname": host}
                )
                response = client.send(request, stream=True)
                try:
                    size = _receive(response, destination, policy, deadline)
                finally:
                    response.close()
                if size is None:
                    location = response.headers.get("location")
                    if not location:
                        raise FetchError("redirect without a location")
                    current = urljoin(current, location)
                    continue
                return size
        except httpx.HTTPError as exc:
            raise FetchError(f"download failed: {exc}") from exc
    raise FetchError(f"more than {MAX_REDIRECTS} redirects")


def _receive(response: httpx.Response, destination: Path, policy: UrlPolicy, deadline: float) -> int | None:
    """Write a 200 response's body to ``destination``; None for a redirect."""
    if response.status_code in (301, 302, 303, 307, 308):
        return None
    if response.status_code != 200:
        raise FetchError(f"the audio URL answered HTTP {response.status_code}")
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > policy.max_bytes:
        raise FetchTooLarge(f"the audio is {declared} bytes, more than {policy.max_bytes}")
    size = 0
    destination.parent.mkdir(parents=True, exist_ok=True)
    with destination.open("wb") as handle:
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > policy.max_bytes:
                raise FetchTooLarge(f"the audio is larger than {policy.max_bytes} bytes")
            if time.monotonic() > deadline:
                raise FetchError("the download took too long")
            handle.write(chunk)
    if size == 0:
        raise FetchEmpty("the downloaded audio is empty")
    return size
