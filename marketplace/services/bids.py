"""Bids and awards: place, withdraw, award by hand, claim at the asking price, automatic award.

A task is awarded once: every award path locks the task row and moves it from ``open`` under that
lock, and the database allows one awarded bid per task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.db import IntegrityError, transaction
from django.utils import timezone
from pgvector.django import CosineDistance

from agents_registry import embeddings
from agents_registry import selectors as registry_selectors
from agents_registry import services as registry_services
from agents_registry.models import Participant
from agents_registry.prepared import insert_rows, violated_constraint
from agents_registry.sweeps import sweep
from marketplace.actions import states_of
from marketplace.exceptions import (
    DependenciesPending,
    InvalidInput,
    InvalidTransition,
    NotAllowed,
    NotFound,
)
from marketplace.models import Bid, Task
from marketplace.selectors import Viewer, can_view_task, family_id
from marketplace.services import validation
from marketplace.services.common import (
    agent_load_change,
    award_handler_call,
    event_record,
    notify,
    require_active_agent,
    require_actor,
    require_state,
    task_lock,
    task_lock_as,
    transition_record,
)

# How the automatic award weighs a bid: the matcher's view of the bidder, the price against the
# bounty, how close the plan is to plans that won and were accepted before, and the ETA against
# the deadline. Weights sum to 1 so a score reads as a fraction.
AUCTION_WEIGHTS = {"matcher": 0.4, "price": 0.3, "plan_memory": 0.2, "timeliness": 0.1}


def _check_can_take(*, task: Task, participant: Participant) -> None:
    if participant.pk == task.poster_id:
        raise NotAllowed("You posted this task; you cannot bid on or claim it.")
    one_owner = family_id(participant) == family_id(task.poster)
    if one_owner and not task.internal:
        raise NotAllowed(
            "You and the poster belong to one owner: dealing with yourself is refused (it would"
            " move reputation for nothing). The poster can post the work as internal instead."
        )
    if task.internal and not one_owner:
        raise NotAllowed("This task is internal: only its poster's own agents may take it.")
    if participant.pk in task.barred:
        raise NotAllowed("You abandoned this task before and may not take it again.")
    if not can_view_task(Viewer(participant=participant), task):
        raise NotAllowed("This task is private to its poster.")
    require_active_agent(participant)


def _check_dependencies(task: Task) -> None:
    pending = list(task.depends_on.exclude(state=Task.State.ACCEPTED).values_list("pk", flat=True))
    if pending:
        raise DependenciesPending(
            "This subtask waits for its dependencies to be accepted: "
            + ", ".join(f"#{pk}" for pk in pending)
            + "."
        )


def _bid_lock(bid_id: int | None) -> Bid:
    bid = (
        Bid.objects.select_for_update(of=("self",))
        .select_related("bidder__agent", "task")
        .filter(pk=bid_id)
        .first()
    )
    if bid is None:
        raise NotFound(f"Bid {bid_id} does not exist.")
    return bid


def bid_place(
    *,
    task: Task,
    bidder: Participant,
    price: int,
    eta_hours: int,
    plan: str,
    viewer: Viewer | None = None,
) -> Bid:
    """``viewer``: the API caller, for whom a task it may not see does not exist."""
    price = validation.clean_positive_int(price, field="price")
    eta_hours = validation.clean_positive_int(
        eta_hours, field="eta_hours", maximum=validation.MAX_ETA_HOURS
    )
    plan = validation.clean_text(plan, field="plan", maximum=validation.MAX_PLAN)
    try:
        with transaction.atomic():
            task = task_lock_as(viewer, task.pk)
            require_state(task, "bid on", *states_of("bid"))
            _check_can_take(task=task, participant=bidder)
            if price > task.bounty:
                raise InvalidInput(f"price must not exceed the bounty of {task.bounty}.")
            bid = Bid(task=task, bidder=bidder, price=price, eta_hours=eta_hours, plan=plan)
            insert_rows(Bid, [bid])
            transition_record(
                task,
                kind="bid_placed",
                actor=bidder,
                notified=task.poster,
                notice=f"{bidder.display_name} bid {price:,} on “{task.title}”.",
                fields=(),
                bid=bid.pk,
                price=price,
            )
            after = task.auto_award.get("after_bids")
            if after and Bid.objects.filter(task=task, status=Bid.Status.ACTIVE).count() >= after:
                _auto_award_locked(task=task)
                bid.refresh_from_db()
            return bid
    except IntegrityError as error:
        if violated_constraint(error) != "bid_one_active_per_bidder":
            raise
        raise InvalidInput(
            "You already have an active bid on this task; withdraw it before bidding again."
        ) from None


def bid_withdraw(*, bid: Bid, actor: Participant) -> Bid:
    with transaction.atomic():
        task_lock(bid.task_id)  # the task first: an award of this bid holds the same lock
        bid = _bid_lock(bid.pk)
        require_actor(actor, bid.bidder_id, "withdraw this bid", "bidder")
        if bid.status != Bid.Status.ACTIVE:
            raise InvalidTransition(
                f"This bid is {bid.status}; only an active bid can be withdrawn."
            )
        bid.status = Bid.Status.WITHDRAWN
        bid.save(update_fields=["status"])
        event_record(task=bid.task, kind="bid_withdrawn", actor=actor, bid=bid.pk)
        return bid


def bid_award(*, bid: Bid, actor: Participant) -> Task:
    """The poster picks a bid by hand."""
    with transaction.atomic():
        task = task_lock(bid.task_id)
        require_actor(actor, task.poster_id, "award this task", "poster")
        require_state(task, "award", *states_of("award"))
        bid = _bid_lock(bid.pk)
        if bid.status != Bid.Status.ACTIVE:
            raise InvalidTransition(f"This bid is {bid.status}; only an active bid can win.")
        _check_dependencies(task)
        _check_can_take(task=task, participant=bid.bidder)
        _embed_plans([bid])  # the auctions to come compare their plans with this winner's
        _award(task=task, bid=bid, actor=actor, how="by hand")
        return task


def task_claim(*, task: Task, claimant: Participant) -> Task:
    """Take the task at its asking price (the bounty), first come first served."""
    with transaction.atomic():
        task = task_lock(task.pk)
        require_state(task, "claim", *states_of("claim"))
        _check_can_take(task=task, participant=claimant)
        _check_dependencies(task)
        Bid.objects.filter(task=task, bidder=claimant, status=Bid.Status.ACTIVE).update(
            status=Bid.Status.WITHDRAWN
        )
        bid = Bid.objects.create(
            task=task,
            bidder=claimant,
            price=task.bounty,
            eta_hours=1,
            plan="Claimed at the asking price.",
        )
        _award(task=task, bid=bid, actor=claimant, how="claimed")
        return task


def _award(*, task: Task, bid: Bid, actor: Participant | None, how: str) -> None:
    Bid.objects.filter(task=task, status=Bid.Status.ACTIVE).exclude(pk=bid.pk).update(
        status=Bid.Status.LOST
    )
    Bid.objects.filter(pk=bid.pk).update(status=Bid.Status.AWARDED)
    bid.status = Bid.Status.AWARDED
    task.state = Task.State.AWARDED
    task.assignee = bid.bidder
    task.price = bid.price
    task.awarded_at = timezone.now()
    task.bidding_closes_at = None
    task.execution_ref = award_handler_call(task=task, assignee=bid.bidder)
    task.save(
        update_fields=[
            "state",
            "assignee",
            "price",
            "awarded_at",
            "bidding_closes_at",
            "execution_ref",
            "updated_at",
        ]
    )
    agent_load_change(participant=bid.bidder, delta=1)
    event_record(
        task=task, kind="awarded", actor=actor, bid=bid.pk, assignee=bid.bidder_id, how=how
    )
    notify(
        recipient=bid.bidder,
        task=task,
        message=f"You were awarded “{task.title}” at {bid.price:,} credits ({how}).",
    )
    if actor is None or actor.pk != task.poster_id:
        notify(
            recipient=task.poster,
            task=task,
            message=f"“{task.title}” was awarded to {bid.bidder.display_name} ({how}).",
        )


# --- automatic award ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BidScore:
    bid: Bid
    factors: dict[str, float]
    score: float


def _cosine(a: object, b: object) -> float:
    left, right = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    denominator = float(np.linalg.norm(left) * np.linalg.norm(right))
    return float(left @ right / denominator) if denominator else 0.0


def _matcher_scores(task: Task, bids: list[Bid]) -> dict[int, float]:
    """The matcher's score of each bidding agent for this task, scaled to 0..1 among them."""
    agent_ids = [bid.bidder.agent.pk for bid in bids if bid.bidder.kind == Participant.Kind.AGENT]
    if not agent_ids or task.embedding is None:
        return {}
    result = registry_selectors.match_agents(
        embedding=task.embedding, budget=task.bounty, deadline=task.deadline, limit=200
    )
    raw = {c.agent.pk: float(c.score) for c in result.candidates if c.agent.pk in agent_ids}
    if not raw:
        return {}
    low, high = min(raw.values()), max(raw.values())
    return {key: (value - low) / (high - low) if high > low else 1.0 for key, value in raw.items()}


def _embed_plans(bids: Sequence[Bid]) -> None:
    """Plans are embedded when an auction needs them, not when a bid arrives (embedding is the
    costly part of a bid): in one batch for the bids an automatic award scores, and for the bid
    a poster picks by hand."""
    missing = [bid for bid in bids if bid.plan_embedding is None]
    if not missing:
        return
    vectors = embeddings.embed_texts([bid.plan for bid in missing])
    for bid, vector in zip(missing, vectors, strict=True):
        bid.plan_embedding = vector
    Bid.objects.bulk_update(missing, ["plan_embedding"])


def _plan_memory(task: Task, bid: Bid) -> float:
    """How close the plan is to plans that won earlier auctions and were then accepted."""
    if bid.plan_embedding is None:
        return 0.0
    nearest = (
        Bid.objects.filter(
            status=Bid.Status.AWARDED,
            task__state=Task.State.ACCEPTED,
            plan_embedding__isnull=False,
        )
        .exclude(task=task)
        .annotate(distance=CosineDistance("plan_embedding", bid.plan_embedding))
        .order_by("distance")
        .values_list("distance", flat=True)
        .first()
    )
    return max(0.0, 1.0 - float(nearest)) if nearest is not None else 0.0


def bids_score(*, task: Task) -> list[BidScore]:
    bids = list(
        Bid.objects.filter(task=task, status=Bid.Status.ACTIVE)
        .select_related("bidder__agent")
        .order_by("created_at", "pk")
    )
    _embed_plans(bids)
    matcher = _matcher_scores(task, bids)
    hours_left = (task.deadline - timezone.now()).total_seconds() / 3600 if task.deadline else None
    scored = []
    for bid in bids:
        agent_id = bid.bidder.agent.pk if bid.bidder.kind == Participant.Kind.AGENT else None
        factors = {
            # Humans and agents unknown to the matcher get a neutral middle score.
            "matcher": matcher.get(agent_id, 0.5) if agent_id else 0.5,
            "price": 1.0 - bid.price / task.bounty,
            "plan_memory": _plan_memory(task, bid),
            "timeliness": (
                1.0 if hours_left is None else max(0.0, min(1.0, hours_left / bid.eta_hours - 1))
            ),
        }
        total = sum(AUCTION_WEIGHTS[name] * value for name, value in factors.items())
        scored.append(BidScore(bid=bid, factors=factors, score=round(total, 6)))
    # Ties go to the earlier bid.
    scored.sort(key=lambda item: -item.score)
    return scored


def _auto_award_locked(*, task: Task) -> bool:
    if task.state != Task.State.OPEN:
        return False
    if task.depends_on.exclude(state=Task.State.ACCEPTED).exists():
        return False
    scored = [
        item
        for item in bids_score(task=task)
        if item.bid.bidder_id not in task.barred and item.bid.bidder_id != task.poster_id
    ]
    if not scored:
        return False
    for item in scored:
        Bid.objects.filter(pk=item.bid.pk).update(score=item.score)
    best = scored[0]
    chosen_agent = best.bid.bidder.agent.pk if best.bid.bidder.kind == "agent" else None
    registry_services.decision_record_auction(
        subject_ref=task.ledger_ref,
        weights=AUCTION_WEIGHTS,
        bids=[
            {
                "bid": item.bid.pk,
                "bidder": item.bid.bidder_id,
                "price": item.bid.price,
                "factors": item.factors,
                "score": item.score,
            }
            for item in scored
        ],
        chosen_bid=best.bid.pk,
        chosen_agent_id=chosen_agent,
    )
    _award(task=task, bid=best.bid, actor=None, how="automatic")
    return True


def task_auto_award(*, task_id: int) -> bool:
    """Award the best bid of a task whose bidding window closed; no bids leaves it open for
    awards by hand. Idempotent and safe to run twice at once."""
    with transaction.atomic():
        task = task_lock(task_id)
        if (
            task.state != Task.State.OPEN
            or task.bidding_closes_at is None
            or task.bidding_closes_at > timezone.now()
        ):
            return False
        if _auto_award_locked(task=task):
            return True
        task.bidding_closes_at = None
        task.save(update_fields=["bidding_closes_at", "updated_at"])
        event_record(task=task, kind="auto_award_skipped", reason="no eligible bids")
        return False


def tasks_auto_award_due() -> int:
    """Beat: award the tasks whose bidding window has closed; one that fails is logged and left
    for the next round."""
    due = Task.objects.filter(
        state=Task.State.OPEN, bidding_closes_at__lte=timezone.now()
    ).values_list("pk", flat=True)
    return sum(
        bool(awarded)
        for awarded in sweep(list(due), lambda pk: task_auto_award(task_id=pk), what="task")
    )
