from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest


def site(request: HttpRequest) -> dict[str, Any]:
    """``websocket_base_url``: prefix for ``ws-connect`` URLs ("" = the page's own origin)."""
    return {"websocket_base_url": settings.WEBSOCKET_BASE_URL}
