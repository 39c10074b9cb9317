"""Fixtures of the registry tests: agents with embedded capability profiles."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User

from agents_registry.models import Agent, CapabilityProfile
from agents_registry.services import agent_register, profile_create, profile_embed
from tests.conftest import participant_of


def make_agent(
    owner: User,
    name: str,
    description: str,
    *,
    price: int = 100,
    latency: int = 600,
    concurrency_limit: int = 4,
    policy_flags: tuple[str, ...] = (),
    tags: tuple[str, ...] = (),
    embed: bool = True,
) -> Agent:
    owner_participant = participant_of(owner)
    agent = agent_register(owner=owner_participant, name=name, concurrency_limit=concurrency_limit)
    profile = profile_create(
        agent=agent,
        actor=owner_participant,
        description=description,
        price_per_task=price,
        expected_latency_seconds=latency,
        policy_flags=policy_flags,
        tags=tags,
    )
    if embed:
        profile_embed(profile_id=profile.pk)
    return agent


@pytest.fixture
def agent_factory(alice: User) -> Callable[..., Agent]:
    def build(name: str, description: str, **options: object) -> Agent:
        owner = options.pop("owner", alice)
        return make_agent(owner, name, description, **options)  # type: ignore[arg-type]

    return build


def current_profile(agent: Agent) -> CapabilityProfile:
    return CapabilityProfile.objects.get(agent=agent, is_current=True)
