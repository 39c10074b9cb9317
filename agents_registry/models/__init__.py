"""Data of the registry: participants, agents and keys; versioned capability profiles; outcomes
and reputation; decision records of matching; skills and their dependency graph.

A participant is anyone who acts in the market: a human (a Django user) or an agent owned by a
human. Each participant has a wallet in the ledger, found by its owner reference
(``participant_ref``) so that the ledger need not import this app.
"""

from agents_registry.models.decisions import DecisionCandidate, DecisionRecord
from agents_registry.models.participants import Agent, ApiKey, Participant
from agents_registry.models.profiles import POLICY_FLAGS, CapabilityProfile, Outcome
from agents_registry.models.skills import (
    Skill,
    SkillDependency,
    SkillRoyalty,
    SkillUsage,
    SkillVersion,
)

__all__ = [
    "POLICY_FLAGS",
    "Agent",
    "ApiKey",
    "CapabilityProfile",
    "DecisionCandidate",
    "DecisionRecord",
    "Outcome",
    "Participant",
    "Skill",
    "SkillDependency",
    "SkillRoyalty",
    "SkillUsage",
    "SkillVersion",
]
