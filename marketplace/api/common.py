"""What every market endpoint shares: the caller as a ``Viewer``, API-key scopes, the write
throttle, pagination and ``Idempotency-Key`` replays."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from rest_framework import exceptions
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents_registry.authentication import require_scope
from agents_registry.models import ApiKey
from marketplace.exceptions import IdempotencyConflict
from marketplace.models import IdempotentRequest
from marketplace.selectors import Viewer, viewer_for_request
from marketplace.throttling import ParticipantWriteThrottle, check_throttles


class Pagination(LimitOffsetPagination):
    """``count`` is exact up to 1,000 and stops there (as GitHub's search does): counting visits
    every matching row, and at 100,000 open tasks even a count capped at 10,000 cost the
    database 6 ms against 0.25 ms for the page itself. Pages past the cap still work."""

    default_limit = 20
    max_limit = 100
    count_cap = 1_000

    def get_count(self, queryset: Any) -> int:
        if hasattr(queryset, "values"):
            return queryset.order_by().values("pk")[: self.count_cap].count()
        return len(queryset)

    # DRF's links, built from the parsed query instead of parsing the URL twice per link (a tenth
    # of the task list's CPU): the same URLs, parameters sorted as DRF sorts them.
    def get_next_link(self) -> str | None:
        if self.offset + self.limit >= self.count:
            return None
        return self._link(self.offset + self.limit)

    def get_previous_link(self) -> str | None:
        if self.offset <= 0:
            return None
        return self._link(self.offset - self.limit if self.offset > self.limit else None)

    def _link(self, offset: int | None) -> str:
        query = dict(self.request.query_params.lists())
        query[self.limit_query_param] = [str(self.limit)]
        query.pop(self.offset_query_param, None)
        if offset is not None:
            query[self.offset_query_param] = [str(offset)]
        base = self.request.build_absolute_uri(self.request.path)
        return f"{base}?{urlencode(sorted(query.items()), doseq=True)}"


class MarketView(APIView):
    """Base of the market endpoints. ``read_scope``/``write_scope`` are checked against an API
    key's scopes (a browser session has every scope of its user)."""

    read_scope: str = ApiKey.Scope.TASKS_READ
    write_scope: str = ApiKey.Scope.TASKS_WRITE
    viewer: Viewer

    def get_throttles(self) -> list[Any]:
        return [*super().get_throttles(), ParticipantWriteThrottle()]

    def check_throttles(self, request: Request) -> None:
        # DRF asks each throttle in turn (a Redis round trip each); these count in one.
        waits = check_throttles(self.get_throttles(), request, self)
        if waits:
            self.throttled(request, max((w for w in waits if w is not None), default=None))

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        self.perform_authentication(request)
        self.check_permissions(request)
        self.viewer = viewer_for_request(request)
        require_scope(
            request, self.read_scope if request.method in ("GET", "HEAD") else self.write_scope
        )
        super().initial(request, *args, **kwargs)

    @property
    def participant(self):
        return self.viewer.participant

    def paginate(self, queryset: Any, serializer: Any) -> Response:
        paginator = Pagination()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        return paginator.get_paginated_response(serializer(page, many=True).data)


def _fingerprint(request: Request) -> str:
    def normal(value: Any) -> Any:
        if isinstance(value, UploadedFile):
            return {"file": value.name, "size": value.size}
        return value

    data = request.data
    if hasattr(data, "lists"):
        payload = {key: [normal(item) for item in values] for key, values in data.lists()}
    else:
        payload = data
    raw = json.dumps([request.method, request.path, payload], sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def idempotent(request: Request, viewer: Viewer, produce: Callable[[], Response]) -> Response:
    """Run ``produce`` once per ``Idempotency-Key``: a replay returns the first response (with
    ``Idempotent-Replayed: true``); the same key with another payload is a 409."""
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key or viewer.participant is None:
        return produce()
    if len(key) > 120:
        raise exceptions.ValidationError({"Idempotency-Key": ["At most 120 characters."]})
    fingerprint = _fingerprint(request)

    def stored() -> Response | None:
        previous = IdempotentRequest.objects.filter(participant=viewer.participant, key=key).first()
        if previous is None:
            return None
        if previous.fingerprint != fingerprint:
            raise IdempotencyConflict(
                "This Idempotency-Key was used for a different request; use a new key."
            )
        return Response(
            previous.body, status=previous.status_code, headers={"Idempotent-Replayed": "true"}
        )

    replay = stored()
    if replay is not None:
        return replay
    try:
        with transaction.atomic():
            response = produce()
            if 200 <= response.status_code < 300:
                IdempotentRequest.objects.create(
                    participant=viewer.participant,
                    key=key,
                    fingerprint=fingerprint,
                    status_code=response.status_code,
                    body=json.loads(json.dumps(response.data, default=str)),
                )
            return response
    except IntegrityError:
        # A concurrent request with this key committed first: its effect stands, ours rolled back.
        replay = stored()
        if replay is None:
            raise
        return replay
