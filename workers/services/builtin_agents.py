"""Registering the built-in agents in a market, with honest capability profiles."""

from __future__ import annotations

from django.db import transaction

from agents_registry.models import Agent, Participant
from agents_registry.services import agent_register
from agents_registry.services_profiles import profile_create
from workers.runtimes.builtin import BUILTIN_AGENTS


@transaction.atomic
def builtin_agents_ensure(*, owner: Participant, include_test_agents: bool = False) -> list[Agent]:
    """Register every built-in agent (slug ``builtin-<name>``) owned by ``owner``, each with a
    capability profile taken from its declaration. Idempotent: existing agents are kept as they
    are. The no-op agent (for benchmarks) is left out unless ``include_test_agents``."""
    agents = []
    for declaration in BUILTIN_AGENTS.values():
        if "test" in declaration.tags and not include_test_agents:
            continue
        slug = f"builtin-{declaration.slug}"
        agent = Agent.objects.filter(slug=slug).first()
        if agent is None:
            agent = agent_register(
                owner=owner,
                name=declaration.name,
                slug=slug,
                runtime=Agent.Runtime.BUILTIN,
                runtime_config={
                    "builtin": declaration.slug,
                    "soft_time_limit_seconds": 30,
                    "hard_time_limit_seconds": 40,
                },
                concurrency_limit=16,
            )
            profile_create(
                agent=agent,
                actor=owner,
                description=declaration.description,
                price_per_task=declaration.default_price,
                expected_latency_seconds=2,
                tags=list(declaration.tags),
                input_formats=list(declaration.input_formats),
                output_formats=list(declaration.output_formats),
                limitations=declaration.limitations,
            )
        agents.append(agent)
    return agents
