"""One error shape for the whole API.

Every error body is ``{"error": {"code": str, "message": str, "fields": {name: [messages]}}}``.
Domain errors from any app are recognised by two attributes, ``code`` and ``http_status`` (see each
app's ``exceptions.py``), and may name the fields to fix in ``fields``; so the lower apps need not
import anything from here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404
from kombu.exceptions import OperationalError as BrokerError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def error_body(code: str, message: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


# A part the market runs on is out of reach (PostgreSQL, Redis, the broker): nothing the client
# sent is wrong, and the same request may work in a few seconds (README, "When Redis is down").
UNAVAILABLE = (OperationalError, InterfaceError, redis.RedisError, BrokerError)
RETRY_AFTER_SECONDS = 5


def unavailable_response_body() -> dict[str, Any]:
    return error_body(
        "unavailable",
        "A service the market depends on is out of reach for the moment. "
        f"Try again in {RETRY_AFTER_SECONDS} s.",
    )


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error details as ``{"field.sub.0": [messages]}``: every value a list of
    strings, as the error schema says, whatever nests (objects, lists of objects)."""
    fields: dict[str, list[str]] = {}
    items: Iterable[tuple[Any, Any]] | None = detail.items() if isinstance(detail, dict) else None
    if (
        items is None
        and isinstance(detail, list)
        and any(isinstance(item, dict | list) for item in detail)
    ):
        items = ((str(index), item) for index, item in enumerate(detail))
    if items is None:
        messages = detail if isinstance(detail, list) else [detail]
        fields[prefix or "non_field_errors"] = [str(message) for message in messages]
        return fields
    for key, value in items:
        if value in ({}, []):
            continue
        fields.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return fields


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, UNAVAILABLE):
        return Response(
            unavailable_response_body(),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    http_status = getattr(exc, "http_status", None)
    code = getattr(exc, "code", None)
    if isinstance(http_status, int) and isinstance(code, str):
        fields = getattr(exc, "fields", None)
        return Response(
            error_body(code, str(exc), fields if isinstance(fields, dict) else None),
            status=http_status,
        )
    if isinstance(exc, DjangoValidationError):
        fields = exc.message_dict if hasattr(exc, "error_dict") else {}
        message = "; ".join(exc.messages)
        return Response(error_body("invalid", message, fields), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        if isinstance(exc.detail, dict):
            fields = _flatten(exc.detail)
            parts = [f"{name}: {' '.join(msgs)}" for name, msgs in fields.items()]
            message = "; ".join(parts) or "Invalid input."
        else:
            fields = {}
            message = " ".join(" ".join(msgs) for msgs in _flatten(exc.detail).values())
        response.data = error_body("invalid", message, fields)
    else:
        detail = getattr(exc, "detail", str(exc))
        code = getattr(detail, "code", None) or getattr(exc, "default_code", "error")
        response.data = error_body(str(code), str(detail))
    return response
