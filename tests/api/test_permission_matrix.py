"""A permission matrix generated from the OpenAPI schema: every operation, called by each kind
of caller on a private task's objects (a task, its bid, its delivery and file), with a plausible
body made from the operation's request schema. Nothing private reaches a caller that is not a
party, no key acts beyond its scopes (``x-required-scope``), credentials that do not hold are
401, and no refused call changes anything."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from drf_spectacular.generators import SchemaGenerator

from tests.api.world import ALL_SCOPES, build_world

SECRET = "SECRET-91c2"
SCHEMA = json.loads(
    json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str)
)
OPERATIONS = [
    (path, method.upper(), operation)
    for path, methods in SCHEMA["paths"].items()
    for method, operation in methods.items()
]
CALLERS = [
    "poster",
    "assignee",
    "other_agent",
    "other_human",
    "anonymous",
    "revoked",
    "limited",
    "staff",
]
# Who may read and act on the private task: its poster, its assignee (and staff, to read).
PARTIES = {"poster", "assignee", "limited", "staff"}
OBJECT_PARAMETERS = {
    "task_id",
    "bid_id",
    "delivery_id",
    "file_id",
    "execution_id",
    "subscription_id",
}


def _resolve(schema: dict) -> dict:
    while "$ref" in schema:
        schema = SCHEMA["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def example_of(schema: dict) -> Any:
    """A value the schema accepts, as small as it allows (for a plausible request body)."""
    schema = _resolve(schema)
    if "allOf" in schema:
        return example_of(schema["allOf"][0])
    if "oneOf" in schema or "anyOf" in schema:
        return example_of((schema.get("oneOf") or schema["anyOf"])[0])
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if kind == "integer":
        return max(schema.get("minimum", 1), 1)
    if kind == "number":
        return 0.5
    if kind == "boolean":
        return False
    if kind == "string":
        if schema.get("format") == "date-time":
            return "2099-01-01T00:00:00Z"
        return f"{SECRET}-probe".ljust(schema.get("minLength", 1), "x")[
            : schema.get("maxLength", 200)
        ]
    if kind == "array":
        return [example_of(schema.get("items", {}))][: max(1, schema.get("minItems", 1))]
    properties = {
        name: value
        for name, value in schema.get("properties", {}).items()
        if not value.get("readOnly")
    }
    # The required ones; with none required, the first (a delivery's text, say).
    wanted = [name for name in properties if name in schema.get("required", [])]
    return {name: example_of(properties[name]) for name in wanted or list(properties)[:1]}


def _body(operation: dict) -> Any:
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return None
    return example_of(content["application/json"]["schema"])


def _snapshot(world: dict) -> tuple:
    """What a refused call must leave as it was."""
    from agents_registry.models import ApiKey
    from ledger.models import JournalEntry
    from marketplace.models import Bid, Delivery, Dispute, Notification, Task, TaskEvent
    from workers.models import EventDelivery, EventSubscription

    task = Task.objects.get(pk=world["task"].pk)
    return (
        task.state,
        task.assignee_id,
        task.title,
        Bid.objects.count(),
        Delivery.objects.count(),
        Dispute.objects.count(),
        TaskEvent.objects.count(),
        Notification.objects.filter(read_at__isnull=False).count(),
        ApiKey.objects.filter(revoked=False).count(),
        JournalEntry.objects.count(),
        list(EventSubscription.objects.values_list("pk", "status", "url", "secret_encrypted")),
        EventDelivery.objects.count(),
    )


@pytest.fixture(scope="module")
def world(live_market: Any, django_db_blocker: Any) -> dict[str, Any]:
    from agents_registry.models import ApiKey
    from marketplace import services
    from workers.models import EventDelivery
    from workers.services.subscriptions import subscription_create

    with django_db_blocker.unblock():
        built = build_world()
        worker = built["family"].participant  # private work is the poster's family's
        task = services.task_post(
            poster=built["poster"],
            title=f"Private {SECRET}",
            description=f"Confidential {SECRET}",
            bounty=900,
            visibility="private",
        )
        bid = services.bid_place(
            task=task, bidder=worker, price=700, eta_hours=2, plan=f"Plan {SECRET}"
        )
        services.bid_award(bid=bid, actor=built["poster"])
        services.task_start(task=task, actor=worker)
        delivery = services.delivery_submit(
            task=task,
            actor=worker,
            text=f"Result {SECRET}",
            files=[SimpleUploadedFile("r.txt", SECRET.encode(), content_type="text/plain")],
        )
        # The poster's event subscription and one delivery of it: hers alone to see.
        subscription, _ = subscription_create(
            participant=built["poster"],
            url="https://93.184.215.14/hooks",
            event_types=["task.awarded"],
            description=f"Hooks {SECRET}",
        )
        EventDelivery.objects.create(
            subscription=subscription,
            event_id=f"evt-{SECRET}",
            event_type="task.awarded",
            task_ref=task.pk,
            payload={"data": {"title": f"Private {SECRET}"}},
        )
        built.update(
            subscription=subscription,
            task=task,
            private_bid=bid,
            private_delivery=delivery,
            file=delivery.files.get(),
            prefix=ApiKey.objects.filter(participant=worker, name="all").get().prefix,
        )
    built["url"] = live_market.url
    return built


def _path(path: str, world: dict) -> str:
    values = {
        "task_id": world["task"].pk,
        "bid_id": world["private_bid"].pk,
        "delivery_id": world["private_delivery"].pk,
        "file_id": world["file"].pk,
        "execution_id": 1,
        "subscription_id": world["subscription"].pk,
        "slug": world["family"].slug,
        "prefix": world["prefix"],
    }
    return re.sub(r"\{(\w+)\}", lambda m: str(values[m.group(1)]), path)


def _headers(caller: str, world: dict) -> dict[str, str]:
    if caller == "anonymous":
        return {}
    # The private task's assignee is the poster's own agent; the other owner's agent working on
    # her public tasks is, here, just another agent.
    secret = {"assignee": "family_agent", "other_agent": "assignee"}.get(caller, caller)
    return {"Authorization": f"Api-Key {world['secrets'][secret]}"}


@pytest.mark.parametrize(
    ("path", "method", "operation"),
    OPERATIONS,
    ids=[f"{method} {path}" for path, method, _ in OPERATIONS],
)
def test_every_operation_for_every_caller(
    path: str, method: str, operation: dict, world: dict, django_db_blocker: Any
) -> None:
    public = "x-required-scope" not in operation
    scope = operation.get("x-required-scope")
    object_path = bool(OBJECT_PARAMETERS & set(re.findall(r"\{(\w+)\}", path)))
    body = _body(operation)
    with httpx.Client(base_url=world["url"], timeout=30) as http:
        for caller in CALLERS:
            if method != "GET" and caller in {"poster", "assignee", "staff"}:
                continue  # the parties' own writes are the lifecycle tests' subject
            with django_db_blocker.unblock():
                before = _snapshot(world)
            response = http.request(
                method,
                _path(path, world),
                headers=_headers(caller, world),
                json=body if method != "GET" else None,
            )
            where = f"{method} {path} as {caller}: {response.status_code} {response.text[:300]}"
            assert response.status_code < 500, where
            if response.headers.get("content-type", "").startswith("application/json"):
                answer = response.json()
                if response.status_code >= 400:
                    assert set(answer) == {"error"}, where
            if public:
                continue
            if caller in {"anonymous", "revoked"}:
                assert response.status_code == 401, where
            elif caller == "limited" and scope not in (None, "tasks:read"):
                assert response.status_code == 403, where
                assert response.json()["error"]["code"] == "missing_scope", where
            if caller not in PARTIES:
                assert SECRET not in response.text.replace(f"{SECRET}-probe", ""), where
                if object_path:
                    assert response.status_code in (401, 403, 404), where
            if response.status_code >= 400 or caller not in PARTIES:
                with django_db_blocker.unblock():
                    assert _snapshot(world) == before or response.status_code < 400, where


# Marked for the database (it needs none) so pytest-django sets the test database up when this
# module runs alone: it prepares only the databases that marked tests ask for.
@pytest.mark.django_db
def test_the_matrix_covers_every_operation() -> None:
    assert len(OPERATIONS) >= 50
    assert ALL_SCOPES  # every scope is held by the full keys of the world
