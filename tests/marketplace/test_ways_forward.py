"""Every unfinished task leaves each party a way forward: stalled work can be cancelled or
escalated after a stated time, a failed check never settles by silence, one broken delivery does
not stop the review-window sweep, and the page offers what the API allows (withdraw a bid, give
a task up, answer a dispute)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from agents_registry.models import Participant
from ledger.models import JournalEntry
from marketplace import actions, services
from marketplace.exceptions import InvalidInput, InvalidTransition
from marketplace.models import Delivery, Dispute, Task
from tests.marketplace.conftest import (
    available,
    current_delivery,
    escrow,
    make_agent,
    post,
    walk_to,
)


def login(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _money(*parties: Participant, task: Task) -> tuple[int, ...]:
    return (*(available(party) for party in parties), escrow(task))


# --- stalled work: cancel or escalate after a stated time ---------------------------------------


def test_stalled_work_without_a_deadline_can_be_cancelled_from_the_stated_time(
    poster: Participant, worker: Participant, alice: User
) -> None:
    task = walk_to("in_progress", poster=poster, worker=worker)
    stalls_at = actions.work_stalls_at(task)
    assert stalls_at == task.updated_at + timedelta(hours=django_settings.MARKET_STALL_HOURS)
    before = _money(poster, worker, task=task)

    with pytest.raises(InvalidTransition, match=f"{stalls_at:%Y-%m-%d %H:%M} UTC"):
        services.task_cancel(task=task, actor=poster)
    assert _money(poster, worker, task=task) == before
    page = login(alice).get(f"/tasks/{task.pk}/").content.decode()
    assert f"{stalls_at:%Y-%m-%d %H:%M} UTC" in page and "cancel the task" in page
    listed = login(alice).get(f"/api/v1/tasks/{task.pk}/actions/").json()
    assert listed["stalls_at"] == stalls_at.isoformat().replace("+00:00", "Z")
    assert [item["action"] for item in listed["upcoming"]] == ["cancel"]

    with time_machine.travel(stalls_at + timedelta(seconds=1)):
        assert [
            item["action"]
            for item in login(alice).get(f"/api/v1/tasks/{task.pk}/actions/").json()["actions"]
        ] == ["cancel"]
        response = login(alice).post(f"/api/v1/tasks/{task.pk}/cancel/")
    assert response.status_code == 200, response.json()
    assert Task.objects.get(pk=task.pk).state == "cancelled"
    assert available(poster) == before[0] + 1000 and escrow(task) == 0


def test_stalled_revision_is_escalated_to_staff_who_split_the_escrow(
    poster: Participant, worker: Participant, alice: User, bob: User
) -> None:
    task = walk_to("revision_requested", poster=poster, worker=worker)
    client = login(alice)
    early = client.post(
        f"/api/v1/tasks/{task.pk}/escalate/", {"reason": "Silent."}, content_type="application/json"
    )
    assert early.status_code == 409 and "can be escalated from" in early.json()["error"]["message"]
    assert not Dispute.objects.filter(task=task).exists()

    with time_machine.travel(actions.work_stalls_at(task) + timedelta(minutes=1)):
        page = client.get(f"/tasks/{task.pk}/").content.decode()
        assert f'action="/tasks/{task.pk}/escalate/"' in page
        response = client.post(f"/tasks/{task.pk}/escalate/", {"reason": "No revision came."})
    assert response.status_code == 302
    task.refresh_from_db()
    dispute = Dispute.objects.get(task=task)
    assert (task.state, dispute.poster_evidence) == ("disputed", "No revision came.")
    assert dispute.delivery == current_delivery(task) and escrow(task) == 1000
    assert "escalated to staff" in login(bob).get("/dashboard/").content.decode()


def test_nothing_delivered_means_cancel_not_escalate(
    poster: Participant, worker: Participant
) -> None:
    task = walk_to("in_progress", poster=poster, worker=worker)
    stalled = actions.work_stalls_at(task) + timedelta(minutes=1)
    with (
        time_machine.travel(stalled),
        pytest.raises(InvalidTransition, match="cancel it to get the escrow back"),
    ):
        services.task_escalate(task=task, actor=poster, reason="Gone.")


# --- failed checks never settle by silence ----------------------------------------------------


def _delivered_failing(poster: Participant, worker: Participant) -> tuple[Task, Delivery]:
    task = post(poster, checks={"regex": "^Starters"})
    bid = services.bid_place(task=task, bidder=worker, price=800, eta_hours=2, plan="Plan.")
    services.bid_award(bid=bid, actor=poster)
    services.task_start(task=task, actor=worker)
    delivery = services.delivery_submit(task=task, actor=worker, text="Mains only.")
    return task, delivery


def _window_ends(delivery: Delivery) -> None:
    Delivery.objects.filter(pk=delivery.pk).update(
        review_deadline=timezone.now() - timedelta(minutes=1)
    )


def test_a_failing_delivery_goes_back_for_revisions_then_waits_and_is_never_paid(
    poster: Participant, worker: Participant, settings
) -> None:
    settings.MARKET_AUTOMATIC_REVISIONS = 2
    task, delivery = _delivered_failing(poster, worker)
    before = _money(poster, worker, task=task)
    for round_number in (1, 2):
        # The checks' message was lost: the sweep runs them itself before deciding.
        assert Delivery.objects.get(pk=delivery.pk).check_status == "pending"
        _window_ends(delivery)
        assert services.deliveries_review_due() == 1
        task.refresh_from_db()
        assert task.state == "revision_requested", round_number
        revised = Delivery.objects.get(pk=delivery.pk)
        assert revised.status == "revision_requested"
        assert "regex" in revised.review_message and "No match" in revised.review_message
        services.task_start(task=task, actor=worker)
        delivery = services.delivery_submit(
            task=task, actor=worker, text=f"Still mains {round_number}."
        )

    _window_ends(delivery)
    assert services.deliveries_review_due() == 1
    waiting = Delivery.objects.get(pk=delivery.pk)
    assert (waiting.status, waiting.check_status, waiting.review_deadline) == (
        "submitted",
        "failed",
        None,
    )
    assert Task.objects.get(pk=task.pk).state == "delivered"
    assert services.deliveries_review_due() == 0  # no deadline: silence no longer acts
    assert _money(poster, worker, task=task) == before
    assert not JournalEntry.objects.filter(idempotency_key=f"{task.ledger_ref}:settle").exists()
    # The assignee may now take it to staff; the poster may still decide.
    services.task_escalate(task=task, actor=worker, reason="The checks are wrong.")
    assert Task.objects.get(pk=task.pk).state == "disputed"


def test_passing_checks_and_no_checks_still_settle_by_silence(
    poster: Participant, worker: Participant
) -> None:
    task = walk_to("delivered", poster=poster, worker=worker)
    _window_ends(current_delivery(task))
    assert services.deliveries_review_due() == 1
    assert Task.objects.get(pk=task.pk).state == "accepted"


def test_one_broken_delivery_does_not_stop_the_sweep(
    poster: Participant, worker: Participant, caplog
) -> None:
    broken = walk_to("delivered", poster=poster, worker=worker)
    good = walk_to("delivered", poster=poster, worker=worker)
    # A row written before unknown skills were refused at delivery: its settlement raises.
    Delivery.objects.filter(task=broken).update(skills_used=[10**9])
    for task in (broken, good):
        _window_ends(current_delivery(task))
    worker_before = available(worker)

    with caplog.at_level(logging.ERROR):
        assert services.deliveries_review_due() == 1
    assert Task.objects.get(pk=good.pk).state == "accepted"
    assert available(worker) == worker_before + 760
    assert Task.objects.get(pk=broken.pk).state == "delivered" and escrow(broken) == 1000
    assert f"delivery {current_delivery(broken).pk} failed in a sweep" in caplog.text


def test_other_sweeps_isolate_a_failing_item(poster: Participant, monkeypatch, caplog) -> None:
    due = [post(poster, bounty=100, deadline=timezone.now() + timedelta(hours=1)) for _ in "ab"]
    Task.objects.filter(pk__in=[task.pk for task in due]).update(deadline=timezone.now())
    original = services.tasks.task_expire

    def failing_first(*, task_id: int, now=None) -> bool:
        if task_id == due[0].pk:
            raise RuntimeError("a bug")
        return original(task_id=task_id, now=now)

    monkeypatch.setattr(services.tasks, "task_expire", failing_first)
    with caplog.at_level(logging.ERROR):
        assert services.tasks_expire_due() == 1
    assert Task.objects.get(pk=due[1].pk).state == "expired"
    assert "a bug" in caplog.text


def test_unknown_skills_are_refused_at_delivery_with_a_clear_error(
    poster: Participant, bob: User
) -> None:
    agent = make_agent(bob, "Skilled")
    task = walk_to("in_progress", poster=poster, worker=agent.participant)
    response = agent.client().post(
        f"/api/v1/tasks/{task.pk}/deliveries/",
        {"text": "Done.", "skills_used": [987654]},
        format="json",
    )
    assert response.status_code == 400
    assert "987654" in response.json()["error"]["message"]
    assert "do not exist" in response.json()["error"]["message"]
    assert not Delivery.objects.filter(task=task).exists()
    assert Task.objects.get(pk=task.pk).state == "in_progress"
    with pytest.raises(InvalidInput, match="do not exist"):
        services.delivery_submit(task=task, actor=agent.participant, text="x", skills_used=[5**9])


# --- the page offers what the API allows --------------------------------------------------------


def test_a_bidder_withdraws_and_an_assignee_gives_up_from_the_page(
    poster: Participant, worker: Participant, bob: User
) -> None:
    task = post(poster)
    bid = services.bid_place(task=task, bidder=worker, price=500, eta_hours=2, plan="Mine.")
    page = login(bob)
    assert "Withdraw my bid" in page.get(f"/tasks/{task.pk}/").content.decode()
    page.post(f"/tasks/{task.pk}/withdraw/", {"bid": bid.pk})
    bid.refresh_from_db()
    assert bid.status == "withdrawn"

    task = walk_to("in_progress", poster=poster, worker=worker)
    assert "Give the task up" in page.get(f"/tasks/{task.pk}/").content.decode()
    refused = page.post(f"/tasks/{task.pk}/abandon/", {"reason": ""}, follow=True)
    assert "Reason is required." in refused.content.decode()
    assert Task.objects.get(pk=task.pk).state == "in_progress"
    page.post(f"/tasks/{task.pk}/abandon/", {"reason": "No time after all."})
    task.refresh_from_db()
    assert (task.state, task.assignee_id, task.barred) == ("open", None, [worker.pk])


def test_the_assignee_answers_a_dispute_from_the_page_and_an_agents_owner_for_it(
    poster: Participant, worker: Participant, bob: User
) -> None:
    task = walk_to("disputed", poster=poster, worker=worker)
    page = login(bob)
    answer_form = f'action="/tasks/{task.pk}/answer/"'
    assert answer_form in page.get(f"/tasks/{task.pk}/").content.decode()
    page.post(f"/tasks/{task.pk}/answer/", {"text": "It matches the brief, see line 2."})
    assert Dispute.objects.get(task=task).assignee_evidence == "It matches the brief, see line 2."

    agent = make_agent(bob, "Bob's agent")
    by_agent = walk_to("disputed", poster=poster, worker=agent.participant)
    assert "add your side" in page.get("/dashboard/").content.decode()  # the agent's notice
    page.post(f"/tasks/{by_agent.pk}/answer/", {"text": "For my agent: it did the work."})
    assert Dispute.objects.get(task=by_agent).assignee_evidence == "For my agent: it did the work."
