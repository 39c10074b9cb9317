"""The cast of the live API tests, made through the services and committed: a poster (Alice) with
a personal token and an agent of her own, another owner's agent at work on her public tasks, a
third owner's agent and person, staff, and tasks in the states the API acts on."""

from __future__ import annotations

from typing import Any

from django.test import override_settings

from agents_registry import embeddings
from agents_registry.models import ApiKey
from agents_registry.services import (
    agent_register,
    api_key_issue,
    api_key_revoke,
    personal_token_issue,
    profile_create,
)
from marketplace import services
from tests.conftest import make_human, participant_of
from tests.marketplace.conftest import fund

ALL_SCOPES = list(ApiKey.Scope.values)
AGENT_TEXT = "Summarises quarterly reports and long documents into three short bullet points."


def _agent(owner: Any, name: str) -> Any:
    agent = agent_register(owner=participant_of(owner), name=name)
    profile_create(
        agent=agent,
        actor=participant_of(owner),
        description=AGENT_TEXT,
        price_per_task=100,
        expected_latency_seconds=600,
        embedding=embeddings.embed_text(AGENT_TEXT),
        embedding_model=embeddings.embedding_model_id(),
    )
    return agent


def build_world() -> dict[str, Any]:
    with override_settings(EMBEDDING_BACKEND="hashing"):
        return _build()


def _build() -> dict[str, Any]:
    alice, bob, carol = make_human("alice"), make_human("bob"), make_human("carol")
    staff = make_human("staff", is_staff=True)
    poster = participant_of(alice)
    fund(poster, 100_000)
    worker = _agent(bob, "Bob's summariser")
    other = _agent(carol, "Carol's summariser")
    family = _agent(alice, "Alice's own summariser")
    secrets: dict[str, str] = {}
    _, secrets["poster"] = personal_token_issue(
        participant=poster, name="everything", scopes=ALL_SCOPES
    )
    _, secrets["assignee"] = api_key_issue(
        participant=worker.participant, name="all", scopes=ALL_SCOPES
    )
    _, secrets["other_agent"] = api_key_issue(
        participant=other.participant, name="all", scopes=ALL_SCOPES
    )
    _, secrets["other_human"] = personal_token_issue(
        participant=participant_of(carol), name="everything", scopes=ALL_SCOPES
    )
    _, secrets["staff"] = personal_token_issue(
        participant=participant_of(staff), name="everything", scopes=ALL_SCOPES
    )
    _, secrets["family_agent"] = api_key_issue(
        participant=family.participant, name="all", scopes=ALL_SCOPES
    )
    _, secrets["limited"] = api_key_issue(
        participant=family.participant, name="read only", scopes=[ApiKey.Scope.TASKS_READ]
    )
    revoked, secrets["revoked"] = api_key_issue(
        participant=family.participant, name="old", scopes=ALL_SCOPES
    )
    api_key_revoke(api_key=revoked)

    def posted(title: str, **values: Any) -> Any:
        values.setdefault("description", f"{AGENT_TEXT} ({title})")
        return services.task_post(poster=poster, title=title, bounty=1000, **values)

    open_task = posted("Summarise the Q3 report", checks={"regex": "bullet"})
    services.bid_place(
        task=open_task, bidder=worker.participant, price=700, eta_hours=3, plan="Read, then sum."
    )
    services.bid_place(
        task=open_task, bidder=other.participant, price=650, eta_hours=4, plan="Skim and sum."
    )
    working = posted("Summarise the Q2 report")
    bid = services.bid_place(
        task=working, bidder=worker.participant, price=800, eta_hours=2, plan="Sum it."
    )
    services.bid_award(bid=bid, actor=poster)
    services.task_start(task=working, actor=worker.participant)
    delivered = posted("Summarise the Q1 report")
    services.task_claim(task=delivered, claimant=worker.participant)
    services.task_start(task=delivered, actor=worker.participant)
    delivery = services.delivery_submit(
        task=delivered, actor=worker.participant, text="- one\n- two\n- three", data={"n": 3}
    )
    disputed = posted("Summarise the annual report")
    services.task_claim(task=disputed, claimant=worker.participant)
    services.task_start(task=disputed, actor=worker.participant)
    rejected = services.delivery_submit(task=disputed, actor=worker.participant, text="meh")
    services.delivery_reject(delivery=rejected, actor=poster, reason="Not three bullets.")
    return {
        "secrets": secrets,
        "worker": worker,
        "other": other,
        "family": family,
        "poster": poster,
        "open_task": open_task,
        "working": working,
        "delivered": delivered,
        "delivery": delivery,
        "disputed": disputed,
        "bid": bid,
    }
