"""A generated matrix over every market API operation and every kind of caller: owner, assignee,
other agent, other human, anonymous, revoked key, staff. No private object leaks to a caller that
is not a party, and no refused write changes anything."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from agents_registry.models import ApiKey
from agents_registry.services import api_key_issue, api_key_revoke
from marketplace import services
from marketplace.models import Bid, Delivery, Dispute, Task, TaskDependency, TaskEvent
from tests.conftest import make_human, participant_of
from tests.marketplace.conftest import available, escrow, make_agent

SECRET = "SECRET-7f3a"


@pytest.fixture
def world(alice: User, bob: User, mallory: User, staff: User) -> dict:
    poster = participant_of(alice)
    assignee = make_agent(alice, "Assignee agent")  # a private task stays in the family
    other_agent = make_agent(make_human("carol"), "Other agent")
    task = services.task_post(
        poster=poster,
        title=f"Private work {SECRET}",
        description=f"Confidential {SECRET}",
        bounty=900,
        internal=True,
    )
    bid = services.bid_place(
        task=task, bidder=assignee.participant, price=700, eta_hours=2, plan=f"Plan {SECRET}"
    )
    services.bid_award(bid=bid, actor=poster)
    services.task_start(task=task, actor=assignee.participant)
    delivery = services.delivery_submit(
        task=task,
        actor=assignee.participant,
        text=f"Result {SECRET}",
        files=[SimpleUploadedFile("r.txt", SECRET.encode(), content_type="text/plain")],
    )
    revoked_key, revoked_secret = api_key_issue(participant=assignee.participant, name="old")
    api_key_revoke(api_key=revoked_key)

    def session(user: User) -> APIClient:
        client = APIClient()
        client.force_login(user)
        return client

    revoked = APIClient()
    revoked.credentials(HTTP_AUTHORIZATION=f"Api-Key {revoked_secret}")
    callers = {
        "owner": session(alice),
        "assignee": assignee.client(),
        "other_agent": other_agent.client(),
        "other_human": session(mallory),
        "anonymous": APIClient(),
        "revoked": revoked,
        "staff": session(staff),
    }
    return {
        "task": task,
        "bid": bid,
        "delivery": delivery,
        "file": delivery.files.get(),
        "callers": callers,
        "poster": poster,
        "assignee": assignee,
    }


READS: dict[str, Callable[[dict], str]] = {
    "task_detail": lambda w: f"/api/v1/tasks/{w['task'].pk}/",
    "task_events": lambda w: f"/api/v1/tasks/{w['task'].pk}/events/",
    "task_bids": lambda w: f"/api/v1/tasks/{w['task'].pk}/bids/",
    "task_deliveries": lambda w: f"/api/v1/tasks/{w['task'].pk}/deliveries/",
    "delivery_detail": lambda w: f"/api/v1/deliveries/{w['delivery'].pk}/",
    "delivery_file": lambda w: f"/api/v1/deliveries/{w['delivery'].pk}/files/{w['file'].pk}/",
    "task_list": lambda w: "/api/v1/tasks/?state=in_progress",
    "task_list_delivered": lambda w: "/api/v1/tasks/?state=delivered",
    "my_bids": lambda w: "/api/v1/bids/",
    "my_deliveries": lambda w: "/api/v1/deliveries/",
    "notifications": lambda w: "/api/v1/notifications/",
}
WRITES: dict[str, Callable[[dict], tuple[str, dict]]] = {
    "claim": lambda w: (f"/api/v1/tasks/{w['task'].pk}/claim/", {}),
    "start": lambda w: (f"/api/v1/tasks/{w['task'].pk}/start/", {}),
    "cancel": lambda w: (f"/api/v1/tasks/{w['task'].pk}/cancel/", {}),
    "abandon": lambda w: (f"/api/v1/tasks/{w['task'].pk}/abandon/", {"reason": "x"}),
    "bid": lambda w: (
        f"/api/v1/tasks/{w['task'].pk}/bids/",
        {"price": 10, "eta_hours": 1, "plan": "p"},
    ),
    "withdraw": lambda w: (f"/api/v1/bids/{w['bid'].pk}/withdraw/", {}),
    "award": lambda w: (f"/api/v1/bids/{w['bid'].pk}/award/", {}),
    "deliver": lambda w: (f"/api/v1/tasks/{w['task'].pk}/deliveries/", {"text": "mine"}),
    "subtask": lambda w: (
        f"/api/v1/tasks/{w['task'].pk}/subtasks/",
        {"title": "t", "description": "d", "bounty": 10},
    ),
    "accept": lambda w: (f"/api/v1/deliveries/{w['delivery'].pk}/accept/", {}),
    "revision": lambda w: (f"/api/v1/deliveries/{w['delivery'].pk}/revision/", {"message": "m"}),
    "reject": lambda w: (f"/api/v1/deliveries/{w['delivery'].pk}/reject/", {"reason": "r"}),
    "evidence": lambda w: (f"/api/v1/tasks/{w['task'].pk}/dispute/evidence/", {"text": "t"}),
    "dependency": lambda w: (
        f"/api/v1/tasks/{w['task'].pk}/dependencies/",
        {"depends_on": w["task"].pk},
    ),
    "post_task": lambda w: ("/api/v1/tasks/", {"title": "t", "description": "d", "bounty": 1}),
}

ENTITLED_READERS = {"owner", "assignee", "staff"}


def _body(response) -> bytes:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content)
    return response.content


def test_reads_never_leak_private_objects(world: dict) -> None:
    checked = 0
    for caller_name, client in world["callers"].items():
        for read_name, path in READS.items():
            response = client.get(path(world))
            body = _body(response)
            where = (caller_name, read_name, response.status_code)
            if caller_name in ("anonymous", "revoked"):
                assert response.status_code in (401, 403), where
                assert SECRET.encode() not in body, where
            elif caller_name in ENTITLED_READERS:
                assert response.status_code == 200, where
            else:
                assert response.status_code in (200, 404), where
                assert SECRET.encode() not in body, where
                if read_name in ("task_detail", "delivery_detail", "delivery_file"):
                    assert response.status_code == 404, where
            if response.status_code >= 400:
                assert set(response.json()["error"]) == {"code", "message", "fields"}, where
            checked += 1
    assert checked == len(world["callers"]) * len(READS)
    # The parties do see what is theirs.
    owner = world["callers"]["owner"]
    assert SECRET in owner.get(READS["task_bids"](world)).content.decode()
    assignee = world["callers"]["assignee"]
    assert SECRET in assignee.get(READS["delivery_detail"](world)).content.decode()


def _state(world: dict) -> tuple:
    task = world["task"]
    return (
        Task.objects.count(),
        Task.objects.filter(pk=task.pk).values_list("state", "assignee_id", "price")[0],
        list(Bid.objects.order_by("pk").values_list("pk", "status")),
        list(Delivery.objects.order_by("pk").values_list("pk", "status")),
        Dispute.objects.count(),
        TaskDependency.objects.count(),
        TaskEvent.objects.count(),
        escrow(task),
        available(world["poster"]),
        available(world["assignee"].participant),
    )


@pytest.mark.parametrize("caller_name", ["other_agent", "other_human", "anonymous", "revoked"])
def test_outsiders_cannot_write_anything(world: dict, caller_name: str) -> None:
    client = world["callers"][caller_name]
    for write_name, build in WRITES.items():
        if write_name == "post_task" and caller_name in ("other_agent", "other_human"):
            continue  # posting one's own task is everyone's right
        path, body = build(world)
        before = _state(world)
        response = client.post(path, body, format="json")
        where = (caller_name, write_name, response.status_code)
        expected = (401, 403) if caller_name in ("anonymous", "revoked") else (403, 404)
        assert response.status_code in expected, where
        assert SECRET not in response.content.decode(), where
        assert _state(world) == before, where


def test_staff_act_only_through_the_console(world: dict) -> None:
    client = world["callers"]["staff"]
    for write_name, build in WRITES.items():
        if write_name == "post_task":
            continue
        path, body = build(world)
        before = _state(world)
        response = client.post(path, body, format="json")
        assert response.status_code in (403, 404, 409), (write_name, response.status_code)
        assert _state(world) == before, write_name


def test_api_key_scopes_are_enforced(world: dict, bob: User) -> None:
    reader = make_agent(bob, "Read only", scopes=[ApiKey.Scope.TASKS_READ])
    client = reader.client()
    public = services.task_post(
        poster=world["poster"], title="Public", description="Anyone may bid", bounty=50
    )
    assert client.get(f"/api/v1/tasks/{public.pk}/").status_code == 200
    refused = client.post(
        f"/api/v1/tasks/{public.pk}/bids/", {"price": 5, "eta_hours": 1, "plan": "p"}, format="json"
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "missing_scope"
    assert "bids:write" in refused.json()["error"]["message"]
    assert not Bid.objects.filter(task=public).exists()
