"""A small demo market, seeded by the run command (``manage.py seed_demo``).

Idempotent: every object is looked up before it is created, so a second run adds nothing. It lives
in the workers app because it touches every layer: humans with starter credits (ledger), agents
with capability profiles (registry), the built-in agents (workers) and open tasks (market).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NotRequired, TypedDict

from django.contrib.auth.models import User
from django.db import transaction

from agents_registry.models import Agent, CapabilityProfile, Participant
from agents_registry.services import agent_register, api_key_issue, participant_create_human
from agents_registry.services_profiles import profile_create, profile_embed
from marketplace.models import Task
from marketplace.services import task_post
from workers.services import builtin_agents_ensure

DEMO_PASSWORD = "demo-pass-123"  # noqa: S105 - a published demo login, local only
DEMO_USERS = [
    ("alice", "alice@example.com", "posts tasks", False),
    ("bob", "bob@example.com", "owns an external agent", False),
    ("admin", "admin@example.com", "staff: admin console", True),
]
RESEARCH_AGENT_SLUG = "bobs-research-desk"


class DemoTask(TypedDict):
    """What ``task_post`` is given of a demo task besides its poster and idempotency key."""

    title: str
    description: str
    acceptance_criteria: str
    bounty: int
    checks: NotRequired[dict]


DEMO_TASKS: list[DemoTask] = [
    {
        "title": "Summarise our quarterly customer-support report",
        "description": (
            "The report below is about 1,500 words. Give me the five sentences that matter most: "
            "ticket volume, the biggest complaint, response times and what changed since last "
            "quarter.\n\nTicket volume rose 18% this quarter, mostly after the March release. "
            "The biggest complaint was slow password resets, which took a median of 9 hours. "
            "First response time improved from 6 hours to 4 hours after we added a weekend shift. "
            "Refund requests fell by a third once the billing page showed prorated amounts. "
            "Customers praised the new status page but asked for email alerts."
        ),
        "acceptance_criteria": "At most five sentences, taken from the report, in its order.",
        "bounty": 120,
    },
    {
        "title": "Extract keywords from a product announcement",
        "description": (
            "List the ten most important keywords and phrases of this announcement, with counts: "
            "Our new vector search engine indexes a million documents in minutes, answers "
            "semantic queries in milliseconds and runs on a laptop. Vector search, hybrid "
            "ranking and metadata filters come built in."
        ),
        "acceptance_criteria": "A JSON object with a `keywords` list.",
        "checks": {"required_fields": ["keywords"]},
        "bounty": 80,
    },
    {
        "title": "Validate a CSV of orders and convert it to JSON",
        "description": (
            "Convert this CSV to a JSON list of objects and report rows with a missing email.\n"
            "```\norder_id,email,total\n1001,ana@example.com,25.00\n1002,,14.50\n"
            "1003,li@example.com,99.90\n```"
        ),
        "acceptance_criteria": "Every row as an object; invalid rows listed with the reason.",
        "bounty": 90,
    },
    {
        "title": "Research: compare three open-source vector databases",
        "description": (
            "Compare pgvector, Qdrant and Milvus for a team of five running 2 million "
            "embeddings: operations burden, filtering, hybrid search, cost. One page, with "
            "sources."
        ),
        "acceptance_criteria": "A table and a recommendation, with at least five sources.",
        "bounty": 600,
    },
]


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    role: str


def _human(username: str, email: str, is_staff: bool) -> Participant:
    user, created = User.objects.get_or_create(
        username=username,
        defaults={"email": email, "is_staff": is_staff, "is_superuser": is_staff},
    )
    if created:
        user.set_password(DEMO_PASSWORD)
        user.save(update_fields=["password"])
    return participant_create_human(user=user)


@transaction.atomic
def seed_demo_market() -> tuple[list[DemoLogin], str | None]:
    """Seed the demo; returns the logins and, the first time only, the external agent's API key."""
    humans = {username: _human(username, email, staff) for username, email, _, staff in DEMO_USERS}
    builtin_agents_ensure(owner=humans["admin"])

    new_key = None
    if not Agent.objects.filter(slug=RESEARCH_AGENT_SLUG).exists():
        agent = agent_register(
            owner=humans["bob"], name="Bob's research desk", slug=RESEARCH_AGENT_SLUG
        )
        profile_create(
            agent=agent,
            actor=humans["bob"],
            description=(
                "Desk research on software infrastructure: compares databases, frameworks and "
                "cloud services for a team's needs, with sourced tables and a recommendation. "
                "Answers in a day."
            ),
            price_per_task=400,
            expected_latency_seconds=8 * 3600,
            tags=["research", "comparison", "databases", "infrastructure"],
            input_formats=["text"],
            output_formats=["markdown"],
            limitations="English sources only; no paywalled reports.",
        )
        _, new_key = api_key_issue(participant=agent.participant, name="demo")

    # Embed the agents' profiles now, not in the worker: the demo tasks below ask the hosted
    # agents to bid, and only profiles with a vector can match.
    for profile in CapabilityProfile.objects.filter(is_current=True, embedding__isnull=True):
        profile_embed(profile_id=profile.pk)

    for spec in DEMO_TASKS:
        if not Task.objects.filter(poster=humans["alice"], title=spec["title"]).exists():
            task_post(poster=humans["alice"], idempotency_key=f"demo:{spec['title']}", **spec)
    logins = [DemoLogin(name, DEMO_PASSWORD, role) for name, _, role, _ in DEMO_USERS]
    return logins, new_key
