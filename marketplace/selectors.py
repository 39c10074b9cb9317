"""Reads of the market, already prefetched, and the ``access_*`` helpers every view goes through.

Private objects are reported as missing (404), never as forbidden, so their existence does not
leak. Staff read everything.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.db.transaction import TransactionManagementError
from pgvector.django import CosineDistance

from agents_registry import selectors as registry_selectors
from agents_registry.models import Agent, Participant
from agents_registry.prepared import Joined, fetch_joined, prepared_cursor
from marketplace.exceptions import NotFound
from marketplace.models import Bid, Delivery, DeliveryFile, Dispute, Notification, Task, TaskEvent

TASK_RELATED = ("poster__agent", "assignee__agent", "parent")
# Reads never show the 384-float vectors: not parsing them saves about 45 µs a row.
TASK_VECTORS = ("embedding", "parent__embedding")


@dataclass(frozen=True)
class Viewer:
    """Who is looking: a participant (None when anonymous) and whether they are staff."""

    participant: Participant | None
    is_staff: bool = False

    @property
    def family_id(self) -> int | None:
        return family_id(self.participant) if self.participant else None


def family_id(participant: Participant) -> int:
    """The human behind a participant: itself for a human, the owner for an agent."""
    if participant.kind == Participant.Kind.AGENT:
        return participant.agent.owner_id
    return participant.pk


def speaks_for(viewer: Viewer, party: Participant | None) -> bool:
    """The viewer is the party, or the human who owns the party (an agent)."""
    if party is None or viewer.participant is None:
        return False
    if viewer.participant.pk == party.pk:
        return True
    return party.kind == Participant.Kind.AGENT and party.agent.owner_id == viewer.participant.pk


def can_view_task(viewer: Viewer, task: Task) -> bool:
    if viewer.is_staff:
        return True
    if task.visibility == Task.Visibility.PUBLIC and task.state != Task.State.DRAFT:
        return True
    if viewer.participant is None:
        return False
    if speaks_for(viewer, task.poster) or speaks_for(viewer, task.assignee):
        return True
    # A private task is shared with the poster's own family (a human and the agents it owns).
    return family_id(task.poster) == viewer.family_id


def is_task_party(viewer: Viewer, task: Task) -> bool:
    """Poster or assignee (or their owner), or staff: who may read bids, deliveries, disputes."""
    return viewer.is_staff or speaks_for(viewer, task.poster) or speaks_for(viewer, task.assignee)


def _one(queryset: QuerySet) -> Any:
    """The row or None. Not ``first()``: its ORDER BY costs the ORM about 1 ms of compiling on
    a wide select_related, more than the query."""
    try:
        return queryset.get()
    except queryset.model.DoesNotExist:
        return None


@functools.cache
def _task_lookup() -> tuple[str, tuple[Joined, ...]]:
    parts = (
        Joined(Task, "t", defer=("embedding",)),
        Joined(Participant, "p"),
        Joined(Agent, "pa"),
        Joined(Participant, "a"),
        Joined(Agent, "aa"),
    )
    task, poster, poster_agent, assignee, assignee_agent = parts
    sql = (
        f"SELECT {', '.join(part.columns for part in parts)} FROM {task.table}"  # noqa: S608
        f" JOIN {poster.table} ON p.id = t.poster_id"
        f" LEFT JOIN {poster_agent.table} ON pa.participant_id = p.id"
        f" LEFT JOIN {assignee.table} ON a.id = t.assignee_id"
        f" LEFT JOIN {assignee_agent.table} ON aa.participant_id = a.id"
        " WHERE t.id = %s"
    )
    return sql, parts


def task_with_parties(task_id: int, *, for_update: bool = False) -> Task | None:
    """The task (vector deferred) with its poster and assignee and their agents loaded: what
    ``select_related("poster__agent", "assignee__agent")`` gives, from one prepared statement
    (every task endpoint starts here, every transition locks with it; the ORM spent 2 to 4 ms
    compiling that join, the database 0.2 ms running it). The parent loads when asked for.
    ``for_update`` locks the task's row (not the parties') until the transaction ends."""
    sql, parts = _task_lookup()
    if for_update:
        if not connection.in_atomic_block:
            raise TransactionManagementError("for_update needs a transaction (atomic()).")
        sql += " FOR UPDATE OF t"
    found = fetch_joined(sql, [task_id], parts)
    if not found:
        return None
    task, poster, poster_agent, assignee, assignee_agent = found
    poster.agent = poster_agent  # None caches "not an agent"
    task.poster = poster
    if assignee is not None:
        assignee.agent = assignee_agent
    task.assignee = assignee
    return task


@functools.cache
def _task_alone_sql() -> tuple[str, Joined]:
    task = Joined(Task, "t", defer=("embedding",))
    return f"SELECT {task.columns} FROM {task.table} WHERE t.id = %s", task  # noqa: S608


def task_alone(task_id: int) -> Task | None:
    """The task's own row (vector deferred) from one prepared statement, without the parties
    ``task_with_parties`` joins: for a reader that needs only the task itself (the brief of a
    hosted agent's run). Its poster and assignee load from the database if touched."""
    sql, task = _task_alone_sql()
    found = fetch_joined(sql, [task_id], [task])
    return found[0] if found else None


def access_task(*, viewer: Viewer, task_id: int) -> Task:
    task = task_with_parties(task_id)
    if task is None or not can_view_task(viewer, task):
        raise NotFound(f"Task {task_id} does not exist or is private.")
    return task


def access_bid(*, viewer: Viewer, bid_id: int) -> Bid:
    bid = _one(
        Bid.objects.select_related(
            "bidder__agent", *(f"task__{name}" for name in TASK_RELATED)
        ).filter(pk=bid_id)
    )
    if bid is None or not (speaks_for(viewer, bid.bidder) or is_task_party(viewer, bid.task)):
        raise NotFound(f"Bid {bid_id} does not exist or is not yours.")
    return bid


def access_delivery(*, viewer: Viewer, delivery_id: int) -> Delivery:
    delivery = _one(
        Delivery.objects.select_related(*(f"task__{name}" for name in TASK_RELATED))
        .prefetch_related("files")
        .filter(pk=delivery_id)
    )
    if delivery is None or not is_task_party(viewer, delivery.task):
        raise NotFound(f"Delivery {delivery_id} does not exist or is not yours.")
    return delivery


def access_delivery_file(*, viewer: Viewer, file_id: int) -> DeliveryFile:
    stored = _one(
        DeliveryFile.objects.select_related(
            *(f"delivery__task__{name}" for name in TASK_RELATED)
        ).filter(pk=file_id)
    )
    if stored is None or not is_task_party(viewer, stored.delivery.task):
        raise NotFound(f"File {file_id} does not exist or is not yours.")
    return stored


def access_dispute(*, viewer: Viewer, task: Task) -> Dispute | None:
    if not is_task_party(viewer, task):
        return None
    return Dispute.objects.filter(task=task).first()


def viewer_for_request(request: object) -> Viewer:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return Viewer(participant=None)
    participant = registry_selectors.participant_for_request(request)
    return Viewer(participant=participant, is_staff=bool(getattr(user, "is_staff", False)))


# --- lists --------------------------------------------------------------------------------------


def _with_counts(queryset: QuerySet[Task]) -> QuerySet[Task]:
    # A correlated subquery, not Count() with GROUP BY: PostgreSQL then walks the ordered index,
    # stops at the page's LIMIT and counts bids for those rows only (at 100k tasks, 38 ms -> 1 ms).
    active_bids = (
        Bid.objects.filter(task=OuterRef("pk"), status=Bid.Status.ACTIVE)
        .order_by()
        .values("task")
        .annotate(total=Count("pk"))
        .values("total")
    )
    return queryset.select_related(*TASK_RELATED).annotate(
        active_bids=Coalesce(Subquery(active_bids), 0)
    )


def tasks_visible(*, viewer: Viewer) -> QuerySet[Task]:
    queryset = Task.objects.defer(*TASK_VECTORS)
    if viewer.is_staff:
        return queryset
    # A draft is its poster's own until published, whatever its visibility.
    public = Q(visibility=Task.Visibility.PUBLIC) & ~Q(state=Task.State.DRAFT)
    if viewer.participant is None:
        return queryset.filter(public)
    # Participant ids resolved up front (one small query), so the task filter is plain IN lists on
    # indexed columns instead of OR-ed joins that defeat the (state, created_at) index.
    family = viewer.family_id
    own = viewer.participant.pk
    agents = dict(
        Agent.objects.filter(owner_id__in={family, own}).values_list("participant_id", "owner_id")
    )
    family_members = {family, own} | {agent for agent, owner in agents.items() if owner == family}
    speaks_for_ids = {own} | {agent for agent, owner in agents.items() if owner == own}
    mine = Q(poster_id__in=family_members) | Q(assignee_id__in=speaks_for_ids)
    return queryset.filter(public | mine)


def tasks_feed(
    *,
    viewer: Viewer,
    search: str = "",
    state: str | None = Task.State.OPEN,
    min_bounty: int | None = None,
    max_bounty: int | None = None,
) -> QuerySet[Task]:
    """Open tasks (or another state) the viewer may see, newest first, with bid counts."""
    queryset = tasks_visible(viewer=viewer)
    if state:
        queryset = queryset.filter(state=state)
    if search:
        queryset = queryset.filter(Q(title__icontains=search) | Q(description__icontains=search))
    if min_bounty is not None:
        queryset = queryset.filter(bounty__gte=min_bounty)
    if max_bounty is not None:
        queryset = queryset.filter(bounty__lte=max_bounty)
    return _with_counts(queryset).order_by("-created_at", "-pk")


def tasks_matching_agent(*, participant: Participant, limit: int = 20) -> list[Task]:
    """Open public tasks nearest in meaning to the agent's current capability profile (cosine
    distance), excluding its own and those it is barred from. Vectors of another embedding model
    are never compared."""
    if participant.kind != Participant.Kind.AGENT:
        return []
    profile = registry_selectors.agent_current_profile(agent=participant.agent)
    if profile is None or getattr(profile, "embedding", None) is None:
        return []
    model_id = getattr(profile, "embedding_model", "")
    queryset = Task.objects.filter(
        state=Task.State.OPEN, visibility=Task.Visibility.PUBLIC, embedding__isnull=False
    ).exclude(poster=participant)
    if model_id:
        queryset = queryset.filter(embedding_model=model_id)
    queryset = queryset.exclude(barred__contains=[participant.pk])
    return list(
        _with_counts(queryset)
        .annotate(distance=CosineDistance("embedding", profile.embedding))
        .order_by("distance", "-pk")[:limit]
    )


def tasks_posted_by(*, participant: Participant) -> QuerySet[Task]:
    return _with_counts(Task.objects.filter(poster=participant)).order_by("-created_at", "-pk")


def tasks_assigned_to(*, participant: Participant) -> QuerySet[Task]:
    return _with_counts(Task.objects.filter(assignee=participant)).order_by("-updated_at", "-pk")


def bids_for_task(*, viewer: Viewer, task: Task) -> QuerySet[Bid]:
    queryset = Bid.objects.filter(task=task).select_related("bidder__agent").order_by("price", "pk")
    if is_task_party(viewer, task) and (viewer.is_staff or speaks_for(viewer, task.poster)):
        return queryset
    if viewer.participant is None:
        return queryset.none()
    return queryset.filter(bidder=viewer.participant)


def bids_of(*, participant: Participant) -> QuerySet[Bid]:
    return (
        Bid.objects.filter(bidder=participant)
        .select_related("bidder__agent", "task")
        .order_by("-created_at", "-pk")
    )


def deliveries_for_task(*, viewer: Viewer, task: Task) -> QuerySet[Delivery]:
    if not is_task_party(viewer, task):
        return Delivery.objects.none()
    return Delivery.objects.filter(task=task).prefetch_related("files").order_by("-created_at")


@functools.cache
def _delivery_by_key_sql() -> tuple[str, Joined]:
    delivery = Joined(Delivery, "d")
    sql = (
        f"SELECT {delivery.columns} FROM {delivery.table}"  # noqa: S608
        " WHERE d.task_id = %s AND d.submitter_id = %s AND d.idempotency_key = %s"
    )
    return sql, delivery


def delivery_by_key(*, task_id: int, submitter_id: int, idempotency_key: str) -> Delivery | None:
    """The delivery an idempotency key already made (at most one: a unique constraint), from a
    prepared statement: a refused delivery asks, to replay the one its key made."""
    sql, delivery = _delivery_by_key_sql()
    found = fetch_joined(sql, [task_id, submitter_id, idempotency_key], [delivery])
    return found[0] if found else None


def deliveries_of(*, participant: Participant) -> QuerySet[Delivery]:
    return (
        Delivery.objects.filter(Q(submitter=participant) | Q(task__poster=participant))
        .select_related("task")
        .prefetch_related("files")
        .order_by("-created_at", "-pk")
    )


def task_events(*, task: Task) -> QuerySet[TaskEvent]:
    return TaskEvent.objects.filter(task=task).select_related("actor").order_by("created_at", "pk")


def task_children(*, task: Task) -> QuerySet[Task]:
    return (
        Task.objects.filter(parent=task)
        .select_related("assignee")
        .prefetch_related("depends_on")
        .order_by("pk")
    )


def notifications_for(*, participant: Participant, limit: int = 50) -> list[Notification]:
    return list(
        Notification.objects.filter(recipient=participant)
        .select_related("task")
        .order_by("-created_at", "-pk")[:limit]
    )


# --- escrow expectations (invariant 3) -----------------------------------------------------------


def _expected_escrow_queryset() -> QuerySet[Task]:
    return Task.objects.filter(state__in=Task.ESCROW_STATES).annotate(
        open_children=Coalesce(
            Sum("children__bounty", filter=Q(children__state__in=Task.ESCROW_STATES)), 0
        ),
        spent_children=Coalesce(
            Sum("children__spent", filter=Q(children__state__in=Task.FINAL_STATES)), 0
        ),
    )


def expected_escrows() -> dict[str, int]:
    """What every task's escrow must hold: bounty minus open delegations minus what closed
    subtasks spent (for ledger reconciliation, setting ``LEDGER_ESCROW_EXPECTATIONS``). Tasks
    not listed must hold nothing."""
    rows = _expected_escrow_queryset().values_list(
        "pk", "bounty", "open_children", "spent_children"
    )
    return {f"task:{pk}": bounty - opened - spent for pk, bounty, opened, spent in rows}


def task_escrow_expected(*, task: Task) -> int:
    if task.state not in Task.ESCROW_STATES:
        return 0
    row = _expected_escrow_queryset().filter(pk=task.pk).values("open_children", "spent_children")
    values = row.first() or {"open_children": 0, "spent_children": 0}
    return task.bounty - values["open_children"] - values["spent_children"]


def task_delegation_capacity(*, task: Task) -> int:
    """What the assignee may still delegate to subtasks: its own pay, not the poster's margin."""
    if task.price is None:
        return 0
    return task_escrow_expected(task=task) - (task.bounty - task.price)


_UNFINISHED_CHILDREN = "FROM marketplace_task WHERE parent_id = %s AND state = ANY(%s)"


def unfinished_children_count(*, task: Task) -> int:
    """Subtasks still holding escrow: every cancellation and abandonment asks (a fixed
    statement; the ORM took 0.5 ms to compile the count)."""
    with prepared_cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) {_UNFINISHED_CHILDREN}",
            [task.pk, list(Task.ESCROW_STATES)],
        )
        return cursor.fetchone()[0]


def unfinished_children_exist(*, task: Task) -> tuple[str, list[Any]]:
    """A query that finds a row while subtasks of ``task`` hold escrow: the condition a delivery
    is inserted ``unless`` (``prepared.insert_rows``), checked by the insert itself."""
    return f"SELECT 1 {_UNFINISHED_CHILDREN}", [task.pk, list(Task.ESCROW_STATES)]


def last_delivery_subquery() -> Subquery:
    return Subquery(
        Delivery.objects.filter(task=OuterRef("pk")).order_by("-created_at").values("pk")[:1]
    )
