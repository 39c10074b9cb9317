"""What every market endpoint shares: the caller as a ``Viewer``, API-key scopes, the write
throttle, pagination and ``Idempotency-Key`` replays."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.core.files.uploadedfile import UploadedFile
from django.db import connection, transaction
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response

from agents_registry import pagination
from agents_registry.api_base import ScopedView
from agents_registry.authentication import require_scope
from agents_registry.models import ApiKey
from marketplace.exceptions import IdempotencyConflict
from marketplace.models import IdempotentRequest
from marketplace.selectors import Viewer, viewer_for_request
from marketplace.throttling import ParticipantWriteThrottle, check_throttles


class Pagination(pagination.Pagination):
    """``count`` is exact up to 1,000 and stops there (as GitHub's search does): counting visits
    every matching row, and a large count costs the database far more than the page itself.
    Pages past the cap still work."""

    count_cap = 1_000
    # Set by ``window`` or ``paginate_queryset`` before anything reads them (the stubs allow None).
    request: Request
    limit: int
    offset: int
    count: int

    def window(self, request: Request) -> tuple[int, int]:
        """The request's ``limit`` and ``offset`` (checked), for a view that fetches its page
        itself and then sets ``count``: the links and the envelope then work as for a queryset."""
        self.request = request
        self.limit, self.offset = self.get_limit(request), self.get_offset(request)
        return self.limit, self.offset

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


class MarketView(ScopedView):
    """Base of the market endpoints: the caller as a ``Viewer``, the write throttle, and
    ``Idempotency-Key`` on every write."""

    # Every market endpoint names its scopes (the MCP tools ask the same ones): never None here.
    read_scope: str = ApiKey.Scope.TASKS_READ
    write_scope: str = ApiKey.Scope.TASKS_WRITE
    idempotent_writes = True
    pagination_class: type[Pagination] | None = Pagination
    viewer: Viewer

    def get_throttles(self) -> list[Any]:
        return [*super().get_throttles(), ParticipantWriteThrottle()]

    def check_throttles(self, request: Request) -> None:
        # DRF asks each throttle in turn (a Redis round trip each); these count in one.
        waits = check_throttles(self.get_throttles(), request, self)
        if waits:
            wait = max((w for w in waits if w is not None), default=None)
            # DRF's throttled() takes None (no known wait) as Throttled does; the stubs say float.
            self.throttled(request, wait)  # type: ignore[arg-type]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        self.perform_authentication(request)
        self.viewer = viewer_for_request(request)
        super().initial(request, *args, **kwargs)

    @property
    def participant(self):
        return self.viewer.participant


def require_party_scope(request: Request, task: Any, participant: Any) -> None:
    """An operation open to both parties asks of an API key the scope of the caller's side:
    managing tasks for the poster, doing the work for the assignee."""
    poster = participant is not None and participant.pk == task.poster_id
    require_scope(request, ApiKey.Scope.TASKS_WRITE if poster else ApiKey.Scope.DELIVERIES_WRITE)


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


def _lock_id(participant_id: int, key: str) -> int:
    digest = hashlib.sha256(f"idempotency {participant_id} {key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def idempotent(request: Request, viewer: Viewer, produce: Callable[[], Response]) -> Response:
    """Run ``produce`` once per ``Idempotency-Key``: a replay returns the first response (with
    ``Idempotent-Replayed: true``); the same key with another payload is a 409.

    Concurrent requests with one key take turns on a transaction-scoped advisory lock of that
    key: the first runs, the others wait for its commit and replay its answer (without the lock,
    a second request could run beside the first and be refused by the effect the first was
    making, e.g. "you already have an active bid")."""
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

    replay = stored()  # the common replay needs no lock
    if replay is not None:
        return replay
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s)", [_lock_id(viewer.participant.pk, key)]
            )
        replay = stored()  # read after the lock: what a request that held it committed
        if replay is not None:
            return replay
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
