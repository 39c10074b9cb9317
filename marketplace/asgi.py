"""The web server's application: pages, API, websockets, MCP and A2A on one origin (``make run``,
deploy/).

Plain HTTP goes to Django's *WSGI* handler on a pool of threads (a2wsgi's bridge), websockets to
Channels, ``/mcp`` and ``/a2a`` to the protocols' application (``marketplace.protocols.asgi``,
whose lifespan runs the MCP session manager). Django's own ASGI handler runs every sync view and
middleware on one thread per process and served 4x fewer requests than gunicorn; through the
bridge the same views serve as many as under gunicorn, and the page opens its socket on its own
origin (BENCHMARKS.md, "Web servers").
"""

import gc
import os

from django.core.wsgi import get_wsgi_application

from core.tracing import tracing_start

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
tracing_start("marketplace-web")  # before the handler loads: it adds Django's middleware
wsgi_application = get_wsgi_application()

from a2wsgi import WSGIMiddleware  # noqa: E402
from channels.auth import AuthMiddlewareStack  # noqa: E402 - needs the apps loaded
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from starlette.types import Receive, Scope, Send  # noqa: E402

from marketplace.protocols.asgi import PROTECTED as PROTOCOL_PATHS  # noqa: E402
from marketplace.protocols.asgi import application as protocols_application  # noqa: E402
from marketplace.routing import websocket_urlpatterns  # noqa: E402

# django-stubs types the handler's answer as HttpResponseBase, which is the Iterable[bytes] of
# a WSGI application at run time.
django_http = WSGIMiddleware(wsgi_application, workers=settings.WEB_THREADS)  # type: ignore[arg-type]


async def http_application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["path"].rstrip("/") in PROTOCOL_PATHS:
        await protocols_application(scope, receive, send)
    else:
        # a2wsgi types the ASGI messages as TypedDicts, starlette as mappings: the same messages.
        await django_http(scope, receive, send)  # type: ignore[arg-type]


application = ProtocolTypeRouter(
    {
        "http": http_application,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
        "lifespan": protocols_application,
    }
)

# As in wsgi.py: what was loaded stays, out of the collector's way.
gc.freeze()
gc.set_threshold(50_000, 20, 20)
