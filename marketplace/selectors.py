"""Reads of the market, already prefetched, and the ``access_*`` helpers every view goes through.

Private objects are reported as missing (404), never as forbidden, so their existence does not
leak. Staff read everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from django.db import connection
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.db.transaction import TransactionManagementError
from pgvector.django import CosineDistance

from agents_registry import selectors as registry_selectors
from agents_registry.models import Agent, Participant
from core.prepared import (
    Joined,
    derived_from_models,
    fetch_joined,
    fetch_row,
    prepared_cursor,
)
from ledger import selectors as ledger_selectors
from marketplace.exceptions import NotFound
from marketplace.models import Bid, Delivery, DeliveryFile, Dispute, Notification, Task, TaskEvent

if TYPE_CHECKING:  # the stubs' helper type, not a runtime dependency
    from django_stubs_ext import WithAnnotations

TASK_RELATED = ("poster__agent", "assignee__agent", "parent")
# Reads never show the 384-float vectors, so they are never parsed.
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


def _agents_owned_by(owner: Any) -> QuerySet[Agent, Any]:
    return Agent.objects.filter(owner_id=owner).values("participant_id")


def task_visibility(*, own: Any = None, family: Any = None) -> Q:
    """Who may see a task, the one rule (staff see every task, and are not asked): anyone sees a
    published public task; a participant (``own``, of the human ``family``) also sees what its
    family posted (the human and the agents it owns) and what it, or an agent it owns, was
    assigned. Without ``own``, the anonymous viewer's part alone.

    ``own`` and ``family`` are ids or expressions (the API's prepared reads compile this
    condition once with placeholders, ``marketplace/api/reads.py``); the agents behind them are
    uncorrelated subqueries, hashed once per statement, so a list still walks the
    (state, created_at) index. ``can_view_task`` asks the same of a task already loaded."""
    # A draft is its poster's own until published, whatever its visibility.
    published = Q(visibility=Task.Visibility.PUBLIC) & ~Q(state=Task.State.DRAFT)
    if own is None:
        return published
    return (
        published
        | Q(poster_id=family)
        | Q(poster_id__in=_agents_owned_by(family))
        | Q(assignee_id=own)
        | Q(assignee_id__in=_agents_owned_by(own))
    )


def can_view_task(viewer: Viewer, task: Task) -> bool:
    """``task_visibility`` for a task loaded with its parties (``task_with_parties``), where the
    parties' agents are at hand and a query would be a statement more: its terms one by one.
    ``tests/marketplace/test_reads.py`` holds the two to one answer for every kind of viewer."""
    if viewer.is_staff:
        return True
    if task.visibility == Task.Visibility.PUBLIC and task.state != Task.State.DRAFT:
        return True
    if viewer.participant is None:
        return False
    # The poster in the viewer's family (the human, or an agent it owns); the assignee spoken for.
    return family_id(task.poster) == viewer.family_id or speaks_for(viewer, task.assignee)


def is_task_party(viewer: Viewer, task: Task) -> bool:
    """Poster or assignee (or their owner), or staff: who may read deliveries, disputes, and who
    works on the task at what price (the task's ``assignee`` and ``price``, in every answer and
    in its timeline)."""
    return viewer.is_staff or speaks_for(viewer, task.poster) or speaks_for(viewer, task.assignee)


def sees_every_bid(viewer: Viewer, task: Task) -> bool:
    """The poster's side (and staff) compare all bids; any other bidder sees only its own."""
    return viewer.is_staff or speaks_for(viewer, task.poster)


def can_view_bid(viewer: Viewer, bid: Bid) -> bool:
    """The one rule for a bid, its price and its bidder: in lists, alone, and in the timeline."""
    return sees_every_bid(viewer, bid.task) or speaks_for(viewer, bid.bidder)


def spoken_for_ids(viewer: Viewer) -> set[int]:
    """The participants ``speaks_for`` the viewer: itself, and for a human the agents it owns."""
    if viewer.participant is None:
        return set()
    own = viewer.participant.pk
    if viewer.participant.kind == Participant.Kind.AGENT:
        return {own}
    return {own, *Agent.objects.filter(owner_id=own).values_list("participant_id", flat=True)}


def _single_or_none(queryset: QuerySet) -> Any:
    """The row or None. Not ``first()``: its ORDER BY costs the ORM more compiling on a wide
    select_related than the query costs."""
    try:
        return queryset.get()
    except queryset.model.DoesNotExist:
        return None


@derived_from_models
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
    (every task endpoint starts here, every transition locks with it; the ORM compiles that
    join for far longer than the database runs it). The parent loads when asked for.
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
    # The task and its poster are inner joins; the agents and the assignee LEFT JOINs.
    assert isinstance(task, Task) and isinstance(poster, Participant)
    assert isinstance(assignee, Participant | None)
    assert isinstance(poster_agent, Agent | None) and isinstance(assignee_agent, Agent | None)
    poster.agent = poster_agent  # None caches "not an agent"
    task.poster = poster
    if assignee is not None:
        assignee.agent = assignee_agent
    task.assignee = assignee
    return task


@derived_from_models
def _task_alone_sql() -> tuple[str, Joined[Task]]:
    task = Joined(Task, "t", defer=("embedding",))
    return f"SELECT {task.columns} FROM {task.table} WHERE t.id = %s", task  # noqa: S608


def task_alone(task_id: int) -> Task | None:
    """The task's own row (vector deferred) from one prepared statement, without the parties
    ``task_with_parties`` joins: for a reader that needs only the task itself (the brief of a
    hosted agent's run). Its poster and assignee load from the database if touched."""
    sql, task = _task_alone_sql()
    row = fetch_row(sql, [task_id])
    return None if row is None else task.build(row)


def access_task(*, viewer: Viewer, task_id: int) -> Task:
    task = task_with_parties(task_id)
    if task is None or not can_view_task(viewer, task):
        raise NotFound(f"Task {task_id} does not exist or is private.")
    return task


def access_bid(*, viewer: Viewer, bid_id: int) -> Bid:
    bid = _single_or_none(
        Bid.objects.select_related(
            "bidder__agent", *(f"task__{name}" for name in TASK_RELATED)
        ).filter(pk=bid_id)
    )
    if bid is None or not can_view_bid(viewer, bid):
        raise NotFound(f"Bid {bid_id} does not exist or is not yours.")
    return bid


def access_delivery(*, viewer: Viewer, delivery_id: int) -> Delivery:
    delivery = _single_or_none(
        Delivery.objects.select_related(*(f"task__{name}" for name in TASK_RELATED))
        .prefetch_related("files")
        .filter(pk=delivery_id)
    )
    if delivery is None or not is_task_party(viewer, delivery.task):
        raise NotFound(f"Delivery {delivery_id} does not exist or is not yours.")
    return delivery


def access_delivery_file(*, viewer: Viewer, file_id: int) -> DeliveryFile:
    stored = _single_or_none(
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


def viewer_signed_in(request: object) -> tuple[Viewer, Participant]:
    """The viewer of a ``login_required`` page and its participant."""
    viewer = viewer_for_request(request)
    assert viewer.participant is not None  # login_required lets only a signed-in user through
    return viewer, viewer.participant


# --- lists --------------------------------------------------------------------------------------


def _with_counts(queryset: QuerySet[Task]) -> QuerySet[Task]:
    # A correlated subquery, not Count() with GROUP BY: PostgreSQL then walks the ordered index,
    # stops at the page's LIMIT and counts bids for those rows only.
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
    if viewer.participant is None:
        return queryset.filter(task_visibility())
    return queryset.filter(task_visibility(own=viewer.participant.pk, family=viewer.family_id))


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


TASKS_FOR_ME_WINDOW = 200


def tasks_matching_agent(
    *,
    participant: Participant,
    limit: int = 20,
    offset: int = 0,
    min_similarity: float | None = None,
    count_cap: int | None = None,
) -> tuple[int | None, list[Task]]:
    """Open public tasks nearest in meaning to the agent's current capability profile (cosine
    distance, similarity = 1 - distance), those it is likeliest to pass first, excluding its
    owner's family's (it may not take them) and those it is barred from; one page of them, and
    how many there are (up to ``count_cap``; None without one). Vectors of another embedding
    model are never compared."""
    if participant.kind != Participant.Kind.AGENT:
        return 0, []
    profile = registry_selectors.agent_current_profile(agent=participant.agent)
    if profile is None or getattr(profile, "embedding", None) is None:
        return 0, []
    model_id = getattr(profile, "embedding_model", "")
    family = family_id(participant)
    queryset = (
        Task.objects.filter(
            state=Task.State.OPEN, visibility=Task.Visibility.PUBLIC, embedding__isnull=False
        )
        .exclude(poster=participant)
        .exclude(poster_id=family)
        .exclude(poster__agent__owner_id=family)
    )
    if model_id:
        queryset = queryset.filter(embedding_model=model_id)
    queryset = queryset.exclude(barred__contains=[participant.pk]).annotate(
        distance=CosineDistance("embedding", profile.embedding)
    )
    if min_similarity is not None:
        queryset = queryset.filter(distance__lte=1.0 - min_similarity)
    total = None
    if count_cap is not None:
        total = queryset.order_by().values("pk")[:count_cap].count()
    # The nearest TASKS_FOR_ME_WINDOW tasks are ordered by the agent's estimated chance of being
    # accepted on each (its outcomes on similar past tasks), nearer first among equals; the
    # window is fixed so pages do not overlap; beyond it, nearest first.
    window = list(
        queryset.order_by("distance", "-pk").values_list("pk", "distance")[:TASKS_FOR_ME_WINDOW]
    )
    chances = registry_selectors.estimates_for_tasks(
        agent_id=participant.agent.pk,
        task_table=Task._meta.db_table,
        task_ids=[pk for pk, _ in window],
        model=model_id,
    )
    ordered = [
        pk
        for pk, _ in sorted(
            window,
            key=lambda item: (
                -round(chances[item[0]].mean, 4) if item[0] in chances else 0.0,
                item[1],
                -item[0],
            ),
        )
    ]
    wanted = ordered[offset : offset + limit]
    if offset + limit > len(ordered) and len(ordered) == TASKS_FOR_ME_WINDOW:
        beyond = queryset.order_by("distance", "-pk").values_list("pk", flat=True)
        wanted += list(beyond[max(offset, len(ordered)) : offset + limit])
    found = _with_counts(queryset).in_bulk(wanted)
    page = [found[pk] for pk in wanted if pk in found]
    for task in page:
        chance = chances.get(task.pk)
        # Read by TaskMatchOutput: attributes of this answer's instances, not of the model.
        task.success_estimate = round(chance.mean, 4) if chance else None  # type: ignore[attr-defined]
        task.evidence = chance.inputs.evidence.text if chance else ""  # type: ignore[attr-defined]
    return total, page


# What is still someone's work: every state but the final ones.
ACTIVE_STATES = tuple(state for state in Task.State.values if state not in Task.FINAL_STATES)


def tasks_active_for(
    *, participant: Participant, role: str | None = None, since: Any = None
) -> QuerySet[Task]:
    """The participant's unfinished tasks in one list, whatever their state: those it works on
    (``role="assigned"``), those it posted (``"posted"``), or both; most recently changed first."""
    mine = {"assigned": Q(assignee=participant), "posted": Q(poster=participant)}
    condition = mine[role] if role else mine["assigned"] | mine["posted"]
    queryset = Task.objects.defer(*TASK_VECTORS).filter(condition, state__in=ACTIVE_STATES)
    if since is not None:
        queryset = queryset.filter(updated_at__gt=since)
    return _with_counts(queryset).order_by("-updated_at", "-pk")


def tasks_posted_by(*, participant: Participant) -> QuerySet[Task]:
    return _with_counts(Task.objects.filter(poster=participant)).order_by("-created_at", "-pk")


def tasks_assigned_to(*, participant: Participant) -> QuerySet[Task]:
    return _with_counts(Task.objects.filter(assignee=participant)).order_by("-updated_at", "-pk")


def bids_for_task(*, viewer: Viewer, task: Task) -> QuerySet[Bid]:
    """The bids of ``task`` that ``can_view_bid`` shows the viewer."""
    queryset = Bid.objects.filter(task=task).select_related("bidder__agent").order_by("price", "pk")
    if sees_every_bid(viewer, task):
        return queryset
    return queryset.filter(bidder_id__in=spoken_for_ids(viewer))


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


@derived_from_models
def _delivery_by_key_sql() -> tuple[str, Joined[Delivery]]:
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
    row = fetch_row(sql, [task_id, submitter_id, idempotency_key])
    return None if row is None else delivery.build(row)


def automatic_revisions_count(*, task: Task) -> int:
    """How often failed checks sent this task's deliveries back at the end of a review window."""
    return TaskEvent.objects.filter(
        task=task, kind="revision_requested", data__automatic=True
    ).count()


def revision_asked(*, task_id: int) -> Delivery | None:
    """The delivery whose revision the assignee now works on: the task's latest delivery, when
    the poster (or failed checks) sent it back. None for first work."""
    latest = _single_or_none(
        Delivery.objects.filter(task_id=task_id)
        .only("pk", "status", "review_message", "text")
        .order_by("-created_at", "-pk")[:1]
    )
    return latest if latest and latest.status == Delivery.Status.REVISION_REQUESTED else None


def deliveries_of(*, participant: Participant) -> QuerySet[Delivery]:
    return (
        Delivery.objects.filter(Q(submitter=participant) | Q(task__poster=participant))
        .select_related("task")
        .prefetch_related("files")
        .order_by("-created_at", "-pk")
    )


# Timeline events that are about one bid (``data["bid"]``): shown with the bid, or not at all.
BID_EVENT_KINDS = ("bid_placed", "bid_withdrawn")
# What any viewer of the task may read in an event's data; the rest names parties, prices,
# payouts, reasons or deliveries and is for the task's parties (``is_task_party``).
PUBLIC_EVENT_DATA = frozenset({"bounty", "subtask", "depends_on", "automatic"})


def task_events(*, viewer: Viewer, task: Task, since: Any = None) -> QuerySet[TaskEvent]:
    """The task's timeline as ``viewer`` may see it: events about bids it may not see are left
    out (``can_view_bid``); :func:`event_lens` trims what the others say."""
    queryset = TaskEvent.objects.filter(task=task).order_by("created_at", "pk")
    if since is not None:
        queryset = queryset.filter(created_at__gt=since)
    if not sees_every_bid(viewer, task):
        own_bids = list(
            Bid.objects.filter(task=task, bidder_id__in=spoken_for_ids(viewer)).values_list(
                "pk", flat=True
            )
        )
        queryset = queryset.exclude(Q(kind__in=BID_EVENT_KINDS) & ~Q(data__bid__in=own_bids))
    return queryset


@dataclass(frozen=True)
class EventLens:
    """What one viewer may read of a task's events (built once per timeline): outside the
    task's parties, an actor shows only when it is the poster (public on the task) or the
    viewer's own, and data only its public keys."""

    party: bool
    poster_id: int
    own_ids: frozenset[int]

    def show(self, event: TaskEvent) -> tuple[int | None, dict]:
        data = event.data if isinstance(event.data, dict) else {}
        if self.party:
            return event.actor_id, data
        actor = event.actor_id
        if actor is not None and actor != self.poster_id and actor not in self.own_ids:
            actor = None
        if event.kind in BID_EVENT_KINDS:  # the viewer's own bid (the others were left out)
            return actor, data
        return actor, {key: value for key, value in data.items() if key in PUBLIC_EVENT_DATA}


def task_timeline(*, viewer: Viewer, task: Task) -> list[TaskEvent]:
    """The task's events for a page: as :func:`task_events` and :func:`event_lens` show them
    (the instances carry only what the viewer may read; they are never saved)."""
    lens = event_lens(viewer=viewer, task=task)
    events = list(task_events(viewer=viewer, task=task).select_related("actor__agent"))
    for event in events:
        actor_id, event.data = lens.show(event)
        if actor_id is None:
            event.actor = None
    return events


def event_lens(*, viewer: Viewer, task: Task) -> EventLens:
    party = is_task_party(viewer, task)
    return EventLens(
        party=party,
        poster_id=task.poster_id,
        own_ids=frozenset() if party else frozenset(spoken_for_ids(viewer)),
    )


def task_children(*, task: Task) -> QuerySet[Task]:
    return (
        Task.objects.filter(parent=task)
        .select_related("assignee")
        .prefetch_related("depends_on")
        .order_by("pk")
    )


def task_siblings(*, task: Task) -> QuerySet[Task]:
    """The tasks ``task`` may wait for: the same poster's other tasks under the same parent
    (or, for a top-level task, its poster's other top-level tasks), newest first."""
    return (
        Task.objects.filter(parent_id=task.parent_id, poster_id=task.poster_id)
        .exclude(pk=task.pk)
        .defer("embedding")
        .order_by("-pk")
    )


def notices_of(participant: Participant) -> Q:
    """The participant's notices and those of the agents it owns (an agent run by the platform
    reads none itself: "add your side to the dispute" must reach its owner)."""
    owned = Agent.objects.filter(owner=participant).values("participant_id")
    return Q(recipient=participant) | Q(recipient__in=owned)


def notifications_unread_count(*, user_id: int) -> int:
    """Unread notifications of a Django user's participant and of its agents."""
    return Notification.objects.filter(
        Q(recipient__user_id=user_id) | Q(recipient__agent__owner__user_id=user_id),
        read_at__isnull=True,
    ).count()


def notifications_for(
    *,
    participant: Participant,
    limit: int | None = None,
    unread: bool = False,
    since: Any = None,
) -> QuerySet[Notification]:
    """The participant's notifications (:func:`notices_of`), newest first: the first ``limit``,
    or all to page."""
    queryset = Notification.objects.filter(notices_of(participant))
    if unread:
        queryset = queryset.filter(read_at__isnull=True)
    if since is not None:
        queryset = queryset.filter(created_at__gt=since)
    queryset = queryset.select_related("task").order_by("-created_at", "-pk")
    return queryset[:limit] if limit is not None else queryset


# --- escrow expectations (invariant 3) -----------------------------------------------------------


class _ChildrenSums(TypedDict):
    open_children: int
    spent_children: int


def _expected_escrow_queryset() -> QuerySet[WithAnnotations[Task, _ChildrenSums]]:
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
    statement, so nothing is compiled per call)."""
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


# --- disputes ----------------------------------------------------------------------------------


def most_to_assignee(*, task: Task, escrow: int) -> int:
    """The most a dispute may award the assignee: what acceptance would have paid before fees
    (the price less what subtasks spent), never the poster's margin."""
    return escrow - (task.bounty - (task.price or 0))


@dataclass(frozen=True)
class DisputeFacts:
    """What staff weigh beside a dispute: the money, the delivery, both sides and the timeline."""

    task: Task
    escrow: int
    most_to_assignee: int
    delivery: Delivery
    events: list[TaskEvent]


def dispute_facts(*, dispute: Dispute) -> DisputeFacts:
    task = dispute.task
    escrow = ledger_selectors.escrow_balance(task_ref=task.ledger_ref)
    delivery = Delivery.objects.prefetch_related("files").get(pk=dispute.delivery_id)
    return DisputeFacts(
        task=task,
        escrow=escrow,
        most_to_assignee=most_to_assignee(task=task, escrow=escrow),
        delivery=delivery,
        events=list(task_events(viewer=Viewer(participant=None, is_staff=True), task=task)),
    )
