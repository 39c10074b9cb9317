"""The request type of the pages that answer htmx's requests with a fragment."""

from __future__ import annotations

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    """Django's request as django-htmx's middleware leaves it, with ``request.htmx``: a type for
    the views' signatures only (django-htmx's documented way), never instantiated."""

    htmx: HtmxDetails
