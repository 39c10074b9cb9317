"""API-key lookups kept between requests (``agents_registry.auth_cache``): kept only while the rows
they read are unchanged, whoever changes them and however, never trusted past a change that
commits after the database read, and never used while Redis cannot say what changed."""

from __future__ import annotations

import uuid

import pytest
import redis
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents_registry import auth_cache, services
from agents_registry.authentication import lookups
from agents_registry.models import Agent, ApiKey
from tests.conftest import make_human, participant_of
from tests.marketplace.conftest import make_agent


def _queries(client, path: str = "/api/v1/me/", status: int = 200) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
        assert response.status_code == status, response.content
    return len(queries)


def _kept(client) -> None:
    """Request until the key's lookup is kept (the first stamps its last use, the second keeps)."""
    for _ in range(3):
        client.get("/api/v1/me/")
    assert _queries(client) == 0


@pytest.mark.parametrize("change", ["revoke", "suspend", "scopes", "delete key"])
def test_a_kept_agent_key_is_refused_on_the_next_request_after_a_change(
    bob: User, staff: User, change: str
) -> None:
    agent = make_agent(bob, f"Kept {uuid.uuid4().hex[:6]}")
    client = agent.client()
    _kept(client)
    if change == "revoke":
        services.api_key_revoke(api_key=agent.api_key)
    elif change == "suspend":
        services.agent_set_status(
            agent=agent.agent, actor=participant_of(staff), status="suspended", is_staff=True
        )
    elif change == "scopes":
        agent.api_key.scopes = [ApiKey.Scope.WALLET_READ]
        agent.api_key.save(update_fields=["scopes"])
    else:
        agent.api_key.delete()
    path, refused = "/api/v1/tasks/", 403 if change == "scopes" else 401
    assert client.get(path).status_code == refused


def test_a_kept_human_token_is_refused_once_the_account_is_disabled(db: None) -> None:
    human = make_human(f"kept-{uuid.uuid4().hex[:6]}")
    _, secret = services.api_key_issue(participant=participant_of(human), name="token")
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    _kept(client)
    human.is_active = False
    human.save(update_fields=["is_active"])
    assert client.get("/api/v1/me/").status_code == 401


def test_a_change_that_commits_after_the_database_read_is_noticed(db: None) -> None:
    """The versions are read before the row: a change whose new versions land between the two
    leaves the kept row with the old versions, so the next lookup reads the database again."""
    reads = []

    def fetch(prefix: str) -> tuple:
        reads.append(prefix)
        if len(reads) == 2:  # the read that keeps the row; the change commits right after it
            auth_cache.holder_changed((Agent, 7))
        return ("row", len(reads))

    cache = auth_cache.LookupCache(fetch=fetch, watch=lambda row: [(Agent, 7)])
    assert cache.get("p") == ("row", 1)  # learns what to watch
    assert cache.get("p") == ("row", 2)  # keeps it, with the versions read before the change
    assert cache.get("p") == ("row", 3)  # the change is noticed: read again and kept
    assert cache.get("p") == ("row", 3)
    auth_cache.holder_changed((Agent, 7))
    assert cache.get("p") == ("row", 4)


def test_lookups_go_to_the_database_while_redis_is_out_of_reach(bob: User, monkeypatch) -> None:
    agent = make_agent(bob, f"Offline {uuid.uuid4().hex[:6]}")
    client = agent.client()
    _kept(client)

    def unreachable(*args, **kwargs):
        raise redis.ConnectionError("Error 111 connecting to Redis: Connection refused.")

    monkeypatch.setattr(auth_cache, "redis_command", unreachable)
    monkeypatch.setattr(auth_cache, "replace_versions", lambda keys, **kwargs: None)
    # Not the kept row: the database says the key is revoked (the change's own versions could
    # not be written either).
    ApiKey.objects.filter(pk=agent.api_key.pk).update(revoked=True)
    assert lookups.get(agent.api_key.prefix) is not None
    from agents_registry.authentication import api_key_with_holder

    assert api_key_with_holder(agent.api_key.prefix).revoked


def test_a_kept_lookup_lives_at_most_the_ttl(bob: User, monkeypatch) -> None:
    agent = make_agent(bob, f"Aging {uuid.uuid4().hex[:6]}")
    client = agent.client()
    _kept(client)
    now = auth_cache.time.monotonic()
    monkeypatch.setattr(auth_cache.time, "monotonic", lambda: now + auth_cache.TTL + 1)
    assert _queries(client) == 1
