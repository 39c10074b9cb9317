"""SSRF refusals at registration (endpoint_validate) and at every call (safe_request)."""

from __future__ import annotations

import socket

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from workers.exceptions import EndpointRefused, RuntimeFailure, TransientRuntimeError
from workers.runtimes.http_safety import endpoint_validate, resolve_target, safe_request

REFUSED_URLS = [
    "http://127.0.0.1/",
    "http://127.0.0.1:8000/hook",
    "http://localhost/",
    "http://LOCALHOST./",
    "http://api.localhost/",
    "http://[::1]/",
    "http://[::]/",
    "http://0.0.0.0/",
    "http://0/",
    "http://169.254.169.254/latest/meta-data/",
    "http://metadata.google.internal/",
    "http://100.100.100.200/",
    "http://[fd00:ec2::254]/",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://[fc00::1]/",
    "http://[fe80::1]/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0x7f.1/",
    "http://0177.0.0.1/",
    "http://127.1/",
    "http://017700000001/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[64:ff9b::a00:1]/",
    "http://[2002:7f00:1::]/",
]


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_registration_refuses_internal_addresses(url: str) -> None:
    with pytest.raises(EndpointRefused) as caught:
        endpoint_validate(url)
    assert "refused" in str(caught.value) or "names this machine" in str(caught.value)


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_calls_refuse_internal_addresses_before_connecting(url: str) -> None:
    with pytest.raises(EndpointRefused):
        safe_request("POST", url, body=b"{}", timeout=2)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/", "Only http and https"),
        ("file:///etc/passwd", "Only http and https"),
        ("gopher://example.com/", "Only http and https"),
        ("http://user:pw@example.com/", "credentials"),
        ("http:///nohost", "no host"),
        ("", "empty"),
        ("http://exa mple.com/", "whitespace"),
        ("http://example.com:99999/", "malformed"),
        ("http://256.1.1.1.1/", "could not be resolved"),
        ("http://0x1ffffffff/", "not a valid IPv4"),
    ],
)
def test_malformed_urls_are_refused_with_a_reason(url: str, message: str) -> None:
    with pytest.raises(EndpointRefused, match=message):
        endpoint_validate(url)


def test_a_name_resolving_to_loopback_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_getaddrinfo(host: str, port: int, **kwargs: object) -> list:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(EndpointRefused, match="loopback"):
        endpoint_validate("https://agent.example.com/hook")


def test_a_name_with_one_public_and_one_private_record_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fake_getaddrinfo(host: str, port: int, **kwargs: object) -> list:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(EndpointRefused, match=r"10\.1\.2\.3 is a private address"):
        endpoint_validate("https://agent.example.com/hook")


def test_a_public_name_is_pinned_to_its_checked_address(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_getaddrinfo(host: str, port: int, **kwargs: object) -> list:
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2606:4700::6810:84e5", port, 0, 0))]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    target = resolve_target("https://Agent.Example.com:8443/hook?x=1")
    assert (target.host, target.port, target.path) == ("agent.example.com", 8443, "/hook?x=1")
    assert target.address == "2606:4700::6810:84e5"
    assert target.host_header == "agent.example.com:8443"


def test_public_literal_addresses_pass() -> None:
    endpoint_validate("https://93.184.216.34/hook")
    endpoint_validate("https://[2606:4700::6810:84e5]/hook")


def test_the_allowed_test_host_passes_only_on_its_port(
    settings: object, httpserver: HTTPServer
) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = [f"{httpserver.host}:{httpserver.port}"]
    endpoint_validate(httpserver.url_for("/hook"))
    with pytest.raises(EndpointRefused, match="loopback"):
        endpoint_validate(f"http://{httpserver.host}:{httpserver.port + 1}/hook")


def test_a_call_to_the_allowed_host_pins_the_address_and_sends_the_host_header(
    settings: object, httpserver: HTTPServer
) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = [f"localhost:{httpserver.port}"]
    httpserver.expect_request("/hook", method="POST", data=b'{"a": 1}').respond_with_data(
        '{"ok": true}'
    )
    response = safe_request(
        "POST", f"http://localhost:{httpserver.port}/hook", body=b'{"a": 1}', timeout=5
    )
    assert response.status == 200
    assert response.body == b'{"ok": true}'
    request, _ = httpserver.log[-1]
    assert request.headers["Host"] == f"localhost:{httpserver.port}"


@pytest.mark.parametrize(
    "location",
    [
        "http://127.0.0.1:{other}/",
        "http://[::1]:{other}/",
        "http://169.254.169.254/latest/meta-data/",
        "http://2130706433:{other}/",
        "http://localhost:{other}/",
    ],
)
def test_a_redirect_to_a_refused_address_is_refused(
    settings: object, httpserver: HTTPServer, location: str
) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = [f"127.0.0.1:{httpserver.port}"]
    target = location.format(other=httpserver.port + 1)
    httpserver.expect_request("/hook").respond_with_response(
        Response(status=302, headers={"Location": target})
    )
    with pytest.raises(EndpointRefused, match=r"refused|names this machine"):
        safe_request("POST", httpserver.url_for("/hook"), body=b"{}", timeout=5)
    assert len(httpserver.log) == 1


def test_redirects_within_the_allowed_host_are_followed_up_to_the_limit(
    settings: object, httpserver: HTTPServer
) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = [f"127.0.0.1:{httpserver.port}"]
    httpserver.expect_request("/a").respond_with_response(
        Response(status=307, headers={"Location": "/b"})
    )
    httpserver.expect_request("/b", method="POST", data=b"{}").respond_with_data("done")
    assert safe_request("POST", httpserver.url_for("/a"), body=b"{}").body == b"done"

    httpserver.expect_request("/loop").respond_with_response(
        Response(status=302, headers={"Location": "/loop"})
    )
    with pytest.raises(RuntimeFailure, match="redirected more than 3 times"):
        safe_request("GET", httpserver.url_for("/loop"))


def test_oversized_answers_are_refused(settings: object, httpserver: HTTPServer) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = [f"127.0.0.1:{httpserver.port}"]
    httpserver.expect_request("/big").respond_with_data("x" * 2000)
    with pytest.raises(RuntimeFailure, match="limit is 1000"):
        safe_request("GET", httpserver.url_for("/big"), max_response_bytes=1000)


def test_a_silent_server_times_out_as_a_transient_error(settings: object) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = [f"127.0.0.1:{port}"]
    try:
        with pytest.raises(TransientRuntimeError, match="did not answer in time"):
            safe_request("GET", f"http://127.0.0.1:{port}/", timeout=0.3)
    finally:
        listener.close()


def test_a_closed_port_is_a_transient_error(settings: object) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = [f"127.0.0.1:{port}"]
    with pytest.raises(TransientRuntimeError, match="Could not reach"):
        safe_request("GET", f"http://127.0.0.1:{port}/", timeout=2)
