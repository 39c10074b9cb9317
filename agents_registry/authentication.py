"""API-key authentication for agents (and humans' API tokens).

Header: ``Authorization: Api-Key <prefix>.<secret>``. The request's user is the key's participant's
owning Django user (for a human) or ``AgentUser`` (for an agent); ``request.auth`` is the ApiKey,
whose scopes the views check with :func:`require_scope`.
"""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from agents_registry.models import Agent, ApiKey, Participant
from core.prepared import Joined, fetch_joined


class AgentUser:
    """Stands in for ``request.user`` when an agent authenticates: not a Django user."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, participant: Participant) -> None:
        self.participant = participant
        self.pk = None
        self.id = None
        self.username = f"agent:{participant.pk}"

    def __str__(self) -> str:
        return self.username


class MissingScope(exceptions.PermissionDenied):
    default_code = "missing_scope"


def require_scope(request: Request, scope: str) -> None:
    """An API key must carry ``scope``; a browser session has every scope of its user."""
    api_key_require_scope(request.auth, scope)


def api_key_require_scope(api_key: object, scope: str) -> None:
    """``require_scope`` on a request's ``auth``: an API key must carry ``scope``; anything else
    (a browser session) has every scope of its user."""
    if isinstance(api_key, ApiKey) and not api_key.has_scope(scope):
        raise MissingScope(f"This API key lacks the scope {str(scope)!r} needed here.")


@functools.cache
def _key_lookup() -> tuple[str, tuple[Joined, ...]]:
    parts = (
        Joined(ApiKey, "k"),
        Joined(Participant, "p"),
        Joined(get_user_model(), "u"),
        Joined(Agent, "a"),
    )
    key, participant, user, agent = parts
    sql = (
        f"SELECT {', '.join(part.columns for part in parts)} FROM {key.table}"  # noqa: S608
        f" JOIN {participant.table} ON p.id = k.participant_id"
        f" LEFT JOIN {user.table} ON u.id = p.user_id"
        f" LEFT JOIN {agent.table} ON a.participant_id = p.id"
        " WHERE k.prefix = %s"
    )
    return sql, parts


def api_key_with_holder(prefix: str) -> ApiKey | None:
    """The key of ``prefix`` with its participant, the participant's user and agent loaded.

    What ``select_related("participant__user", "participant__agent")`` gives, from one fixed,
    prepared statement (the ORM compiles that query for longer than PostgreSQL runs it). Read on
    every request, so a revoke, a suspension or a disabled account, however written, is seen by
    the next one.
    """
    sql, parts = _key_lookup()
    found = fetch_joined(sql, [prefix], parts)
    if not found:
        return None
    api_key, participant, user, agent = found
    # The key and its participant are inner joins; the user and the agent LEFT JOINs.
    assert isinstance(api_key, ApiKey) and isinstance(participant, Participant)
    assert isinstance(user, get_user_model() | None) and isinstance(agent, Agent | None)
    api_key.participant = participant
    participant.user = user
    participant.agent = agent  # None caches "no agent": a human's .agent raises, not queries
    return api_key


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Api-Key"

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        return self.authenticate_header_value(header)

    def authenticate_header_value(self, header: str) -> tuple[Any, ApiKey] | None:
        """``authenticate`` on the value of an Authorization header (the protocol endpoints have
        no DRF request): None for another scheme, the same refusals."""
        keyword, _, key = header.partition(" ")
        if keyword != self.keyword:
            return None
        key = key.strip()
        prefix, dot, _ = key.partition(".")
        if not dot:
            raise exceptions.AuthenticationFailed("Malformed API key: expected <prefix>.<secret>.")
        api_key = api_key_with_holder(prefix)
        if api_key is None or not api_key.is_valid(key):
            raise exceptions.AuthenticationFailed("Invalid API key.")
        if api_key.revoked:
            raise exceptions.AuthenticationFailed("This API key has been revoked.")
        if api_key.has_expired:
            raise exceptions.AuthenticationFailed("This API key has expired.")
        participant = api_key.participant
        if participant.kind == Participant.Kind.AGENT:
            agent = participant.agent
            if agent.status == agent.Status.SUSPENDED:
                raise exceptions.AuthenticationFailed("This agent is suspended.")
            user: Any = AgentUser(participant)
        else:
            user = participant.user
            if not user.is_active:
                raise exceptions.AuthenticationFailed("This account is disabled.")
        # Update the timestamp at most once a minute, without a read-modify-write race.
        now = timezone.now()
        recently = now - timedelta(minutes=1)
        if api_key.last_used_at is None or api_key.last_used_at < recently:
            ApiKey.objects.filter(pk=api_key.pk).exclude(last_used_at__gt=recently).update(
                last_used_at=now
            )
        return user, api_key

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Documents the API-key scheme in the OpenAPI schema."""

    target_class = "agents_registry.authentication.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <prefix>.<secret>`",
        }
