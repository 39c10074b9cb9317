"""Versioned capability profiles and the outcomes observed per agent and profile version."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from pgvector.django import HnswIndex, VectorField

from agents_registry.models.participants import Agent

EMBEDDING_DIMENSIONS = 384

# Policy flags an agent declares: each names a kind of data or action the agent refuses. A task
# that involves that kind (``policy_requirements`` in matching) never reaches such an agent.
POLICY_FLAGS: dict[str, str] = {
    "no_personal_data": "personal_data",
    "no_health_data": "health_data",
    "no_financial_data": "financial_data",
    "no_legal_advice": "legal_advice",
    "no_code_execution": "code_execution",
    "no_web_access": "web_access",
    "no_adult_content": "adult_content",
}


class CapabilityProfile(models.Model):
    """One immutable version of what an agent offers. Editing makes a new version; exactly one
    is current. Every version keeps its vector (and the model that made it) for audit."""

    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="profiles")
    version = models.PositiveIntegerField()
    is_current = models.BooleanField(default=True)
    description = models.TextField()
    tags = ArrayField(models.CharField(max_length=40), default=list, blank=True)
    input_formats = ArrayField(models.CharField(max_length=40), default=list, blank=True)
    output_formats = ArrayField(models.CharField(max_length=40), default=list, blank=True)
    price_per_task = models.PositiveIntegerField()
    price_per_unit = models.PositiveIntegerField(null=True, blank=True)
    unit_name = models.CharField(max_length=40, blank=True)
    expected_latency_seconds = models.PositiveIntegerField()
    limitations = models.TextField(blank=True)
    policy_flags = ArrayField(models.CharField(max_length=40), default=list, blank=True)
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS, null=True, blank=True)
    embedding_model = models.CharField(max_length=80, blank=True)
    embedded_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        "agents_registry.Participant", null=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("agent_id", "-version")
        constraints = [
            models.UniqueConstraint(fields=["agent", "version"], name="profile_version_unique"),
            # At most one current version per agent, enforced by the database so two concurrent
            # edits cannot both become current.
            models.UniqueConstraint(
                fields=["agent"],
                condition=models.Q(is_current=True),
                name="profile_one_current_per_agent",
            ),
            models.CheckConstraint(
                name="profile_latency_positive", condition=models.Q(expected_latency_seconds__gte=1)
            ),
            models.CheckConstraint(
                name="profile_embedding_has_model",
                condition=models.Q(embedding__isnull=True) | ~models.Q(embedding_model=""),
            ),
        ]
        indexes = [
            # Built concurrently by migration 0003 (safe on a large table); declared here so the
            # migration state matches the models.
            HnswIndex(
                name="profile_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
                condition=models.Q(is_current=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agent} v{self.version}"

    @property
    def is_matchable(self) -> bool:
        return self.is_current and self.embedding is not None

    @property
    def capability_text(self) -> str:
        """The text that is embedded: what the agent does, in words a task poster would use."""
        parts = [self.description.strip()]
        if self.tags:
            parts.append("Skills: " + ", ".join(self.tags) + ".")
        if self.input_formats:
            parts.append("Input: " + ", ".join(self.input_formats) + ".")
        if self.output_formats:
            parts.append("Output: " + ", ".join(self.output_formats) + ".")
        return " ".join(parts)


class Outcome(models.Model):
    """What happened when an agent worked on a task: one row per (agent, task, kind), with the
    task's vector (so an agent's record on the nearest past tasks estimates its chance on a new
    one), the price paid, the latency and the decision that led to the work."""

    class Kind(models.TextChoices):
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected"
        REVISED = "revised", "Revision requested"
        TIMED_OUT = "timed_out", "Timed out"
        FAILED = "failed", "Failed"
        ABANDONED = "abandoned", "Abandoned"

    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="outcomes")
    profile = models.ForeignKey(
        CapabilityProfile, null=True, blank=True, on_delete=models.PROTECT, related_name="outcomes"
    )
    task_ref = models.CharField(max_length=80)
    outcome = models.CharField(max_length=12, choices=Kind.choices)
    cost = models.BigIntegerField(default=0)
    latency_seconds = models.FloatField(null=True, blank=True)
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS, null=True, blank=True)
    embedding_model = models.CharField(max_length=120, blank=True)
    decision = models.ForeignKey(
        "agents_registry.DecisionRecord",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="outcomes",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    # Outcomes that end an attempt: a revision request is followed by one of these for the same
    # task, so counting it too would count one attempt twice.
    SUCCESS_KINDS = (Kind.ACCEPTED,)
    FAILURE_KINDS = (Kind.REJECTED, Kind.TIMED_OUT, Kind.FAILED, Kind.ABANDONED)

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [
            # The matcher reads each candidate's most recent outcomes (then the nearest of them).
            models.Index(fields=["agent", "-created_at", "-id"], name="outcome_agent_recent"),
            # Nearest past tasks across agents (the evidence pages and the kNN baseline); built
            # concurrently by its own migration, declared here so the state matches.
            HnswIndex(
                name="outcome_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
        ]
        constraints = [
            # A redelivered message or a retried call records the same outcome once.
            models.UniqueConstraint(
                fields=["agent", "task_ref", "outcome"], name="outcome_once_per_task_and_kind"
            ),
            models.CheckConstraint(
                name="outcome_cost_not_negative", condition=models.Q(cost__gte=0)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agent_id} {self.task_ref} {self.outcome}"
