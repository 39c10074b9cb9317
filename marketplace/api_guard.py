"""Under ``/api/`` every answer is JSON, errors in the one shape of ``api_errors``.

DRF shapes the errors its views raise; this middleware covers what never reaches a view or leaves
one as HTML: unknown routes and ids the URL patterns refuse (Django's 404 page), bodies over the
size limit (refused here from ``Content-Length`` before anything reads them), NUL characters in
the path or query (PostgreSQL cannot store them; refused before any query), and a crash
anywhere (Django's 500 page, in DEBUG its traceback page; the error is logged as usual). A crash
because PostgreSQL, Redis or the broker is out of reach answers 503 with ``Retry-After`` instead,
wherever it happened (a view, a middleware, the authentication).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.signals import got_request_exception
from django.http import HttpRequest, HttpResponse, JsonResponse

from marketplace.api_errors import (
    RETRY_AFTER_SECONDS,
    UNAVAILABLE,
    error_body,
    unavailable_response_body,
)

API_PREFIX = "/api/"

# What each status means when Django (not a view) answered it.
_GENERIC = {
    400: ("bad_request", "The request could not be read."),
    403: ("forbidden", "You may not do this."),
    404: ("not_found", "No such API endpoint or object; the routes are listed in /api/v1/schema/."),
    405: ("method_not_allowed", "This endpoint does not accept this method."),
    413: ("too_large", "The request body is too large."),
    500: ("server_error", "The server failed to answer; the error was logged. Try again later."),
}
_KEPT_HEADERS = ("Allow", "Retry-After")


def max_body_bytes(content_type: str) -> int:
    """The largest body the API reads: multipart carries delivery files, the rest is JSON."""
    if content_type.startswith("multipart/"):
        return settings.API_MAX_MULTIPART_BYTES
    return settings.API_MAX_JSON_BYTES


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status)


def _has_nul(request: HttpRequest) -> bool:
    if "\x00" in request.path:
        return True
    return any(
        "\x00" in key or any("\x00" in value for value in values)
        for key, values in request.GET.lists()
    )


def _is_json(response: HttpResponse) -> bool:
    content_type = response.get("Content-Type", "")
    return content_type.startswith("application/json") or "+json" in content_type.split(";")[0]


def _note_unavailable(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    """Django turns an uncaught exception into its 500 page before this middleware sees the
    answer; it sends this signal while handling the exception, so the cause is noted here."""
    if request is not None and isinstance(sys.exc_info()[1], UNAVAILABLE):
        request.META["marketplace.unavailable"] = True


got_request_exception.connect(_note_unavailable, dispatch_uid="api-guard-unavailable")


class ApiGuardMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        refused = self._refusal(request)
        if refused is not None:
            return refused
        response = self.get_response(request)
        if response.status_code == 500 and request.META.get("marketplace.unavailable"):
            return self._unavailable()
        if response.status_code >= 400 and not _is_json(response) and not response.streaming:
            response = self._as_json(response)
        return response

    def _refusal(self, request: HttpRequest) -> JsonResponse | None:
        if _has_nul(request):
            return _error(
                400,
                "invalid",
                "The URL contains a NUL character (%00); remove it from the path and query.",
            )
        length = request.META.get("CONTENT_LENGTH") or "0"
        if not length.isascii() or not length.isdigit():
            return _error(400, "bad_request", "Content-Length must be a number of bytes.")
        limit = max_body_bytes(request.META.get("CONTENT_TYPE", ""))
        if int(length) > limit:
            return _error(
                413,
                "too_large",
                f"The body is {int(length)} bytes; this endpoint reads at most {limit} bytes "
                "(large results belong in delivery files).",
            )
        return None

    def _unavailable(self) -> JsonResponse:
        answer = JsonResponse(unavailable_response_body(), status=503)
        answer["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return answer

    def _as_json(self, response: HttpResponse) -> JsonResponse:
        code, message = _GENERIC.get(
            response.status_code, ("error", f"The request failed ({response.status_code}).")
        )
        answer = _error(response.status_code, code, message)
        for header in _KEPT_HEADERS:
            if header in response:
                answer[header] = response[header]
        return answer
