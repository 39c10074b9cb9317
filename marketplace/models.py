"""The task market: tasks, bids, deliveries, disputes, their timeline and notifications.

Money never lives here: a task's bounty sits in the ledger's escrow account ``task:<id>``, and every
state change that moves credits calls ``ledger.services`` inside the same database transaction as
the state change (see ``marketplace/services``). The rows here record *why* money moved and who
may act next; the ledger records *that* it moved.

Invariant 3 (escrow equals open bounty minus what was delegated to open subtasks) is checkable
from these rows alone: a task in an escrow-holding state expects
``bounty - sum(open children's bounty) - sum(closed children's spent)`` in its escrow, where a
closed task's ``spent`` is its bounty minus what was refunded to its poster (or parent escrow) when
it closed: the price on acceptance, the assignee's side of a dispute, what its own subtasks spent.
See ``selectors.expected_escrows``.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from pgvector.django import HnswIndex, VectorField

from agents_registry.models import Participant

# The dimension of agents_registry.embeddings (all-MiniLM-L6-v2); a migration needs a literal.
TASK_EMBEDDING_DIMENSIONS = 384


class Task(models.Model):
    class State(models.TextChoices):
        DRAFT = "draft", "Draft (not yet funded)"
        OPEN = "open", "Open for bids"
        AWARDED = "awarded", "Awarded"
        IN_PROGRESS = "in_progress", "In progress"
        DELIVERED = "delivered", "Delivered, in review"
        REVISION_REQUESTED = "revision_requested", "Revision requested"
        ACCEPTED = "accepted", "Accepted and settled"
        DISPUTED = "disputed", "Rejected, in dispute"
        RESOLVED = "resolved", "Dispute resolved"
        CANCELLED = "cancelled", "Cancelled"
        EXPIRED = "expired", "Expired"

    class Visibility(models.TextChoices):
        PUBLIC = "public", "Public"
        PRIVATE = "private", "Private (poster, assignee and staff only)"

    # States whose escrow still holds credits; every other state is final and its escrow is empty.
    ESCROW_STATES = (
        State.OPEN,
        State.AWARDED,
        State.IN_PROGRESS,
        State.DELIVERED,
        State.REVISION_REQUESTED,
        State.DISPUTED,
    )
    FINAL_STATES = (State.ACCEPTED, State.RESOLVED, State.CANCELLED, State.EXPIRED)

    poster = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="posted_tasks")
    assignee = models.ForeignKey(
        Participant,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="assigned_tasks",
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    depends_on: models.ManyToManyField[Task, TaskDependency] = models.ManyToManyField(
        "self", symmetrical=False, blank=True, related_name="dependents", through="TaskDependency"
    )
    title = models.CharField(max_length=200)
    description = models.TextField()
    acceptance_criteria = models.TextField(blank=True)
    checks = models.JSONField(default=dict, blank=True)
    bounty = models.PositiveBigIntegerField()
    price = models.PositiveBigIntegerField(null=True, blank=True)
    spent = models.PositiveBigIntegerField(default=0)
    deadline = models.DateTimeField(null=True, blank=True)
    visibility = models.CharField(
        max_length=8, choices=Visibility.choices, default=Visibility.PUBLIC
    )
    state = models.CharField(max_length=20, choices=State.choices, default=State.OPEN)
    auto_award = models.JSONField(default=dict, blank=True)
    bidding_closes_at = models.DateTimeField(null=True, blank=True)
    awarded_at = models.DateTimeField(null=True, blank=True)
    barred = ArrayField(models.BigIntegerField(), default=list, blank=True)
    # Work an owner gives its own agents (every private task is): only the poster's family (the
    # owner and the agents it owns) may take it, and no reputation moves. Any other task refuses
    # that family (dealing with oneself would farm reputation for the fee).
    internal = models.BooleanField(default=False)
    # The hosted agent's execution of the current assignment (the award hook's answer), if any.
    execution_ref = models.BigIntegerField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=120, null=True, blank=True)
    embedding = VectorField(dimensions=TASK_EMBEDDING_DIMENSIONS, null=True, blank=True)
    embedding_model = models.CharField(max_length=120, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(name="task_bounty_positive", condition=models.Q(bounty__gt=0)),
            models.CheckConstraint(
                name="task_price_within_bounty",
                condition=models.Q(price__isnull=True) | models.Q(price__lte=models.F("bounty")),
            ),
            models.CheckConstraint(
                name="task_assigned_when_past_open",
                condition=models.Q(state__in=["draft", "open", "cancelled", "expired"])
                | models.Q(assignee__isnull=False, price__isnull=False),
            ),
            models.UniqueConstraint(
                fields=["poster", "idempotency_key"],
                name="task_unique_idempotency_key",
                condition=models.Q(idempotency_key__isnull=False),
            ),
        ]
        indexes = [
            models.Index(fields=["state", "-created_at"], name="task_state_created"),
            models.Index(fields=["state", "deadline"], name="task_state_deadline"),
            # Only what "tasks for me" searches: open public tasks. Every state change of a task
            # writes a new row version, and a full index took a new entry for each (an HNSW
            # insert is a graph search); the search also no longer wades through closed tasks.
            HnswIndex(
                name="task_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
                condition=models.Q(state="open", visibility="public"),
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"

    @property
    def ledger_ref(self) -> str:
        """The escrow account of this task in the ledger."""
        return f"task:{self.pk}"

    @property
    def refund_ref(self) -> str:
        """Where unspent escrow goes back: the parent's escrow for a subtask, else the poster."""
        return f"task:{self.parent_id}" if self.parent_id else self.poster.ledger_ref

    @property
    def is_final(self) -> bool:
        return self.state in self.FINAL_STATES


class TaskDependency(models.Model):
    """An edge of the sibling DAG: ``task`` cannot be awarded until ``depends_on`` is accepted."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="dependency_edges")
    depends_on = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="dependent_edges")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["task", "depends_on"], name="task_dependency_unique"),
            models.CheckConstraint(
                name="task_dependency_not_self", condition=~models.Q(task=models.F("depends_on"))
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.task_id} needs #{self.depends_on_id}"


class Bid(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        WITHDRAWN = "withdrawn", "Withdrawn"
        AWARDED = "awarded", "Awarded"
        LOST = "lost", "Not chosen"

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="bids")
    bidder = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="bids")
    price = models.PositiveBigIntegerField()
    eta_hours = models.PositiveIntegerField()
    plan = models.TextField(max_length=2000)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    score = models.FloatField(null=True, blank=True)
    plan_embedding = VectorField(dimensions=TASK_EMBEDDING_DIMENSIONS, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(name="bid_price_positive", condition=models.Q(price__gt=0)),
            models.UniqueConstraint(
                fields=["task", "bidder"],
                name="bid_one_active_per_bidder",
                condition=models.Q(status="active"),
            ),
            models.UniqueConstraint(
                fields=["task"],
                name="bid_one_awarded_per_task",
                condition=models.Q(status="awarded"),
            ),
        ]
        indexes = [models.Index(fields=["bidder", "-created_at"], name="bid_bidder_created")]

    def __str__(self) -> str:
        return f"bid #{self.pk} on task #{self.task_id}: {self.price}"


class Delivery(models.Model):
    class Status(models.TextChoices):
        SUBMITTED = "submitted", "Submitted, in review"
        ACCEPTED = "accepted", "Accepted"
        REVISION_REQUESTED = "revision_requested", "Revision requested"
        REJECTED = "rejected", "Rejected"

    class CheckStatus(models.TextChoices):
        NONE = "none", "No machine checks"
        PENDING = "pending", "Checks running"
        PASSED = "passed", "Checks passed"
        FAILED = "failed", "Checks failed"

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="deliveries")
    submitter = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="deliveries")
    text = models.TextField(blank=True)
    data = models.JSONField(null=True, blank=True)
    skills_used = ArrayField(models.BigIntegerField(), default=list, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.SUBMITTED)
    check_status = models.CharField(
        max_length=10, choices=CheckStatus.choices, default=CheckStatus.NONE
    )
    check_results = models.JSONField(default=list, blank=True)
    review_message = models.TextField(blank=True)
    # When silence settles it: accepted if its checks pass, back to the assignee if they fail.
    # None: no deadline, the delivery waits for the poster (checks failed too often).
    review_deadline = models.DateTimeField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=120, null=True, blank=True)
    # The execution that produced it when a hosted agent delivered (workers' Execution id).
    execution_ref = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["task"],
                name="delivery_one_accepted_per_task",
                condition=models.Q(status="accepted"),
            ),
            models.UniqueConstraint(
                fields=["task"],
                name="delivery_one_in_review_per_task",
                condition=models.Q(status="submitted"),
            ),
            models.UniqueConstraint(
                fields=["task", "submitter", "idempotency_key"],
                name="delivery_unique_idempotency_key",
                condition=models.Q(idempotency_key__isnull=False),
            ),
        ]
        indexes = [models.Index(fields=["status", "review_deadline"], name="delivery_due")]

    def __str__(self) -> str:
        return f"delivery #{self.pk} for task #{self.task_id}"


def delivery_file_path(instance: DeliveryFile, filename: str) -> str:
    # The stored name is ours, never the uploader's: no path tricks, no collisions.
    return f"deliveries/{instance.delivery.task_id}/{instance.delivery_id}/{instance.token}"


class DeliveryFile(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="files")
    token = models.CharField(max_length=40)
    file = models.FileField(upload_to=delivery_file_path, max_length=300)
    name = models.CharField(max_length=200)
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()

    def __str__(self) -> str:
        return self.name


class Dispute(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        RESOLVED = "resolved", "Resolved"

    task = models.OneToOneField(Task, on_delete=models.CASCADE, related_name="dispute")
    delivery = models.ForeignKey(Delivery, on_delete=models.PROTECT, related_name="disputes")
    opened_by = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="+")
    poster_evidence = models.TextField()
    assignee_evidence = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    assignee_share = models.PositiveBigIntegerField(null=True, blank=True)
    refund_share = models.PositiveBigIntegerField(null=True, blank=True)
    resolution_note = models.TextField(blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"dispute on task #{self.task_id}"


class TaskEvent(models.Model):
    """The timeline of a task: append-only, written by the same service as the change."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=40)
    actor = models.ForeignKey(
        Participant, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["task", "created_at"], name="taskevent_task_created")]

    def __str__(self) -> str:
        return f"{self.kind} on task #{self.task_id}"


class Notification(models.Model):
    recipient = models.ForeignKey(
        Participant, on_delete=models.CASCADE, related_name="notifications"
    )
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="+")
    message = models.CharField(max_length=300)
    read_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["recipient", "-created_at"], name="notification_recent")]

    def __str__(self) -> str:
        return self.message


class StaffAction(models.Model):
    """Every staff action in the console: who, what, on which object, and why."""

    staff_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    action = models.CharField(max_length=60)
    subject = models.CharField(max_length=120)
    note = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.staff_user} {self.action} {self.subject}"


class IdempotentRequest(models.Model):
    """A write replayed with the same ``Idempotency-Key`` returns the first response."""

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=120)
    fingerprint = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    body = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["participant", "key"], name="idempotent_request_key")
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.status_code})"


class ReadVersion(models.Model):
    """The version of what the API's kept reads show (``read_cache``), kept by the database: a
    statement-level trigger on every table those reads use adds one to a row in the first
    statement of a transaction that writes them (migration ``0007_read_version_triggers``), so
    any committed write, raw SQL included, gives the next reader a new version. The version is
    the sum of the rows: each connection adds to its own row (``pg_backend_pid()``), so writers
    never wait for each other's version, and a reader sees it in the same snapshot as the data."""

    slot = models.PositiveSmallIntegerField(primary_key=True)
    version = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"slot {self.slot}: {self.version}"
