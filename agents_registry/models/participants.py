"""Participants, their agents and the agents' API keys."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from rest_framework_api_key.models import AbstractAPIKey


class Participant(models.Model):
    class Kind(models.TextChoices):
        HUMAN = "human", "Human"
        AGENT = "agent", "Agent"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="participant",
    )
    display_name = models.CharField(max_length=120)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="participant_human_has_user",
                condition=(models.Q(kind="human", user__isnull=False) | models.Q(kind="agent")),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.display_name} ({self.kind})"

    @property
    def ledger_ref(self) -> str:
        """The owner reference of this participant's ledger accounts."""
        return f"participant:{self.pk}"


class Agent(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        SUSPENDED = "suspended", "Suspended by staff"

    class Runtime(models.TextChoices):
        EXTERNAL = "external", "External (uses the API)"
        HTTP = "http", "HTTP endpoint"
        OPENAI = "openai", "OpenAI-compatible chat"
        BUILTIN = "builtin", "Built-in"
        A2A = "a2a", "A2A agent"

    participant = models.OneToOneField(Participant, on_delete=models.PROTECT, related_name="agent")
    owner = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="owned_agents")
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=80, unique=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ACTIVE)
    runtime = models.CharField(max_length=12, choices=Runtime.choices, default=Runtime.EXTERNAL)
    runtime_config = models.JSONField(default=dict, blank=True)
    concurrency_limit = models.PositiveIntegerField(default=4)
    created_at = models.DateTimeField(auto_now_add=True)
    # Open work, moved with F() by services.agent_load_change (the market calls it on award and on
    # finish); matching excludes agents at their concurrency limit.
    active_tasks = models.IntegerField(default=0)
    # Reputation counters, moved with F() by services.outcome_record in the outcome's transaction;
    # they can always be rebuilt from the Outcome rows.
    outcomes_total = models.PositiveIntegerField(default=0)
    outcomes_accepted = models.PositiveIntegerField(default=0)
    outcomes_revised = models.PositiveIntegerField(default=0)
    latency_samples = models.PositiveIntegerField(default=0)
    latency_seconds_total = models.FloatField(default=0.0)
    earned_total = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="agent_concurrency_positive", condition=models.Q(concurrency_limit__gte=1)
            ),
            models.CheckConstraint(
                name="agent_active_tasks_not_negative", condition=models.Q(active_tasks__gte=0)
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def reputation(self) -> float:
        """Bayesian average of outcomes (accepted 1, revised 0.5, others 0) with a neutral prior
        worth a few outcomes, so one lucky task does not top the list."""
        from agents_registry.reputation import bayesian_reputation

        return bayesian_reputation(
            accepted=self.outcomes_accepted,
            revised=self.outcomes_revised,
            total=self.outcomes_total,
        )

    @property
    def mean_latency_seconds(self) -> float | None:
        if not self.latency_samples:
            return None
        return self.latency_seconds_total / self.latency_samples


class ApiKey(AbstractAPIKey):
    """A participant's API key: ``prefix.secret`` shown once, only a SHA-512 hash stored."""

    class Scope(models.TextChoices):
        TASKS_READ = "tasks:read", "Read tasks"
        TASKS_WRITE = "tasks:write", "Post and manage tasks"
        BIDS_WRITE = "bids:write", "Bid, claim and withdraw"
        DELIVERIES_WRITE = "deliveries:write", "Start work and deliver"
        WALLET_READ = "wallet:read", "Read wallet and statement"
        WALLET_WRITE = "wallet:write", "Move credits between an owner and its agents"
        AGENTS_WRITE = "agents:write", "Manage agent profiles and keys"
        TRACES_WRITE = "traces:write", "Append execution trace events"

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="api_keys")
    scopes = ArrayField(models.CharField(max_length=32, choices=Scope.choices), default=list)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes
