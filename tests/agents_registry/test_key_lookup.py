"""An API key is read from PostgreSQL on every request (``agents_registry.authentication``): a
revoke, a suspension, a change of scopes or a disabled account is seen by the very next request,
however it was written (a service, ``QuerySet.update``, raw SQL)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Model
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from agents_registry import services
from agents_registry.models import Agent, ApiKey
from tests.conftest import make_human, participant_of
from tests.marketplace.conftest import AgentCaller, make_agent

pytestmark = pytest.mark.django_db


def _update_by_sql(model: type[Model], pk: Any, field: str, value: Any) -> None:
    """``UPDATE`` of one field of one row, written by hand as an operator would."""
    quote = connection.ops.quote_name
    column = model._meta.get_field(field).column
    table, pk_column = model._meta.db_table, model._meta.pk.column
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(table)} SET {quote(column)} = %s WHERE {quote(pk_column)} = %s",
            [value, pk],
        )


def _accepted(client: APIClient, path: str = "/api/v1/me/") -> None:
    for _ in range(3):
        response = client.get(path)
        assert response.status_code == 200, response.content


def _refused(client: APIClient, message: str, status: int = 401, path: str = "/api/v1/me/"):
    response = client.get(path)
    assert response.status_code == status, response.content
    assert response.json()["error"]["message"] == message


def _agent(owner: User, scopes: list[str] | None = None) -> AgentCaller:
    return make_agent(owner, f"Lookup {uuid.uuid4().hex[:6]}", scopes=scopes)


REVOKES: dict[str, Callable[[ApiKey], None]] = {
    "service": lambda key: services.api_key_revoke(api_key=key),
    "queryset_update": lambda key: ApiKey.objects.filter(pk=key.pk).update(revoked=True),
    "raw_sql": lambda key: _update_by_sql(ApiKey, key.pk, "revoked", True),
}


@pytest.mark.parametrize("way", sorted(REVOKES))
def test_a_revoked_key_is_refused_on_the_next_request(bob: User, way: str) -> None:
    agent = _agent(bob)
    client = agent.client()
    _accepted(client)
    REVOKES[way](agent.api_key)
    _refused(client, "This API key has been revoked.")


@pytest.mark.django_db(transaction=True)
def test_a_revoke_committed_by_another_connection_is_seen(bob: User) -> None:
    """Another process's write, on a connection of its own: nothing tells this one of the change
    but the row itself."""
    agent = _agent(bob)
    client = agent.client()
    _accepted(client)

    def elsewhere(revoked: bool) -> None:
        try:
            _update_by_sql(ApiKey, agent.api_key.pk, "revoked", revoked)
        finally:
            connection.close()

    for revoked in (True, False):
        thread = threading.Thread(target=elsewhere, args=(revoked,))
        thread.start()
        thread.join()
        if revoked:
            _refused(client, "This API key has been revoked.")
        else:
            _accepted(client)


@pytest.mark.parametrize("way", ["service", "queryset_update", "raw_sql"])
def test_a_suspended_agent_is_refused_on_the_next_request(bob: User, staff: User, way: str) -> None:
    agent = _agent(bob)
    client = agent.client()
    _accepted(client)
    if way == "service":
        services.agent_set_status(
            agent=agent.agent, actor=participant_of(staff), status="suspended", is_staff=True
        )
    elif way == "queryset_update":
        Agent.objects.filter(pk=agent.agent.pk).update(status=Agent.Status.SUSPENDED)
    else:
        _update_by_sql(Agent, agent.agent.pk, "status", Agent.Status.SUSPENDED)
    _refused(client, "This agent is suspended.")


def test_scopes_are_enforced_and_a_change_is_seen_on_the_next_request(bob: User) -> None:
    agent = _agent(bob, scopes=[ApiKey.Scope.WALLET_READ])
    client = agent.client()
    _accepted(client)
    _refused(
        client,
        "This API key lacks the scope 'tasks:read' needed here.",
        status=403,
        path="/api/v1/tasks/",
    )
    ApiKey.objects.filter(pk=agent.api_key.pk).update(scopes=[ApiKey.Scope.TASKS_READ])
    _accepted(client, "/api/v1/tasks/")
    ApiKey.objects.filter(pk=agent.api_key.pk).update(scopes=[ApiKey.Scope.WALLET_READ])
    _refused(
        client,
        "This API key lacks the scope 'tasks:read' needed here.",
        status=403,
        path="/api/v1/tasks/",
    )


def test_a_deleted_key_is_refused(bob: User) -> None:
    agent = _agent(bob)
    client = agent.client()
    _accepted(client)
    agent.api_key.delete()
    _refused(client, "Invalid API key.")


def test_an_expired_key_is_refused(bob: User) -> None:
    agent = _agent(bob)
    client = agent.client()
    _accepted(client)
    past = timezone.now() - timezone.timedelta(minutes=1)
    ApiKey.objects.filter(pk=agent.api_key.pk).update(expiry_date=past)
    _refused(client, "This API key has expired.")


@pytest.mark.parametrize("way", ["save", "queryset_update", "raw_sql"])
def test_the_token_of_a_disabled_person_is_refused(db: None, way: str) -> None:
    human = make_human(f"lookup-{uuid.uuid4().hex[:6]}")
    _, secret = services.personal_token_issue(
        participant=participant_of(human), name="token", scopes=[ApiKey.Scope.TASKS_READ]
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    _accepted(client)
    if way == "save":
        human.is_active = False
        human.save(update_fields=["is_active"])
    elif way == "queryset_update":
        User.objects.filter(pk=human.pk).update(is_active=False)
    else:
        _update_by_sql(User, human.pk, "is_active", False)
    _refused(client, "This account is disabled.")


def test_the_lookup_is_one_statement_per_request(bob: User) -> None:
    client = _agent(bob).client()
    _accepted(client)  # the first request stamps the key's last use
    with CaptureQueriesContext(connection) as queries:
        _accepted(client)
    assert len(queries) == 3
    assert len({query["sql"] for query in queries}) == 1
