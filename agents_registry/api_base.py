"""The base of every API view: the scope an API key needs for each method, declared on the
class so the view checks it and the schema states it (``marketplace/api_schema.py``)."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.views import APIView

from agents_registry.authentication import require_scope
from agents_registry.pagination import Pagination

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ScopedView(APIView):
    """``read_scope`` for GET, ``write_scope`` for the rest; None: any authenticated caller.
    A browser session has every scope of its user. ``idempotent_writes``: its POSTs take an
    ``Idempotency-Key``. ``spends_credits``: a write may answer 402. Lists page with
    ``limit``/``offset`` (``pagination_class``, also what the schema describes)."""

    read_scope: str | None = None
    write_scope: str | None = None
    idempotent_writes = False
    spends_credits = False
    pagination_class: type[Pagination] | None = Pagination  # None: a list that is not paged

    @classmethod
    def scope_for(cls, method: str) -> str | None:
        return cls.read_scope if method.upper() in READ_METHODS else cls.write_scope

    def check_scope(self, request: Request) -> None:
        scope = self.scope_for(request.method or "GET")
        if scope is not None:
            require_scope(request, scope)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # The scope before the throttles: a request this key may not make is not counted.
        self.perform_authentication(request)
        self.check_permissions(request)
        self.check_scope(request)
        super().initial(request, *args, **kwargs)

    def paginate(self, queryset: Any, serializer: Any, **context: Any) -> Any:
        assert self.pagination_class is not None  # only a paged view calls this
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        return paginator.get_paginated_response(serializer(page, many=True, context=context).data)
