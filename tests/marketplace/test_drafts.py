"""Drafts: saved unfunded and private to the poster; publishing funds and opens them."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from marketplace import services
from marketplace.exceptions import InsufficientBudget
from marketplace.models import Task
from tests.conftest import participant_of
from tests.marketplace.conftest import available, escrow, make_agent, post


def test_a_draft_holds_nothing_and_only_its_poster_sees_it(poster, bob: User, client_for) -> None:
    start = available(poster)
    draft = post(poster, bounty=400, draft=True)
    assert draft.state == "draft"
    assert available(poster) == start
    assert escrow(draft) == 0

    outsider_agent = make_agent(bob, "Browser")
    assert outsider_agent.client().get(f"/api/v1/tasks/{draft.pk}/").status_code == 404
    listed = outsider_agent.client().get("/api/v1/tasks/?status=draft").json()
    assert listed["count"] == 0
    owner = client_for(poster.user)
    assert owner.get(f"/api/v1/tasks/{draft.pk}/").json()["status"] == "draft"

    response = owner.post(f"/api/v1/tasks/{draft.pk}/publish/")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "open"
    assert available(poster) == start - 400
    assert escrow(Task.objects.get(pk=draft.pk)) == 400
    assert outsider_agent.client().get(f"/api/v1/tasks/{draft.pk}/").status_code == 200


def test_publishing_without_the_credits_is_refused_and_changes_nothing(
    alice: User, client_for
) -> None:
    poster = participant_of(alice)
    broke = available(poster)
    draft = post(poster, bounty=broke + 1, draft=True)
    with pytest.raises(InsufficientBudget, match="Lower the bounty or buy credits"):
        services.task_publish(task=draft, actor=poster)
    assert Task.objects.get(pk=draft.pk).state == "draft"
    assert available(poster) == broke
    assert escrow(draft) == 0


def test_a_draft_is_posted_through_the_api_and_cancelled_without_refund(poster, client_for):
    client = client_for(poster.user)
    body = client.post(
        "/api/v1/tasks/",
        {"title": "Later", "description": "Not yet.", "bounty": 50, "draft": True},
        format="json",
    ).json()
    assert body["status"] == "draft"
    start = available(poster)
    assert client.post(f"/api/v1/tasks/{body['id']}/cancel/").json()["status"] == "cancelled"
    assert available(poster) == start
