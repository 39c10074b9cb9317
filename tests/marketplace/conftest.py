"""Fixtures of the market tests: funded humans, agents with API keys, and task builders that walk
a task to any state through the real services."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from agents_registry.models import Agent, ApiKey, Participant
from agents_registry.services import agent_register, api_key_issue
from ledger import selectors as ledger_selectors
from ledger import services as ledger_services
from marketplace import services
from marketplace.models import Delivery, Task
from tests.conftest import participant_of

_keys = itertools.count(1)


@pytest.fixture(autouse=True)
def _fast_embeddings(settings) -> None:
    # The hashing embedder keeps these tests fast; matching quality is the registry's concern.
    settings.EMBEDDING_BACKEND = "hashing"
    settings.REVIEW_WINDOW_HOURS = 72
    # The cast's passwords need no strength here; PBKDF2 would dominate the setup time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def fund(participant: Participant, amount: int) -> None:
    ledger_services.promo_grant(
        owner_ref=participant.ledger_ref, amount=amount, idempotency_key=f"test-grant-{next(_keys)}"
    )


def available(participant_or_ref: Participant | str) -> int:
    ref = (
        participant_or_ref if isinstance(participant_or_ref, str) else participant_or_ref.ledger_ref
    )
    return ledger_selectors.balance_for(owner_ref=ref).available


def escrow(task: Task) -> int:
    return ledger_selectors.escrow_balance(task_ref=task.ledger_ref)


@dataclass
class AgentCaller:
    agent: Agent
    participant: Participant
    api_key: ApiKey
    secret: str

    def client(self) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {self.secret}")
        return client


def make_agent(owner: User, name: str, scopes: list[str] | None = None) -> AgentCaller:
    agent = agent_register(owner=participant_of(owner), name=name)
    api_key, secret = api_key_issue(participant=agent.participant, name="test", scopes=scopes)
    return AgentCaller(agent=agent, participant=agent.participant, api_key=api_key, secret=secret)


@pytest.fixture
def poster(alice: User) -> Participant:
    participant = participant_of(alice)
    fund(participant, 10_000)
    return participant


@pytest.fixture
def worker(bob: User) -> Participant:
    return participant_of(bob)


@pytest.fixture
def outsider(mallory: User) -> Participant:
    return participant_of(mallory)


@pytest.fixture
def bob_agent(bob: User) -> AgentCaller:
    return make_agent(bob, "Bob's summariser")


def post(poster: Participant, bounty: int = 1000, **values) -> Task:
    values.setdefault("title", "Summarise a report")
    values.setdefault("description", "Three bullet points from the attached quarterly report.")
    return services.task_post(poster=poster, bounty=bounty, **values)


TaskBuilder = Callable[[str], Task]


def walk_to(state: str, *, poster: Participant, worker: Participant, price: int = 800) -> Task:
    """A fresh task in ``state``, reached through the services (never by writing the row)."""
    if state == "draft":
        return post(poster, checks={}, draft=True)
    task = post(poster, checks={})
    if state == "open":
        return task
    if state in ("cancelled", "expired"):
        if state == "cancelled":
            return services.task_cancel(task=task, actor=poster)
        Task.objects.filter(pk=task.pk).update(deadline="2000-01-01T00:00:00Z")
        services.task_expire(task_id=task.pk)
        return Task.objects.get(pk=task.pk)
    bid = services.bid_place(
        task=task, bidder=worker, price=price, eta_hours=4, plan="I will do it."
    )
    services.bid_award(bid=bid, actor=poster)
    if state == "awarded":
        return Task.objects.get(pk=task.pk)
    services.task_start(task=task, actor=worker)
    if state == "in_progress":
        return Task.objects.get(pk=task.pk)
    delivery = services.delivery_submit(task=task, actor=worker, text="Done: three bullets.")
    if state == "delivered":
        return Task.objects.get(pk=task.pk)
    if state == "revision_requested":
        return services.revision_request(delivery=delivery, actor=poster, message="More detail.")
    if state == "accepted":
        return services.delivery_accept(delivery=delivery, actor=poster)
    services.delivery_reject(delivery=delivery, actor=poster, reason="Not what I asked.")
    if state == "disputed":
        return Task.objects.get(pk=task.pk)
    raise ValueError(state)


def current_delivery(task: Task) -> Delivery | None:
    return Delivery.objects.filter(task=task).order_by("-pk").first()


def resolve_dispute(task: Task, assignee_share: int) -> Task:
    staff_user, _ = User.objects.get_or_create(username="resolver", defaults={"is_staff": True})
    services.dispute_resolve(
        dispute=task.dispute, staff_user=staff_user, assignee_share=assignee_share, note="split"
    )
    return Task.objects.get(pk=task.pk)
