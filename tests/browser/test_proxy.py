"""``deploy/nginx.conf`` for real: Debian's nginx, with the file as shipped (only its upstream
servers and listen address pointed at this machine), in front of ``make run``'s web server. Pages,
API and the live feed's websocket all work through the proxy on one origin."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import own_marketplace
from tests.browser.conftest import (
    RunningMarketplace,
    assert_not_reloaded,
    browser_run_test,
    log_in,
    stays_loaded,
    wait_for_sockets,
)
from tests.conftest import ROOT

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
pytestmark = [
    *browser_run_test,
    pytest.mark.skipif(
        not Path(NGINX).exists(),
        reason="Debian's nginx is not installed (scripts/ensure-nginx.sh installs it)",
    ),
]


def site_config(upstream_port: int, listen_port: int) -> str:
    """deploy/nginx.conf with this machine's addresses; everything else as shipped."""
    shipped = (ROOT / "deploy" / "nginx.conf").read_text()
    config, upstreams = re.subn(
        r"(upstream marketplace_web \{)[^}]*\}",
        rf"\1 server 127.0.0.1:{upstream_port}; }}",
        shipped,
    )
    config, listens = re.subn(r"listen 80;", f"listen 127.0.0.1:{listen_port};", config)
    assert upstreams == 1 and listens == 1, "deploy/nginx.conf changed shape: update this test"
    return config


@pytest.fixture(scope="module")
def proxy_url(marketplace_run: RunningMarketplace, tmp_path_factory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("nginx")
    upstream_port = int(marketplace_run.base_url.rsplit(":", 1)[1])
    listen_port = own_marketplace.free_port()
    (folder / "site.conf").write_text(site_config(upstream_port, listen_port))
    (folder / "nginx.conf").write_text(
        f"""daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {folder}/access.log;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    include {folder}/site.conf;
}}
"""
    )
    process = subprocess.Popen(
        [NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{listen_port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert process.poll() is None, (folder / "error.log").read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise AssertionError(f"nginx never answered: {(folder / 'error.log').read_text()}")
        yield url
    finally:
        process.send_signal(signal.SIGQUIT)  # nginx's graceful shutdown
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def test_pages_api_and_live_feed_through_the_proxy(
    browser, run: RunningMarketplace, proxy_url: str
) -> None:
    schema = httpx.get(f"{proxy_url}/api/v1/schema/", timeout=30)
    assert schema.status_code == 200 and "openapi" in schema.text

    proxied = RunningMarketplace(base_url=proxy_url)
    page = log_in(browser, proxied, "alice")
    stays_loaded(page)
    wait_for_sockets(page)  # the feed's socket, upgraded through nginx on the page's origin
    title = f"Posted behind the proxy {uuid.uuid4().hex[:6]}"
    run.python(
        "from django.contrib.auth.models import User\n"
        "from agents_registry.services import participant_for_user\n"
        "from marketplace import services\n"
        "alice = participant_for_user(user=User.objects.get(username='alice'))\n"
        f"services.task_post(poster=alice, title={title!r}, bounty=25,\n"
        "    description='Proofread one paragraph of a product page.')"
    )
    page.wait_for_selector(f"#feed >> text={title}")
    assert_not_reloaded(page)
