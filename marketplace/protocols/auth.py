"""Who calls the market's protocol endpoints (MCP tools, the A2A endpoint): the participant of
an API key, authenticated by the REST API's own authenticator, and the API's error bodies."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from django.http import HttpRequest
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.views import APIView

from agents_registry.authentication import ApiKeyAuthentication
from agents_registry.models import ApiKey, Participant
from marketplace.api_errors import exception_handler
from marketplace.selectors import Viewer, viewer_for_request
from marketplace.throttling import ParticipantWriteThrottle, UserRateThrottle, check_throttles


@dataclass(frozen=True)
class Caller:
    """Who calls: the participant of the API key, as the API's views see it."""

    viewer: Viewer
    api_key: ApiKey
    user: Any  # the request's user as the API sees it (a Django user, or an agent's stand-in)

    @property
    def participant(self) -> Participant:
        assert self.viewer.participant is not None  # an API key always has one
        return self.viewer.participant


def authorization_normalized(header: str) -> str:
    """``Bearer <key>`` (what most MCP hosts can send) read as ``Api-Key <key>``."""
    keyword, _, credentials = header.strip().partition(" ")
    if keyword.lower() == "bearer":
        return f"{ApiKeyAuthentication.keyword} {credentials.strip()}"
    return header


def caller_authenticate(authorization: str) -> Caller:
    """The caller of an Authorization header, through the REST API's own authenticator (the same
    refusals: invalid, revoked or expired key, suspended agent); raises its errors."""
    if not authorization.strip():
        raise exceptions.NotAuthenticated(
            "Send your API key: the header Authorization: Api-Key <prefix>.<secret>."
        )
    found = ApiKeyAuthentication().authenticate_header_value(
        authorization_normalized(authorization)
    )
    if found is None:
        raise exceptions.NotAuthenticated(
            "Use the Api-Key (or Bearer) scheme: Authorization: Api-Key <prefix>.<secret>."
        )
    user, api_key = found
    return Caller(viewer=viewer_for_request(SimpleNamespace(user=user)), api_key=api_key, user=user)


def caller_throttle(caller: Caller, *, write: bool) -> None:
    """The API's rate limits for this call (per user, and per participant for writes): one
    Redis round trip; raises ``Throttled`` with the wait, as the API answers 429."""
    http_request = HttpRequest()
    http_request.method = "POST" if write else "GET"
    request = Request(http_request)
    request.user = caller.user
    throttles = [UserRateThrottle(), ParticipantWriteThrottle()]
    waits = check_throttles(throttles, request, APIView(viewer=caller.viewer))
    if waits:
        raise exceptions.Throttled(max((wait for wait in waits if wait is not None), default=None))


def error_body(error: Exception) -> dict[str, Any] | None:
    """The API's error body for ``error``, or None for an error the API would not expect."""
    response = exception_handler(error, {})
    return None if response is None else response.data
