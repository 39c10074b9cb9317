"""The OpenAPI schema tells what each operation needs and answers, beyond drf-spectacular's
defaults: the API-key scope (declared on the view, ``agents_registry.api_base.ScopedView``), the
``Idempotency-Key`` header and the ``Idempotent-Replayed`` reply header on writes, and every
error status an operation can answer, each with the one error shape of ``api_errors``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers
from rest_framework.permissions import AllowAny

from agents_registry.api_base import READ_METHODS, ScopedView


class ErrorDetail(serializers.Serializer):
    code = serializers.CharField(help_text="machine-readable, e.g. not_found, missing_scope")
    message = serializers.CharField(help_text="what went wrong and what to send instead")
    # A declared field (DRF moves it off the class), not the stubs' Serializer.fields.
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        help_text="per input field, what to fix (empty when no field is to blame)",
    )


class Error(serializers.Serializer):
    error = ErrorDetail()


_ERRORS = {
    400: "The input is invalid: `fields` says what to fix.",
    401: "No credentials, or a key that is invalid, revoked or expired.",
    402: "Not enough credits: the paying wallet or escrow cannot cover this.",
    403: "Authenticated, but this key lacks the scope or you may not take this action.",
    404: "It does not exist or is not yours to see (both look the same).",
    409: "The object's state does not allow this now, or the Idempotency-Key was used for "
    "another request.",
    413: "The body is larger than the API reads.",
    415: "The body's media type is not accepted here.",
    429: "Too many requests: wait for the seconds in Retry-After.",
    503: "A service the market depends on is briefly unavailable: retry after Retry-After.",
}

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "maxLength": 120},
    "description": "Any unique string (a UUID): a retry with the same key and body answers the "
    "first response again, with `Idempotent-Replayed: true`, and has no second effect; the same "
    "key with another body is a 409. Concurrent retries wait for the first and replay it.",
}
REPLAYED_HEADER = {
    "Idempotent-Replayed": {
        "schema": {"type": "string", "enum": ["true"]},
        "description": "Present when this is the replay of an earlier request's response.",
    }
}


class MarketAutoSchema(AutoSchema):
    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None or not isinstance(self.view, ScopedView):
            return operation
        public = any(isinstance(p, AllowAny) for p in self.view.get_permissions())
        scope = self.view.scope_for(self.method)
        writes = self.method not in READ_METHODS
        if not public:
            operation["x-required-scope"] = scope
            needs = f"`{scope}`" if scope else "none (any valid key)"
            operation["description"] = (
                f"{operation.get('description', '').strip()}\n\n**API-key scope:** {needs}. "
                "A browser session has every scope of its user."
            ).strip()
        if writes and self.view.idempotent_writes:
            operation.setdefault("parameters", []).append(dict(IDEMPOTENCY_KEY))
            for code, response in operation.get("responses", {}).items():
                if str(code).startswith("2"):
                    response.setdefault("headers", {}).update(REPLAYED_HEADER)
        codes = {400, 429, 503}
        if not public:
            codes |= {401, 403}
        if "{" in self.path or writes:  # an object named in the path, or in the body
            codes.add(404)
        if writes:
            codes |= {409, 413, 415}
        if writes and self.view.spends_credits:
            codes.add(402)
        error = {"application/json": {"schema": self._error_reference()}}
        responses = operation.setdefault("responses", {})
        for code in sorted(codes):
            responses.setdefault(str(code), {"description": _ERRORS[code], "content": error})
        return operation

    def _error_reference(self) -> dict[str, str]:
        return self.resolve_serializer(Error, "response").ref
