"""Auditable decision records: every ranking that led to a decision, factor by factor."""

from __future__ import annotations

from django.db import models

from agents_registry.models.participants import Agent
from agents_registry.models.profiles import CapabilityProfile


class DecisionRecord(models.Model):
    """A shortlist shown or an automatic award: the inputs, the weights, and the choice."""

    subject_ref = models.CharField(max_length=80, db_index=True)  # e.g. "task:42"
    purpose = models.CharField(max_length=40)  # e.g. "shortlist", "auto_award"
    weights = models.JSONField()
    parameters = models.JSONField(default=dict)  # budget, deadline, seed, model, requirements
    chosen_agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    chosen_profile = models.ForeignKey(
        CapabilityProfile, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-created_at", "-id")

    def __str__(self) -> str:
        return f"{self.purpose} for {self.subject_ref}"


class DecisionCandidate(models.Model):
    """One ranked candidate, pinned to the exact profile version the score used."""

    record = models.ForeignKey(DecisionRecord, on_delete=models.CASCADE, related_name="candidates")
    rank = models.PositiveIntegerField()
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="+")
    profile = models.ForeignKey(CapabilityProfile, on_delete=models.PROTECT, related_name="+")
    similarity = models.FloatField()
    price = models.BigIntegerField()
    factors = models.JSONField()
    score = models.FloatField()
    # What the score was computed from (price, prior, evidence, global record): with the record's
    # parameters (seed, preference, budget) ``matching.decision_replay`` recomputes the ranking.
    inputs = models.JSONField(default=dict)

    class Meta:
        ordering = ("record_id", "rank")
        constraints = [
            models.UniqueConstraint(
                fields=["record", "rank"], name="decision_candidate_rank_unique"
            )
        ]

    def __str__(self) -> str:
        return f"#{self.rank} {self.agent_id}"
