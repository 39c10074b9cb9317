"""What each party may do with a task right now: one table, read by everything that offers or
allows an action.

The task page renders its forms from :func:`task_actions`, ``GET /api/v1/tasks/{id}/actions/``
answers from it, and the services take their states from :data:`RULES` (``states_of``), so an
action or a state added here reaches all three. ``tests/marketplace/test_action_table.py`` walks
every state (and the situations inside one: stalled work, a delivery waiting for its poster) as
every party, and checks that the page offers, and the API allows, exactly what this table says.

Every state that is not final leaves each party a way forward: work that stops moving can be
cancelled (refunded) or escalated to staff by its poster after a stated time
(:func:`work_stalls_at`), and a delivery that waits for a silent poster can be escalated by its
assignee.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache, cached_property

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from agents_registry.models import Agent, Participant
from marketplace import selectors
from marketplace.models import Bid, Delivery, Task

State = Task.State

# The parties a viewer can be (one viewer may be several: staff who also bids).
POSTER = "poster"
ASSIGNEE = "assignee"
# The human who owns the poster or the assignee when that party is an agent: tells its side of a
# dispute for it (an agent run by the platform cannot).
POSTER_OWNER = "poster_owner"
ASSIGNEE_OWNER = "assignee_owner"
PARTICIPANT = "participant"  # signed in and not the poster: may bid or claim
BIDDER = "bidder"  # has an active bid on the task
STAFF = "staff"

# Work the assignee holds and has not handed in: it can stall.
WORKING = (State.IN_PROGRESS, State.REVISION_REQUESTED)


def work_stalls_at(task: Task) -> datetime | None:
    """When work in progress counts as stalled, so its poster may cancel or escalate it: its
    deadline, or ``MARKET_STALL_HOURS`` after its last change of state, whichever comes first.
    None when the task is not being worked on."""
    if task.state not in WORKING:
        return None
    stalled = task.updated_at + timedelta(hours=settings.MARKET_STALL_HOURS)
    return min(stalled, task.deadline) if task.deadline else stalled


@dataclass
class Situation:
    """The facts the rules look at, for one task and one viewer; each is read when first asked."""

    task: Task
    participant: Participant | None
    roles: frozenset[str]
    now: datetime

    @cached_property
    def active_bids(self) -> list[Bid]:
        return list(
            Bid.objects.filter(task=self.task, status=Bid.Status.ACTIVE)
            .select_related("bidder__agent")
            .order_by("price", "pk")
        )

    @cached_property
    def own_bid(self) -> Bid | None:
        own = self.participant.pk if self.participant else None
        return next((bid for bid in self.active_bids if bid.bidder_id == own), None)

    @cached_property
    def delivery(self) -> Delivery | None:
        """The latest delivery (the one in review while the task is delivered)."""
        return Delivery.objects.filter(task=self.task).order_by("-created_at", "-pk").first()

    @cached_property
    def in_review(self) -> Delivery | None:
        delivery = self.delivery
        return delivery if delivery and delivery.status == Delivery.Status.SUBMITTED else None

    @cached_property
    def subtasks_open(self) -> bool:
        return selectors.unfinished_children_count(task=self.task) > 0

    @cached_property
    def escrow_untouched(self) -> bool:
        return selectors.task_escrow_expected(task=self.task) == self.task.bounty

    @cached_property
    def dependencies_pending(self) -> bool:
        return self.task.depends_on.exclude(state=State.ACCEPTED).exists()

    @cached_property
    def siblings(self) -> list[Task]:
        return list(selectors.task_siblings(task=self.task)[:50])

    @cached_property
    def on_silence(self) -> str | None:
        """What the end of the review window will do to the delivery in review (see
        ``services.delivery_review_window_end``)."""
        delivery = self.in_review
        if self.task.state != State.DELIVERED or delivery is None:
            return None
        if delivery.review_deadline is None:
            return "wait_for_poster"
        if delivery.check_status == Delivery.CheckStatus.PENDING:
            return "check_first"
        if delivery.check_status != Delivery.CheckStatus.FAILED:
            return "accept"
        sent_back = selectors.automatic_revisions_count(task=self.task)
        return "revision" if sent_back < settings.MARKET_AUTOMATIC_REVISIONS else "wait_for_poster"

    @property
    def may_take(self) -> bool:
        """The viewer may take work on this task (not barred from it, not a paused agent)."""
        participant = self.participant
        if participant is None or participant.pk in self.task.barred:
            return False
        return (
            participant.kind != Participant.Kind.AGENT
            or participant.agent.status == Agent.Status.ACTIVE
        )


def _always(situation: Situation) -> bool:
    return True


@dataclass(frozen=True)
class Rule:
    """``party`` may take ``action`` on a task in one of ``states`` when ``condition`` holds and,
    for an action that opens later, from ``opens_at``. ``target``: what the action names besides
    the task (one entry per bid the party may award or withdraw, the delivery in review).
    ``api``: the URL name of the API operation (None: only the staff console offers it)."""

    action: str
    party: str
    states: tuple[str, ...]
    label: str
    api: str | None
    target: str = "task"
    condition: Callable[[Situation], bool] = _always
    opens_at: Callable[[Situation], datetime | None] | None = None
    bids: Callable[[Situation], list[Bid]] | None = None


def _bidder_may_take(bid: Bid) -> bool:
    bidder = bid.bidder
    return bidder.kind != Participant.Kind.AGENT or bidder.agent.status == Agent.Status.ACTIVE


RULES: tuple[Rule, ...] = (
    Rule("publish", POSTER, (State.DRAFT,), "Publish and fund", "api-task-publish"),
    Rule("cancel", POSTER, (State.DRAFT,), "Discard the draft", "api-task-cancel"),
    Rule("cancel", POSTER, (State.OPEN, State.AWARDED), "Cancel and refund", "api-task-cancel"),
    Rule(
        "cancel",
        POSTER,
        WORKING,
        "Cancel and refund",
        "api-task-cancel",
        condition=lambda s: not s.subtasks_open,
        opens_at=lambda s: work_stalls_at(s.task),
    ),
    Rule(
        "escalate",
        POSTER,
        WORKING,
        "Escalate to staff",
        "api-task-escalate",
        condition=lambda s: s.delivery is not None and not s.subtasks_open,
        opens_at=lambda s: work_stalls_at(s.task),
    ),
    Rule(
        "escalate",
        ASSIGNEE,
        (State.DELIVERED,),
        "Escalate to staff",
        "api-task-escalate",
        condition=lambda s: s.in_review is not None and s.in_review.review_deadline is None,
    ),
    Rule(
        "award",
        POSTER,
        (State.OPEN,),
        "Award",
        "api-bid-award",
        target="bid",
        condition=lambda s: not s.dependencies_pending,
        bids=lambda s: [bid for bid in s.active_bids if _bidder_may_take(bid)],
    ),
    Rule(
        "bid",
        PARTICIPANT,
        (State.OPEN,),
        "Place bid",
        "api-task-bids",
        condition=lambda s: s.may_take and s.own_bid is None,
    ),
    Rule(
        "claim",
        PARTICIPANT,
        (State.OPEN,),
        "Claim",
        "api-task-claim",
        condition=lambda s: s.may_take and not s.dependencies_pending,
    ),
    Rule(
        "withdraw",
        BIDDER,
        (State.OPEN,),
        "Withdraw my bid",
        "api-bid-withdraw",
        target="bid",
        bids=lambda s: [s.own_bid] if s.own_bid else [],
    ),
    Rule(
        "start", ASSIGNEE, (State.AWARDED, State.REVISION_REQUESTED), "Start work", "api-task-start"
    ),
    Rule(
        "abandon",
        ASSIGNEE,
        (State.AWARDED, *WORKING),
        "Give the task up",
        "api-task-abandon",
        condition=lambda s: not s.subtasks_open and s.escrow_untouched,
    ),
    Rule(
        "deliver",
        ASSIGNEE,
        (State.IN_PROGRESS,),
        "Deliver",
        "api-task-deliveries",
        condition=lambda s: not s.subtasks_open,
    ),
    Rule("subtask", ASSIGNEE, (State.IN_PROGRESS,), "Post the subtask", "api-subtasks"),
    Rule(
        "depend",
        POSTER,
        (State.OPEN,),
        "Wait for it",
        "api-task-dependencies",
        condition=lambda s: bool(s.siblings),
    ),
    *(
        Rule(
            action,
            POSTER,
            (State.DELIVERED,),
            label,
            api,
            target="delivery",
            condition=lambda s: s.in_review is not None,
        )
        for action, label, api in (
            ("accept", "Accept and pay", "api-delivery-accept"),
            ("revise", "Request revision", "api-delivery-revision"),
            ("reject", "Reject", "api-delivery-reject"),
        )
    ),
    *(
        Rule("answer", party, (State.DISPUTED,), "Save my side", "api-dispute-evidence")
        for party in (POSTER, ASSIGNEE, POSTER_OWNER, ASSIGNEE_OWNER)
    ),
    Rule("resolve", STAFF, (State.DISPUTED,), "Resolve in the staff console", None),
)


@cache  # RULES is a constant: the answer never changes while the process lives
def states_of(action: str, party: str | None = None) -> tuple[str, ...]:
    """Every state in which some rule lets ``party`` (any party by default) take ``action``: what
    the action's service requires of the task before its own, finer checks."""
    states = [
        state
        for rule in RULES
        if rule.action == action and party in (None, rule.party)
        for state in rule.states
    ]
    if not states:
        raise KeyError(f"No rule for {action!r}.")
    return tuple(dict.fromkeys(states))


@dataclass(frozen=True)
class Allowed:
    """An action the viewer may take now: the page's form posts to ``page_path`` (with the
    target as ``bid`` or ``delivery``), an API client to ``api_path``."""

    action: str
    label: str
    target: str
    target_id: int
    api_path: str | None
    page_path: str
    console_path: str | None = None


@dataclass(frozen=True)
class Upcoming:
    """An action the viewer may take from ``opens_at`` if nothing changes before."""

    action: str
    label: str
    opens_at: datetime


@dataclass(frozen=True)
class TaskActions:
    allowed: tuple[Allowed, ...]
    upcoming: tuple[Upcoming, ...]
    situation: Situation = field(repr=False, compare=False)

    @cached_property
    def names(self) -> frozenset[str]:
        return frozenset(item.action for item in self.allowed)

    def targets(self, action: str) -> list[int]:
        return [item.target_id for item in self.allowed if item.action == action]

    @cached_property
    def first(self) -> dict[str, Allowed]:
        """Each allowed action's first entry, by name (the templates' view)."""
        entries: dict[str, Allowed] = {}
        for item in self.allowed:
            entries.setdefault(item.action, item)
        return entries

    @cached_property
    def award_bids(self) -> frozenset[int]:
        return frozenset(self.targets("award"))

    @cached_property
    def withdraw_bids(self) -> frozenset[int]:
        return frozenset(self.targets("withdraw"))

    @cached_property
    def side(self) -> str | None:
        """The side of a dispute the viewer tells: "poster" or "assignee"."""
        roles = self.situation.roles
        if roles & {POSTER, POSTER_OWNER}:
            return "poster"
        if roles & {ASSIGNEE, ASSIGNEE_OWNER}:
            return "assignee"
        return None

    @cached_property
    def opens(self) -> dict[str, Upcoming]:
        return {item.action: item for item in self.upcoming}


def roles_of(viewer: selectors.Viewer, task: Task) -> frozenset[str]:
    roles = set()
    participant = viewer.participant
    if viewer.is_staff:
        roles.add(STAFF)
    if participant is not None:
        if participant.pk == task.poster_id:
            roles.add(POSTER)
        else:
            roles.add(PARTICIPANT)
        if participant.pk == task.assignee_id:
            roles.add(ASSIGNEE)
        for party, role in ((task.poster, POSTER_OWNER), (task.assignee, ASSIGNEE_OWNER)):
            owner_of = party is not None and party.pk != participant.pk
            if owner_of and selectors.speaks_for(viewer, party):
                roles.add(role)
    return frozenset(roles)


def _paths(rule: Rule, task: Task, target_id: int) -> tuple[str | None, str | None]:
    if rule.api is None:
        dispute = task.dispute
        return None, reverse("admin:marketplace_dispute_resolve", args=[dispute.pk])
    keyword = {"task": "task_id", "bid": "bid_id", "delivery": "delivery_id"}[rule.target]
    return reverse(rule.api, kwargs={keyword: target_id}), None


def task_actions(
    *, viewer: selectors.Viewer, task: Task, now: datetime | None = None
) -> TaskActions:
    """What ``viewer`` may do with ``task`` now, and what it may do later (with the time)."""
    situation = Situation(
        task=task,
        participant=viewer.participant,
        roles=roles_of(viewer, task),
        now=now or timezone.now(),
    )
    # Bids are active only while the task is open: only then is a bid worth reading for.
    if task.state == State.OPEN and viewer.participant and situation.own_bid is not None:
        situation.roles |= {BIDDER}
    allowed: list[Allowed] = []
    upcoming: list[Upcoming] = []
    for rule in RULES:
        if rule.party not in situation.roles or task.state not in rule.states:
            continue
        if not rule.condition(situation):
            continue
        if rule.opens_at is not None:
            opens = rule.opens_at(situation)
            if opens is None:
                continue
            if opens > situation.now:
                upcoming.append(Upcoming(rule.action, rule.label, opens))
                continue
        if rule.target == "bid":
            target_ids = [bid.pk for bid in rule.bids(situation)] if rule.bids else []
        elif rule.target == "delivery":
            assert situation.in_review is not None  # a delivery rule's condition asks for one
            target_ids = [situation.in_review.pk]
        else:
            target_ids = [task.pk]
        for target_id in target_ids:
            api_path, console_path = _paths(rule, task, target_id)
            allowed.append(
                Allowed(
                    action=rule.action,
                    label=rule.label,
                    target=rule.target,
                    target_id=target_id,
                    api_path=api_path,
                    page_path=reverse("task-act", args=[task.pk, rule.action]),
                    console_path=console_path,
                )
            )
    return TaskActions(allowed=tuple(allowed), upcoming=tuple(upcoming), situation=situation)
