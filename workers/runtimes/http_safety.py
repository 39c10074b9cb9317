"""SSRF-safe outbound HTTP: the one chokepoint through which workers call agents' endpoints.

An agent's endpoint is a URL chosen by a stranger, called from inside our network. So:

* only ``http``/``https``, no credentials in the URL;
* the host is resolved by us, and every address it resolves to must be public: loopback, private,
  shared (CGNAT), link-local, multicast, reserved, unspecified and cloud metadata addresses are
  refused, IPv4 and IPv6 alike, including IPv4 hidden in IPv6 (``::ffff:127.0.0.1``, NAT64, 6to4,
  Teredo) and the integer spellings C's ``inet_aton`` accepts (``2130706433``, ``0x7f.1``,
  ``0177.0.0.1``);
* the connection goes to the address we checked (pinned), with the ``Host`` header and TLS SNI set
  to the name, so a DNS answer that changes between the check and the connect (DNS rebinding)
  cannot redirect us;
* redirects are followed by hand, at most a few, and each hop is checked again;
* a response is read up to a size cap and within one overall deadline.

``settings.OUTBOUND_HTTP_ALLOWED_HOSTS`` lists the hosts a development or test set-up needs to
reach anyway (``127.0.0.1:8123`` allows that port only, ``127.0.0.1`` every port of that host).
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from django.conf import settings

from workers.exceptions import EndpointRefused, RuntimeFailure, TransientRuntimeError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Metadata services answer on addresses that are not all link-local (Alibaba uses CGNAT space,
# AWS has an IPv6 ULA one); listed so the refusal names them even if the ranges change.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",
        "169.254.170.2",
        "169.254.169.253",
        "100.100.100.200",
        "192.0.0.192",
        "fd00:ec2::254",
    )
)
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
REFUSED_NAMES = ("localhost", "localhost.localdomain", "metadata", "metadata.google.internal")
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# A host made only of C integer parts (decimal, 0-octal, 0x-hex), which inet_aton reads as IPv4.
_INTEGER_PART = r"(?:0[xX][0-9a-fA-F]*|[0-9]+)"
_INTEGER_HOST = re.compile(rf"{_INTEGER_PART}(?:\.{_INTEGER_PART}){{0,3}}\.?")

DEFAULT_TIMEOUT_SECONDS = 15.0
DEFAULT_MAX_RESPONSE_BYTES = 1_000_000
DEFAULT_MAX_REDIRECTS = 3


class HostUnresolvable(EndpointRefused):
    code = "endpoint_unresolvable"


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str
    port: int
    path: str
    address: str  # the checked address the connection is pinned to

    @property
    def host_header(self) -> str:
        name = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return name if self.port == default else f"{name}:{self.port}"


@dataclass(frozen=True)
class OutboundResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    url: str


def address_refusal(address: IPAddress) -> str | None:
    """Why ``address`` may not be called, or None when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address.teredo:
            embedded = address.teredo[1]
        if embedded is None and address in NAT64_PREFIX:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            reason = address_refusal(embedded)
            return f"{reason} (inside the IPv6 address {address})" if reason else None
    if address in METADATA_ADDRESSES:
        return f"{address} is a cloud metadata address"
    checks = (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
    )
    for attribute, label in checks:
        if getattr(address, attribute):
            return f"{address} is a {label} address"
    if not address.is_global:
        return f"{address} is not a public address"
    return None


def _literal_address(host: str) -> IPAddress | None:
    """The address a host names literally, in any spelling the resolver would accept."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _INTEGER_HOST.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host.rstrip(".")))
        except OSError as error:
            raise EndpointRefused(f"The host {host!r} is not a valid IPv4 address.") from error
    return None


def _host_is_allowed(host: str, port: int) -> bool:
    for entry in settings.OUTBOUND_HTTP_ALLOWED_HOSTS:
        entry = entry.strip().lower()
        if entry.startswith("["):
            name, _, rest = entry[1:].partition("]")
            entry_port = rest[1:] if rest.startswith(":") else ""
        elif entry.count(":") == 1:
            name, _, entry_port = entry.partition(":")
        else:
            name, entry_port = entry, ""
        if name == host and (not entry_port or entry_port == str(port)):
            return True
    return False


def _parse(url: str) -> tuple[str, str, int, str]:
    if not isinstance(url, str) or not url.strip():
        raise EndpointRefused("The endpoint URL is empty.")
    if any(character.isspace() or ord(character) < 32 for character in url):
        raise EndpointRefused("The endpoint URL contains whitespace or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise EndpointRefused(f"The endpoint URL is malformed: {error}.") from error
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise EndpointRefused(f"Only http and https endpoints are allowed, not {scheme or '?'}:.")
    if parts.username is not None or parts.password is not None:
        raise EndpointRefused("Put credentials in the agent's settings, not in the endpoint URL.")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise EndpointRefused("The endpoint URL has no host.")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return scheme, host, port or (443 if scheme == "https" else 80), path


def resolve_target(url: str) -> Target:
    """Check ``url``, resolve its host to one pinned allowed address (raises EndpointRefused)."""
    scheme, host, port, path = _parse(url)
    allowed = _host_is_allowed(host, port)
    literal = _literal_address(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        if not allowed and (host in REFUSED_NAMES or host.endswith(".localhost")):
            raise EndpointRefused(f"The host {host!r} names this machine or its metadata service.")
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as error:
            raise HostUnresolvable(f"The host {host!r} could not be resolved: {error}.") from error
        addresses = []
        for info in infos:
            text = info[4][0]
            if not isinstance(text, str):  # an IPv4 or IPv6 record's address is text
                continue
            address = ipaddress.ip_address(text.split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise HostUnresolvable(f"The host {host!r} resolved to no address.")
    if not allowed:
        # Every address must pass: a name with one public and one private record is refused, or
        # the connection could be steered to the private one.
        for address in addresses:
            reason = address_refusal(address)
            if reason:
                raise EndpointRefused(f"The endpoint {host!r} is refused: {reason}.")
    return Target(
        url=url, scheme=scheme, host=host, port=port, path=path, address=str(addresses[0])
    )


def endpoint_validate(url: str) -> None:
    """Refuse an agent endpoint that is not a public http(s) URL (raises EndpointRefused).

    Called at registration by the registry and market forms; every call checks again.
    """
    resolve_target(url)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to the checked address while TLS verifies the certificate against the name."""

    def __init__(self, address: str, port: int, *, server_name: str, timeout: float) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(address, port, timeout=timeout, context=self._tls)
        self._server_name = server_name

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self._server_name)


def _connection(target: Target, timeout: float) -> http.client.HTTPConnection:
    if target.scheme == "https":
        return _PinnedHTTPSConnection(
            target.address, target.port, server_name=target.host, timeout=timeout
        )
    return http.client.HTTPConnection(target.address, target.port, timeout=timeout)


def _read_capped(
    response: http.client.HTTPResponse, *, limit: int, deadline: float, url: str
) -> bytes:
    declared = response.getheader("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RuntimeFailure(f"The answer from {url} is {declared} bytes; the limit is {limit}.")
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise TransientRuntimeError(f"{url} took longer than the time limit to answer.")
        chunk = response.read1(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise RuntimeFailure(f"The answer from {url} is larger than {limit} bytes.")
        chunks.append(chunk)


def _send_once(
    target: Target,
    method: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    deadline: float,
    max_response_bytes: int,
) -> OutboundResponse:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TransientRuntimeError(f"{target.url} took longer than the time limit to answer.")
    connection = _connection(target, remaining)
    try:
        request_headers = {"Host": target.host_header, **headers}
        connection.request(method, target.path, body=body or None, headers=request_headers)
        response = connection.getresponse()
        content = _read_capped(
            response, limit=max_response_bytes, deadline=deadline, url=target.url
        )
        return OutboundResponse(
            status=response.status,
            headers={name.lower(): value for name, value in response.getheaders()},
            body=content,
            url=target.url,
        )
    except TimeoutError as error:
        raise TransientRuntimeError(f"{target.url} did not answer in time.") from error
    except ssl.SSLError as error:
        raise RuntimeFailure(f"TLS with {target.host} failed: {error}.") from error
    except (OSError, http.client.HTTPException) as error:
        raise TransientRuntimeError(f"Could not reach {target.url}: {error}.") from error
    finally:
        connection.close()


def safe_request(
    method: str,
    url: str,
    *,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    max_redirects: int = DEFAULT_MAX_REDIRECTS,
) -> OutboundResponse:
    """Send one request through the SSRF checks, following at most ``max_redirects`` redirects.

    Raises EndpointRefused (a refused address, at any hop), TransientRuntimeError (timeouts,
    connection errors: worth retrying) or RuntimeFailure (an oversized answer, a TLS failure).
    """
    deadline = time.monotonic() + timeout
    current_headers = dict(headers or {})
    current_method, current_body, current_url = method.upper(), body, url
    for _ in range(max_redirects + 1):
        try:
            target = resolve_target(current_url)
        except HostUnresolvable as error:
            raise TransientRuntimeError(str(error)) from error
        response = _send_once(
            target,
            current_method,
            current_body,
            current_headers,
            deadline=deadline,
            max_response_bytes=max_response_bytes,
        )
        location = response.headers.get("location")
        if response.status not in REDIRECT_STATUSES or not location:
            return response
        next_url = urljoin(current_url, location)
        if urlsplit(next_url).netloc.lower() != urlsplit(current_url).netloc.lower():
            # Credentials meant for one origin are not handed to another.
            current_headers = {
                name: value
                for name, value in current_headers.items()
                if name.lower() not in ("authorization", "cookie")
            }
        if response.status == 303 or (
            response.status in (301, 302) and current_method not in ("GET", "HEAD")
        ):
            current_method, current_body = "GET", b""
            current_headers = {
                name: value
                for name, value in current_headers.items()
                if name.lower() not in ("content-type", "content-length")
            }
        current_url = next_url
    raise RuntimeFailure(f"{url} redirected more than {max_redirects} times.")
