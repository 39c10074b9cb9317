"""The protocols' ASGI application: the MCP server (streamable HTTP) at ``/mcp``, the market's
A2A endpoint (JSON-RPC, ``workers.a2a_server``) at ``/a2a``, health at ``/healthz``.

Run as its own process (``make run`` starts it on ``MCP_PORT``, by default the web port + 2):
``uvicorn marketplace.protocols.asgi:application``. Stateless, with JSON answers: any process
can answer any request, so it scales like the web processes behind one load balancer.

A request without a valid API key is refused here with 401 and the API's error body, before the
MCP layer sees it; each tool then authenticates the same header again (the key's one prepared
statement) to act as the key's participant within its scopes.
"""

from __future__ import annotations

import json
import os
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
django.setup()

import anyio.to_thread  # noqa: E402 - after django.setup()
from a2a.server.routes import create_jsonrpc_routes  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import close_old_connections  # noqa: E402
from mcp.server.transport_security import TransportSecuritySettings  # noqa: E402
from starlette.datastructures import Headers  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402
from starlette.types import ASGIApp, Receive, Scope, Send  # noqa: E402

from marketplace.protocols.auth import caller_authenticate, error_body  # noqa: E402
from marketplace.protocols.mcp_tools import server  # noqa: E402
from workers.a2a_server import MarketRequestHandler  # noqa: E402

MCP_PATH = "/mcp"
A2A_PATH = "/a2a"  # the market's A2A endpoint (workers.a2a_server), beside the MCP server
PROTECTED = (MCP_PATH, A2A_PATH)


def transport_security() -> TransportSecuritySettings:
    """DNS-rebinding protection for the hosts Django serves (``ALLOWED_HOSTS``)."""
    hosts = list(settings.ALLOWED_HOSTS)
    if "*" in hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    names = [host.lstrip(".") for host in hosts]
    allowed = [pattern for name in names for pattern in (name, f"{name}:*")]
    origins = [
        f"{scheme}://{name}{port}"
        for name in names
        for scheme in ("http", "https")
        for port in ("", ":*")
    ]
    origins += [settings.SITE_URL.rstrip("/"), *settings.CSRF_TRUSTED_ORIGINS]
    return TransportSecuritySettings(allowed_hosts=allowed, allowed_origins=origins)


def _authenticate(authorization: str) -> dict[str, Any] | None:
    """None when the header authenticates, else the API's error body (in a worker thread)."""
    close_old_connections()
    try:
        caller_authenticate(authorization)
    except Exception as error:
        body = error_body(error)
        if body is None:
            raise
        return body
    finally:
        close_old_connections()
    return None


class ApiKeyRequired:
    """Refuses MCP and A2A requests without a valid API key (401, ``WWW-Authenticate:
    Api-Key``)."""

    def __init__(self, app: ASGIApp, *, threads: int) -> None:
        self.app = app
        self.threads = threads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            # Each tool runs in a thread with its own database connection: bound them.
            anyio.to_thread.current_default_thread_limiter().total_tokens = self.threads
        elif scope["type"] == "http" and scope["path"].rstrip("/") in PROTECTED:
            authorization = Headers(scope=scope).get("authorization", "")
            refusal = await anyio.to_thread.run_sync(_authenticate, authorization)
            if refusal is not None:
                response = JSONResponse(
                    refusal, status_code=401, headers={"WWW-Authenticate": "Api-Key"}
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def healthz(request: Request) -> Response:
    return Response(json.dumps({"status": "ok"}), media_type="application/json")


def build_application() -> ASGIApp:
    mcp_app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        json_response=True,
        transport_security=transport_security(),
    )
    mcp_app.router.routes.append(Route("/healthz", healthz))
    mcp_app.router.routes.extend(create_jsonrpc_routes(MarketRequestHandler(), A2A_PATH))
    return ApiKeyRequired(mcp_app, threads=settings.MCP_THREADS)


application = build_application()
