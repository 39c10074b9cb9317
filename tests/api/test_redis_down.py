"""While Redis is out of reach (README, "When Redis is down"): API keys are read from PostgreSQL
as always, so a revoke, a suspension or a disabled account takes effect at once; rate limits
count in each process, and reads skip the kept answers. PostgreSQL out of reach answers 503 JSON
with ``Retry-After``, never a 500 or Django's HTML pages."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import User
from django.db import OperationalError, connection
from django.utils import timezone
from rest_framework.test import APIClient

from agents_registry import services
from agents_registry.models import ApiKey
from marketplace import throttling
from tests.conftest import make_human, participant_of
from tests.marketplace.conftest import AgentCaller, fund, make_agent, post
from tests.own_redis import OwnRedis

pytestmark = pytest.mark.django_db


def _unavailable(response) -> None:
    assert response.status_code == 503, response.content
    assert response["Content-Type"].startswith("application/json")
    assert int(response["Retry-After"]) > 0
    body = response.json()
    assert set(body["error"]) == {"code", "message", "fields"}
    assert body["error"]["code"] == "unavailable"


def _agent(owner: User) -> AgentCaller:
    return make_agent(owner, f"Outage {uuid.uuid4().hex[:6]}")


def test_reads_and_writes_keep_working_while_redis_is_down(
    alice: User, bob: User, own_redis: OwnRedis
) -> None:
    poster = participant_of(alice)
    fund(poster, 5_000)
    task = post(poster)
    agent = _agent(bob)
    client = agent.client()
    for _ in range(3):  # the answers are kept
        assert client.get(f"/api/v1/tasks/{task.pk}/").status_code == 200
    own_redis.kill()
    for _ in range(3):
        assert client.get("/api/v1/me/").status_code == 200
        assert client.get("/api/v1/tasks/?limit=5").status_code == 200
        assert client.get(f"/api/v1/tasks/{task.pk}/").status_code == 200
    bid = client.post(
        f"/api/v1/tasks/{task.pk}/bids/", {"price": 500, "eta_hours": 2, "plan": "Read it all."}
    )
    assert bid.status_code == 201, bid.content
    # Back: the kept answers are used again and say what the database says (the new bid).
    own_redis.start()
    detail = client.get(f"/api/v1/tasks/{task.pk}/")
    assert detail.status_code == 200


def test_rate_limits_count_in_the_process_while_redis_is_down(
    bob: User, own_redis: OwnRedis, monkeypatch
) -> None:
    monkeypatch.setitem(throttling.UserRateThrottle.THROTTLE_RATES, "user", "3/minute")
    monkeypatch.setattr(throttling, "process_windows", throttling.ProcessWindows())
    client = _agent(bob).client()
    own_redis.kill()
    answers = [client.get("/api/v1/me/") for _ in range(4)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    refused = answers[-1]
    assert int(refused["Retry-After"]) > 0
    assert refused.json()["error"]["code"] == "throttled"


def test_a_revoke_while_redis_is_down_takes_effect_at_once(
    bob: User, own_redis: OwnRedis, client_for
) -> None:
    agent = _agent(bob)
    agent_client = agent.client()
    assert agent_client.get("/api/v1/me/").status_code == 200
    owner = client_for(bob)
    own_redis.kill()
    path = f"/api/v1/agents/{agent.agent.slug}/keys/{agent.api_key.prefix}/revoke/"
    assert owner.post(path).status_code == 200
    assert ApiKey.objects.get(pk=agent.api_key.pk).revoked is True
    refused = agent_client.get("/api/v1/me/")
    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == "This API key has been revoked."


def test_a_suspension_while_redis_is_down_takes_effect_at_once(
    bob: User, staff: User, own_redis: OwnRedis, client_for
) -> None:
    agent = _agent(bob)
    agent_client = agent.client()
    assert agent_client.get("/api/v1/me/").status_code == 200
    own_redis.kill()
    suspended = client_for(staff).post(
        f"/api/v1/agents/{agent.agent.slug}/status/", {"status": "suspended"}
    )
    assert suspended.status_code == 200, suspended.content
    refused = agent_client.get("/api/v1/me/")
    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == "This agent is suspended."


class DatabaseDown:
    """Every statement fails as it does when PostgreSQL is gone."""

    def __call__(self, execute, sql, params, many, context):
        raise OperationalError("connection to server on socket failed: No such file or directory")


def test_database_down_answers_503_json_not_a_traceback(bob: User, settings) -> None:
    settings.DEBUG = True
    agent = _agent(bob)
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {agent.secret}")
    with connection.execute_wrapper(DatabaseDown()):
        _unavailable(client.get("/api/v1/tasks/"))
        _unavailable(client.get("/api/v1/me/"))


def database_down_middleware(get_response):
    """Fails before any view runs, as a middleware that reads the database would."""

    def middleware(request):
        raise OperationalError("the database is out of reach")

    return middleware


def test_database_down_outside_a_view_answers_503_json(settings) -> None:
    settings.DEBUG = True
    guard = settings.MIDDLEWARE.index("marketplace.api_guard.ApiGuardMiddleware") + 1
    settings.MIDDLEWARE = [
        *settings.MIDDLEWARE[:guard],
        "tests.api.test_redis_down.database_down_middleware",
        *settings.MIDDLEWARE[guard:],
    ]
    client = APIClient(raise_request_exception=False)
    _unavailable(client.get("/api/v1/tasks/"))
    assert client.get("/").status_code == 500  # pages keep Django's own error page


def test_an_account_disabled_while_redis_is_down_loses_its_tokens_at_once(
    own_redis: OwnRedis,
) -> None:
    human = make_human(f"down-{uuid.uuid4().hex[:6]}")
    _, secret = services.personal_token_issue(
        participant=participant_of(human), name="token", scopes=[ApiKey.Scope.TASKS_READ]
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    assert client.get("/api/v1/me/").status_code == 200
    own_redis.kill()
    human.is_active = False
    human.save(update_fields=["is_active"])
    refused = client.get("/api/v1/me/")
    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == "This account is disabled."
    human.last_login = timezone.now()
    human.save(update_fields=["last_login"])  # a web login still works


def test_new_agents_and_keys_are_made_while_redis_is_down(bob: User, own_redis: OwnRedis) -> None:
    own_redis.kill()
    agent = _agent(bob)  # registered, with a key
    assert agent.client().get("/api/v1/me/").status_code == 200
