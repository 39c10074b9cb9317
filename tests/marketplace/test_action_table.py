"""For every task state (and the situations inside one), as every party: the task page offers,
``GET /tasks/{id}/actions/`` lists, and the API allows exactly the actions of the one table in
``marketplace/actions.py``.

The cases are generated: every state of ``Task.State`` must have a situation here (a new state
fails the coverage test until it has one), and every action of the table is tried through the
API by every party in every situation (inside a savepoint rolled back after each try, so one try
cannot feed the next; a refused try must change nothing).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from marketplace import actions, services
from marketplace.models import Bid, Delivery, Dispute, Task
from marketplace.selectors import Viewer
from tests.conftest import make_human, participant_of
from tests.marketplace.conftest import escrow, make_agent, post, walk_to


@dataclass
class Cast:
    poster: User
    worker: User
    bidder: User
    outsider: User
    staff: User

    def party(self, name: str) -> User:
        return getattr(self, name)


PARTY_NAMES = ("poster", "worker", "bidder", "outsider", "staff")


def _stale(task: Task) -> Task:
    """Work that has not moved for longer than the stall time."""
    Task.objects.filter(pk=task.pk).update(updated_at=timezone.now() - timedelta(hours=1000))
    return Task.objects.get(pk=task.pk)


def _with_bid(cast: Cast, task: Task) -> Task:
    services.bid_place(
        task=task, bidder=participant_of(cast.bidder), price=700, eta_hours=2, plan="Mine."
    )
    return task


def _walk(state: str) -> Callable[[Cast], Task]:
    def build(cast: Cast) -> Task:
        return walk_to(
            state, poster=participant_of(cast.poster), worker=participant_of(cast.worker)
        )

    return build


def _open_with_bid(cast: Cast) -> Task:
    return _with_bid(cast, _walk("open")(cast))


def _open_waiting_for_a_sibling(cast: Cast) -> Task:
    poster = participant_of(cast.poster)
    task, sibling = post(poster), post(poster, title="Comes first")
    services.task_dependency_add(task=task, depends_on=sibling, actor=poster)
    return _with_bid(cast, task)


def _in_progress_with_a_subtask(cast: Cast) -> Task:
    task = _walk("in_progress")(cast)
    services.task_post(
        poster=participant_of(cast.worker),
        parent=task,
        title="A part",
        description="Half of it.",
        bounty=100,
    )
    return task


def _stalled_after_a_revision(cast: Cast) -> Task:
    return _stale(_walk("revision_requested")(cast))


def _stalled_in_progress_after_a_delivery(cast: Cast) -> Task:
    task = _walk("revision_requested")(cast)
    services.task_start(task=task, actor=participant_of(cast.worker))
    return _stale(task)


def _stalled_before_any_delivery(cast: Cast) -> Task:
    return _stale(_walk("in_progress")(cast))


def _delivered_waiting_for_the_poster(cast: Cast) -> Task:
    poster, worker = participant_of(cast.poster), participant_of(cast.worker)
    task = post(poster, checks={"regex": "^never matches$"})
    bid = services.bid_place(task=task, bidder=worker, price=800, eta_hours=2, plan="Plan.")
    services.bid_award(bid=bid, actor=poster)
    services.task_start(task=task, actor=worker)
    delivery = services.delivery_submit(task=task, actor=worker, text="Something else.")
    services.delivery_verify_run(delivery_id=delivery.pk)
    Delivery.objects.filter(pk=delivery.pk).update(review_deadline=timezone.now())
    assert services.delivery_review_window_end(delivery_id=delivery.pk) == "awaiting_poster"
    return Task.objects.get(pk=task.pk)


def _disputed_with_an_agent(cast: Cast) -> Task:
    """The assignee is bob's agent: bob, its owner, tells its side of the dispute."""
    agent = make_agent(cast.worker, "Bob's agent")
    return walk_to("disputed", poster=participant_of(cast.poster), worker=agent.participant)


def _resolved(cast: Cast) -> Task:
    task = _walk("disputed")(cast)
    services.dispute_resolve(dispute=task.dispute, staff_user=cast.staff, assignee_share=100)
    return Task.objects.get(pk=task.pk)


SITUATIONS: dict[str, Callable[[Cast], Task]] = {
    "draft": _walk("draft"),
    "open": _walk("open"),
    "open, with a bid": _open_with_bid,
    "open, waiting for a sibling": _open_waiting_for_a_sibling,
    "awarded": _walk("awarded"),
    "in_progress": _walk("in_progress"),
    "in_progress, with an open subtask": _in_progress_with_a_subtask,
    "in_progress, stalled before any delivery": _stalled_before_any_delivery,
    "in_progress, stalled after a delivery": _stalled_in_progress_after_a_delivery,
    "delivered": _walk("delivered"),
    "delivered, checks failed too often": _delivered_waiting_for_the_poster,
    "revision_requested": _walk("revision_requested"),
    "revision_requested, stalled": _stalled_after_a_revision,
    "accepted": _walk("accepted"),
    "disputed": _walk("disputed"),
    "disputed, the assignee is an agent": _disputed_with_an_agent,
    "resolved": _resolved,
    "cancelled": _walk("cancelled"),
    "expired": _walk("expired"),
}


def test_services_refuse_the_states_outside_the_table(cast: Cast) -> None:
    """What lets the table test skip a state outside an action's rules: each of those services
    refuses it (one state outside, through the API, for each)."""
    task = walk_to(
        "accepted", poster=participant_of(cast.poster), worker=participant_of(cast.worker)
    )
    for action in sorted(STATE_FROM_THE_TABLE - {"resolve", "award", "accept", "revise", "reject"}):
        assert task.state not in actions.states_of(action)
        for user in (cast.poster, cast.worker):
            client = APIClient()
            client.force_login(user)
            for _, path, body in _api_attempts(task, action):
                response = client.post(path, body, format="json")
                assert response.status_code in (403, 409), (action, user, response.json())


def test_every_state_has_a_situation_and_every_action_a_rule() -> None:
    covered = {name.split(",")[0] for name in SITUATIONS}
    assert covered == set(Task.State.values)
    assert set(INPUTS) == {rule.action for rule in actions.RULES}


# What each action is tried with through the API (valid input: only the table may refuse).
INPUTS: dict[str, dict] = {
    "publish": {},
    "cancel": {},
    "escalate": {"reason": "It stopped moving."},
    "award": {},
    "bid": {"price": 1, "eta_hours": 1, "plan": "A plan."},
    "claim": {},
    "withdraw": {},
    "start": {},
    "abandon": {"reason": "Cannot do it."},
    "deliver": {"text": "Here it is."},
    "subtask": {"title": "A part", "description": "Half of it.", "bounty": 1},
    "depend": {},
    "accept": {},
    "revise": {"message": "More, please."},
    "reject": {"reason": "Not what I asked."},
    "answer": {"text": "My side."},
    "resolve": {"assignee_share": 0, "note": "Nothing delivered."},
}


# The actions whose services require the states of the table (``require_state(...,
# *states_of(action))``): in a state outside them they refuse by construction, so they are
# tried there only by the test below. Withdrawing (a bid's status) and answering (a dispute's)
# are tried in every state.
STATE_FROM_THE_TABLE = set(INPUTS) - {"withdraw", "answer"}


def _api_attempts(task: Task, action: str) -> list[tuple[int, str, dict]]:
    """(target id, path, body) of each way to try ``action`` on ``task`` through the API."""
    rule = next(rule for rule in actions.RULES if rule.action == action)
    body = dict(INPUTS[action])
    if rule.target == "bid":
        targets = list(Bid.objects.filter(task=task).values_list("pk", flat=True))
        return [
            (pk, f"/api/v1/bids/{pk}/{'award' if action == 'award' else 'withdraw'}/", body)
            for pk in targets
        ]
    if rule.target == "delivery":
        latest = Delivery.objects.filter(task=task).order_by("-pk").first()
        verb = {"accept": "accept", "revise": "revision", "reject": "reject"}[action]
        return [(latest.pk, f"/api/v1/deliveries/{latest.pk}/{verb}/", body)] if latest else []
    if action == "resolve":
        dispute = Dispute.objects.filter(task=task).first()
        path = f"/admin/marketplace/dispute/{dispute.pk}/resolve/" if dispute else None
        return [(task.pk, path, body)] if path else []
    if action == "depend":
        sibling = Task.objects.filter(poster=task.poster, parent=None).exclude(pk=task.pk).first()
        if sibling is None:
            return []
        body = {"depends_on": sibling.pk}
    path = {
        "bid": "bids",
        "deliver": "deliveries",
        "subtask": "subtasks",
        "depend": "dependencies",
        "answer": "dispute/evidence",
    }.get(action, action)
    return [(task.pk, f"/api/v1/tasks/{task.pk}/{path}/", body)]


def _fingerprint(task: Task) -> tuple:
    """What any action changes: the task's state, its escrow, its timeline (every transition,
    withdrawal, answer and dependency writes an event)."""
    row = (
        Task.objects.filter(pk=task.pk)
        .annotate(timeline=Count("events"))
        .values_list("state", "timeline")
    )
    return (*row.get(), escrow(task))


def _allowed_through_the_api(user: User, task: Task) -> set[tuple[str, int]]:
    api, console = APIClient(), Client()
    api.force_login(user)
    console.force_login(user)
    allowed = set()
    before = _fingerprint(task)
    for action in INPUTS:
        if action in STATE_FROM_THE_TABLE and task.state not in actions.states_of(action):
            continue  # its service refuses this state with the table's own states
        for target, path, body in _api_attempts(task, action):
            with transaction.atomic():
                if action == "resolve":
                    was_open = Dispute.objects.get(task=task).status == Dispute.Status.OPEN
                    console.post(path, body)
                    resolved = Dispute.objects.get(task=task).status == Dispute.Status.RESOLVED
                    status = 200 if was_open and resolved else 403
                else:
                    status = api.post(path, body, format="json").status_code
                    assert status < 500, (action, path, status)
                if 200 <= status < 300:
                    allowed.add((action, target))
                else:
                    assert _fingerprint(task) == before, f"{action} refused yet changed things"
                transaction.set_rollback(True)
    return allowed


_FORM = re.compile(
    r'<form method="post" action="/tasks/(\d+)/([a-z_]+)/"[^>]*>(.*?)</form>', re.DOTALL
)
_TARGET = re.compile(r'name="(?:bid|delivery)" value="(\d+)"')
_RESOLVE = re.compile(r'href="/admin/marketplace/dispute/\d+/resolve/"')


def _offered_by_the_page(user: User, task: Task) -> set[tuple[str, int]]:
    client = Client()
    client.force_login(user)
    response = client.get(f"/tasks/{task.pk}/")
    if response.status_code == 404:
        return set()
    page = response.content.decode()
    offered = set()
    for task_id, action, inside in _FORM.findall(page):
        assert int(task_id) == task.pk
        target = _TARGET.search(inside)
        offered.add((action, int(target.group(1)) if target else task.pk))
    if _RESOLVE.search(page):
        offered.add(("resolve", task.pk))
    return offered


def _listed_by_the_api(user: User, task: Task) -> set[tuple[str, int]]:
    client = APIClient()
    client.force_login(user)
    response = client.get(f"/api/v1/tasks/{task.pk}/actions/")
    if response.status_code == 404:
        return set()
    return {
        (item["action"], item["target_id"] if item["target"] != "task" else task.pk)
        for item in response.json()["actions"]
    }


def _in_the_table(user: User, task: Task) -> set[tuple[str, int]]:
    viewer = Viewer(participant=participant_of(user), is_staff=user.is_staff)
    found = actions.task_actions(viewer=viewer, task=task)
    return {
        (item.action, item.target_id if item.target != "task" else task.pk)
        for item in found.allowed
    }


@pytest.fixture
def cast(alice: User, bob: User, mallory: User, staff: User, settings) -> Cast:
    from tests.marketplace.conftest import fund

    fund(participant_of(alice), 10_000)
    settings.MARKET_AUTOMATIC_REVISIONS = 0
    return Cast(poster=alice, worker=bob, bidder=make_human("dave"), outsider=mallory, staff=staff)


@pytest.mark.parametrize("situation", list(SITUATIONS))
def test_page_and_api_offer_exactly_what_the_table_allows(cast: Cast, situation: str) -> None:
    task = SITUATIONS[situation](cast)
    post(participant_of(cast.poster), title="A sibling to wait for")
    for name in PARTY_NAMES:
        if name == "bidder" and task.state != Task.State.OPEN:
            continue  # bids are active only while a task is open; after, a bidder is an outsider
        user = cast.party(name)
        expected = _in_the_table(user, task)
        assert _offered_by_the_page(user, task) == expected, (situation, name)
        assert _listed_by_the_api(user, task) == expected, (situation, name)
        assert _allowed_through_the_api(user, task) == expected, (situation, name)


def test_every_state_that_is_not_final_leaves_the_poster_and_the_assignee_a_way_forward(
    cast: Cast,
) -> None:
    """Now or from a stated time, each party of unfinished work can move it: the poster always;
    the assignee too, except while a delivery awaits a review that silence will settle."""
    for situation, build in SITUATIONS.items():
        task = build(cast)
        if task.is_final:
            continue
        if situation == "in_progress, with an open subtask":
            # The poster waits for the subtasks (each with a way forward of its own).
            continue
        for user in (cast.poster, cast.worker):
            viewer = Viewer(participant=participant_of(user))
            found = actions.task_actions(viewer=viewer, task=task)
            if user == cast.worker and task.assignee_id != viewer.participant.pk:
                continue
            silence_acts = found.situation.on_silence not in (None, "wait_for_poster")
            if user == cast.worker and task.state == "delivered" and silence_acts:
                continue
            assert found.allowed or found.upcoming, (situation, user.username)
