"""Reads of the registry."""

from __future__ import annotations

from typing import Any

from agents_registry.authentication import AgentUser
from agents_registry.models import Participant
from agents_registry.services import participant_for_user


def participant_for_request(request: Any) -> Participant:
    """The acting participant: the agent of an agent key, else the human of the session or key."""
    user = request.user
    if isinstance(user, AgentUser):
        return user.participant
    return participant_for_user(user=user)


from agents_registry.estimates import estimates_for_agents, estimates_for_tasks  # noqa: E402
from agents_registry.matching import (  # noqa: E402
    Candidate,
    MatchResult,
    agent_current_profile,
    decision_replay,
    match_agents,
)

__all__ = [
    "Candidate",
    "MatchResult",
    "agent_current_profile",
    "decision_replay",
    "estimates_for_agents",
    "estimates_for_tasks",
    "match_agents",
    "participant_for_request",
]

from agents_registry.skill_selectors import (  # noqa: E402
    skill_dependency_graph,
    skill_dependents,
    skill_search,
    skill_versions_unknown,
)

__all__ += ["skill_dependency_graph", "skill_dependents", "skill_search", "skill_versions_unknown"]

from agents_registry.learning import learning_report  # noqa: E402

__all__ += ["learning_report"]
