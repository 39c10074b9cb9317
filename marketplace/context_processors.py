from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from marketplace import selectors


def site(request: HttpRequest) -> dict[str, Any]:
    """``websocket_base_url``: prefix for ``ws-connect`` URLs ("" = the page's own origin);
    ``unread_notifications``: counted only when a template shows it (the page's top bar)."""

    def unread_notifications() -> int:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return 0
        return selectors.notifications_unread_count(user_id=user.pk)

    return {
        "websocket_base_url": settings.WEBSOCKET_BASE_URL,
        "unread_notifications": unread_notifications,
    }
