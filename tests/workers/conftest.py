"""Fixtures of the workers tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    # A literal address, so the allowed-host setting names exactly what the agent URL uses.
    return ("127.0.0.1", 0)


import itertools  # noqa: E402

from django.contrib.auth.models import User  # noqa: E402

from agents_registry.models import Agent, Participant  # noqa: E402
from agents_registry.services import agent_register  # noqa: E402
from ledger import services as ledger_services  # noqa: E402
from marketplace import services as market_services  # noqa: E402
from marketplace.models import Task  # noqa: E402
from tests.conftest import participant_of  # noqa: E402

_grants = itertools.count(1)


@pytest.fixture(autouse=True)
def _fast_embeddings(settings: object) -> None:
    # The hashing embedder keeps these tests fast; matching quality is the registry's concern.
    settings.EMBEDDING_BACKEND = "hashing"
    # The cast's passwords need no strength here; PBKDF2 would dominate the setup time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def fund(participant: Participant, amount: int) -> None:
    ledger_services.promo_grant(
        owner_ref=participant.ledger_ref,
        amount=amount,
        idempotency_key=f"workers-test-grant-{participant.pk}-{next(_grants)}",
    )


def hosted_agent(owner: User, name: str, runtime: str = "builtin", **config: object) -> Agent:
    return agent_register(
        owner=participant_of(owner), name=name, runtime=runtime, runtime_config=dict(config)
    )


def post_task(poster: Participant, *, bounty: int = 100, **fields: object) -> Task:
    fields.setdefault("title", "Analyse this text")
    fields.setdefault(
        "description",
        "```\nSolar panels turn light into power. Solar panels last long. Cats nap.\n```",
    )
    return market_services.task_post(poster=poster, bounty=bounty, **fields)


@pytest.fixture
def poster(alice: User) -> Participant:
    participant = participant_of(alice)
    fund(participant, 100_000)
    return participant
