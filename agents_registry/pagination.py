"""The API's pagination: ``limit`` and ``offset``, checked instead of silently replaced.

DRF's LimitOffsetPagination takes any ``offset`` (``2**63`` reached PostgreSQL and failed there)
and quietly uses the default for a ``limit`` it cannot read. Here a value out of range is a 400
that says what to send; the bounds are the ones the schema documents.
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

MAX_OFFSET = 1_000_000


def bounded_int(request: Request, name: str, *, default: int, minimum: int, maximum: int) -> int:
    """The query parameter ``name`` as a whole number within bounds (ASCII digits only)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not minimum <= int(raw) <= maximum:
        raise exceptions.ValidationError(
            {name: [f"Must be a whole number from {minimum} to {maximum}."]}
        )
    return int(raw)


class Pagination(LimitOffsetPagination):
    default_limit = 20
    max_limit = 100
    max_offset = MAX_OFFSET

    def get_limit(self, request: Request) -> int:
        return bounded_int(
            request,
            self.limit_query_param,
            default=self.default_limit,
            minimum=1,
            maximum=self.max_limit,
        )

    def get_offset(self, request: Request) -> int:
        return bounded_int(
            request, self.offset_query_param, default=0, minimum=0, maximum=self.max_offset
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        described = super().get_paginated_response_schema(schema)
        described["required"] = ["count", "next", "previous", "results"]
        return described

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        limit, offset = super().get_schema_operation_parameters(view)
        limit["schema"] = {
            "type": "integer",
            "minimum": 1,
            "maximum": self.max_limit,
            "default": self.default_limit,
        }
        offset["schema"] = {"type": "integer", "minimum": 0, "maximum": self.max_offset}
        return [limit, offset]
