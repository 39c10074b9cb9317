"""Executions of hosted agents, their traces, and the secrets their runtimes use.

An ``Execution`` is one hosted agent working on one awarded task. It is created in the award's
transaction and queued on commit; a worker *claims* it with a conditional UPDATE (queued -> running,
attempts + 1, a fresh ``claim_token`` and a lease), runs the agent outside any transaction, then
*completes* it in one transaction that locks the row, checks that the claim is still its own, and
writes the delivery (through the market, with an idempotency key derived from the execution) and
the final state together. So a message delivered twice, or a worker killed at any point, cannot
deliver or charge twice: before the commit nothing happened, after it the state is final and a
late claim changes no row.

A built-in agent's first attempt (the award's message, ``at_once``) does all of it in one
transaction: the claim locks the row (``FOR UPDATE``) and its values are written with the outcome.
The same argument holds (one commit, or none); a worker killed in the middle leaves no trace of
the attempt, and its message, redelivered, takes the two-transaction path, whose claim commits
before the run, so a run that kills its worker is counted against the attempt limit.

A lease bounds how long an execution may sit in ``queued`` or ``running`` without progress; the
reaper (Celery beat) re-queues executions whose lease expired, or fails them at the attempt limit.

``TraceEvent`` rows are the execution's ordered trace: ``sequence`` comes from the execution's
``trace_length`` counter, moved with an ``F()`` update so concurrent appends never collide.
"""

from __future__ import annotations

import uuid

from django.db import models

from agents_registry.models import Agent


class Execution(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        WAITING = "waiting", "Accepted by the agent, waiting for its delivery"
        SUCCEEDED = "succeeded", "Delivered"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING, Status.WAITING)
    FINAL_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    # The market's Task primary key. Not a foreign key on purpose: reads go through the market's
    # selectors and the market's schema migrates on its own.
    task_ref = models.BigIntegerField()
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="executions")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    claim_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    budget = models.PositiveBigIntegerField(default=0)
    cost = models.PositiveBigIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    delivery_ref = models.BigIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)
    trace_length = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # One live execution per task: a second award of the same task is a bug upstream.
            models.UniqueConstraint(
                fields=["task_ref"],
                name="execution_one_active_per_task",
                condition=models.Q(status__in=["queued", "running", "waiting"]),
            ),
            models.CheckConstraint(
                name="execution_attempts_within_limit",
                condition=models.Q(attempts__lte=models.F("max_attempts")),
            ),
            models.CheckConstraint(
                name="execution_cost_within_budget",
                condition=models.Q(cost__lte=models.F("budget")),
            ),
            models.CheckConstraint(
                name="execution_succeeded_has_delivery",
                condition=~models.Q(status="succeeded") | models.Q(delivery_ref__isnull=False),
            ),
            models.CheckConstraint(
                name="execution_running_has_lease",
                condition=~models.Q(status__in=["queued", "running", "waiting"])
                | models.Q(lease_expires_at__isnull=False),
            ),
        ]
        indexes = [
            models.Index(fields=["status", "lease_expires_at"], name="execution_lease_due"),
            models.Index(fields=["task_ref", "-created_at"], name="execution_task"),
            models.Index(fields=["agent", "-created_at"], name="execution_agent"),
        ]

    def __str__(self) -> str:
        return f"execution #{self.pk} of task #{self.task_ref} by {self.agent_id}"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATUSES

    @property
    def delivery_idempotency_key(self) -> str:
        """The one key every attempt delivers under, so the market keeps the first delivery."""
        return f"execution-{self.pk}"

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class TraceEvent(models.Model):
    class Kind(models.TextChoices):
        LLM_CALL = "llm_call", "LLM call"
        TOOL_CALL = "tool_call", "Tool call"
        MESSAGE = "message", "Message"
        SUBTASK_SPAWNED = "subtask_spawned", "Subtask spawned"
        DELEGATION = "delegation", "Delegation"
        VERIFICATION = "verification", "Verification"
        ERROR = "error", "Error"
        DECISION = "decision", "Decision"

    class Source(models.TextChoices):
        WORKER = "worker", "Worker"
        AGENT = "agent", "Agent (through the API)"

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="events")
    sequence = models.PositiveIntegerField()
    attempt = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.WORKER)
    name = models.CharField(max_length=200, blank=True)
    inputs = models.JSONField(null=True, blank=True)
    outputs = models.JSONField(null=True, blank=True)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.PositiveBigIntegerField(default=0)
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["execution", "sequence"]
        constraints = [
            models.UniqueConstraint(
                fields=["execution", "sequence"], name="trace_event_unique_sequence"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.execution_id}#{self.sequence} {self.kind}"


class AgentSecret(models.Model):
    """A secret a runtime needs for an agent, encrypted at rest (see ``workers.secrets``).

    Webhook signing secrets rotate: the new one is current, the previous one stays valid until
    ``retires_at`` so the agent can switch without refusing our requests in between.
    """

    class Purpose(models.TextChoices):
        WEBHOOK = "webhook", "Webhook signing secret"
        OPENAI_API_KEY = "openai_api_key", "OpenAI-compatible API key"

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="secrets")
    purpose = models.CharField(max_length=16, choices=Purpose.choices)
    token = models.UUIDField(default=uuid.uuid4, editable=False, unique=True)
    encrypted_value = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    retires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["agent", "purpose", "-created_at"], name="secret_lookup")]

    def __str__(self) -> str:
        return f"{self.purpose} secret of agent {self.agent_id}"
