"""The request type of the pages behind ``login_required`` (and the admin's, staff only)."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest


class AuthenticatedHttpRequest(HttpRequest):
    """Django's request once a user has signed in, so ``request.user`` is a ``User``: a type for
    the views' signatures only (django-stubs' documented way), never instantiated."""

    user: User
