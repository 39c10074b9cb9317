"""Executions of hosted agents, their traces, and the secrets their runtimes use; at the end,
participants' event subscriptions and their deliveries (see ``workers/events.py``).

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
A running attempt's worker renews its lease while it runs (a heartbeat, capped by the attempt's
time limit), so a worker that died is noticed within a heartbeat lease, not a time limit. An
attempt lost that way is the platform's failure, not the agent's: it is given back (bounded by
``platform_failures``), and if the platform gives up the task goes back to the market with no
outcome recorded against the agent.

Messages to workers leave through ``OutboxMessage`` (see ``workers/services/outbox.py``): written
in the transaction that asks for the work, sent after its commit, and sent again by the relay as
soon as the broker answers, so a broker outage delays work by about the outage.

``TraceEvent`` rows are the execution's ordered trace: ``sequence`` comes from the execution's
``trace_length`` counter, moved with an ``F()`` update so concurrent appends never collide.
"""

from __future__ import annotations

import uuid

from django.contrib.postgres.fields import ArrayField
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
    # Attempts lost to the platform (a worker killed, the database gone): they are given back to
    # the agent (``attempts`` is not spent), up to ``WORKERS_MAX_PLATFORM_FAILURES``.
    platform_failures = models.PositiveIntegerField(default=0)
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


class OutboxMessage(models.Model):
    """A Celery message written in the transaction of the change that asks for it (an award, a
    retry, a revision, an acceptance), so it exists if and only if that change committed. Sent
    after the commit; what the broker did not take is sent by the relay (beat, or
    ``manage.py outbox_relay``), which locks unsent rows with ``SKIP LOCKED`` so two relays
    never send the same one. A message sent twice (a relay that died between the send and its
    commit) is harmless: every receiver is idempotent (an execution's claim lets one through)."""

    task_name = models.CharField(max_length=200)
    kwargs = models.JSONField(default=dict)
    options = models.JSONField(default=dict)  # Celery's per-message options (time limits)
    available_at = models.DateTimeField()  # not to run before (a retry's backoff)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    send_failures = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [
            models.Index(
                fields=["id"], name="outbox_unsent", condition=models.Q(sent_at__isnull=True)
            ),
            models.Index(
                fields=["sent_at"], name="outbox_sent", condition=models.Q(sent_at__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"outbox #{self.pk} {self.task_name} {self.kwargs}"


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


# --- event subscriptions (workers/events.py, workers/services/subscriptions.py) ------------------


class EventSubscription(models.Model):
    """A URL where a participant (an agent, or a person) receives the market's events about it,
    signed per Standard Webhooks with the subscription's secret (two during a rotation).

    An endpoint that keeps failing is paused automatically (``paused_by = "failures"``); its owner
    resumes it once it is fixed, and the deliveries that were waiting go out then."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"

    participant = models.ForeignKey(
        "agents_registry.Participant", on_delete=models.CASCADE, related_name="subscriptions"
    )
    url = models.URLField(max_length=500)
    event_types = ArrayField(models.CharField(max_length=40))
    description = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ACTIVE)
    paused_by = models.CharField(max_length=10, blank=True)  # "owner" or "failures"
    paused_reason = models.CharField(max_length=500, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    # Failed attempts since the last success, moved with F() by each attempt's own update.
    consecutive_failures = models.PositiveIntegerField(default=0)
    secret_encrypted = models.TextField()
    previous_secret_encrypted = models.TextField(blank=True)
    previous_secret_retires_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["participant", "status"], name="subscription_participant")]

    def __str__(self) -> str:
        return f"subscription #{self.pk} of participant {self.participant_id} to {self.url}"


class EventDelivery(models.Model):
    """One event sent (or to be sent) to one subscription, with every attempt in its log.

    ``event_id`` is the Standard Webhooks message id: the same on every retry, and unique per
    subscription, so an event reaches an endpoint once per change. A delivery is due when
    ``next_attempt_at`` has passed; whoever sends it first moves ``next_attempt_at`` past the
    attempt's lease and takes a fresh ``attempt_token`` (the message carries it), so two workers
    never send the same attempt and a worker that died mid-attempt is replaced once its lease
    ends."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Delivered"
        FAILED = "failed", "Failed (gave up)"

    subscription = models.ForeignKey(
        EventSubscription, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_id = models.CharField(max_length=80)
    event_type = models.CharField(max_length=40)
    task_ref = models.BigIntegerField(null=True, blank=True)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    attempt_token = models.UUIDField(null=True, blank=True)
    attempt_log = models.JSONField(default=list, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "event_id"], name="event_delivery_once_per_subscription"
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="event_delivery_due",
                condition=models.Q(status="pending"),
            ),
            models.Index(fields=["subscription", "-created_at"], name="event_delivery_log"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} to subscription {self.subscription_id}"


class EventCursor(models.Model):
    """How far the fan-out has read the market's timeline (``marketplace.TaskEvent``): every
    event with an id up to ``position`` is fanned out, or settled (older than a transaction can
    take to commit) without needing it. Events above it that were fanned out already are listed
    in ``EventFanout`` so the next pass skips them."""

    name = models.CharField(max_length=40, unique=True)
    position = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} at {self.position}"


class EventFanout(models.Model):
    """A timeline event above the cursor that was fanned out already (see ``EventCursor``)."""

    task_event_id = models.BigIntegerField(primary_key=True)

    def __str__(self) -> str:
        return f"fanned out {self.task_event_id}"
