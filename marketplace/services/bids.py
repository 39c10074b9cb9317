"""Bids and awards: place, withdraw, award by hand, claim at the asking price, automatic award.

A task is awarded once: every award path locks the task row and moves it from ``open`` under that
lock, and the database allows one awarded bid per task.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from pgvector.django import CosineDistance

from agents_registry import embeddings, estimates
from agents_registry import selectors as registry_selectors
from agents_registry import services as registry_services
from agents_registry.models import Participant
from agents_registry.sweeps import sweep
from core.prepared import insert_rows, violated_constraint
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
    notify,
    require_active_agent,
    require_actor,
    require_state,
    task_lock,
    task_lock_as,
    transition_record,
)

# How an award weighs a bid, SALE-style value against cost: the net value of the bid (the
# bidder's P(accepted) on this task, from its outcomes on the nearest past tasks, times the value
# of success, minus the bid's price, as a share of that value), plus small terms for a plan close
# to plans that won and were accepted before and an ETA that fits the deadline.
AUCTION_WEIGHTS = {"net_value": 1.0, "plan_memory": 0.1, "timeliness": 0.05}


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


def _bid_lock(bid_id: int) -> Bid:
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
                state=None,
                actor=bidder,
                notified=task.poster,
                notice=f"{bidder.display_name} bid {price:,} on “{task.title}”.",
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
        transition_record(bid.task, kind="bid_withdrawn", state=None, actor=actor, bid=bid.pk)
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
        # What the market would have chosen beside what the poster chose: the regret's evidence.
        _record_choice(
            task=task, scored=bids_score(task=task, embed_plans=False), chosen=bid, purpose="award"
        )
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
        _record_choice(
            task=task,
            scored=bids_score(task=task, bids=[bid], embed_plans=False),
            chosen=bid,
            purpose="claim",
        )
        _award(task=task, bid=bid, actor=claimant, how="claimed")
        return task


def _award(*, task: Task, bid: Bid, actor: Participant | None, how: str) -> None:
    Bid.objects.filter(task=task, status=Bid.Status.ACTIVE).exclude(pk=bid.pk).update(
        status=Bid.Status.LOST
    )
    Bid.objects.filter(pk=bid.pk).update(status=Bid.Status.AWARDED)
    bid.status = Bid.Status.AWARDED
    task.assignee = bid.bidder
    task.price = bid.price
    task.awarded_at = timezone.now()
    task.bidding_closes_at = None
    task.execution_ref = award_handler_call(task=task, assignee=bid.bidder)
    transition_record(
        task,
        kind="awarded",
        state=Task.State.AWARDED,
        update_fields=("assignee", "price", "awarded_at", "bidding_closes_at", "execution_ref"),
        actor=actor,
        notified=bid.bidder,
        notice=f"You were awarded “{task.title}” at {bid.price:,} credits ({how}).",
        bid=bid.pk,
        assignee=bid.bidder_id,
        how=how,
    )
    agent_load_change(participant=bid.bidder, delta=1)
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
    inputs: dict | None = None  # the bidder's estimate inputs (agents only), for the replay


def _cosine(a: object, b: object) -> float:
    left, right = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    denominator = float(np.linalg.norm(left) * np.linalg.norm(right))
    return float(left @ right / denominator) if denominator else 0.0


def task_preference(task: Task) -> float:
    """The poster's knob for this task (``auto_award.preference``), else the market's default."""
    preference = (task.auto_award or {}).get("preference")
    return float(preference) if preference is not None else settings.MATCH_PREFERENCE


def _ranking_parameters(task: Task) -> dict:
    """How the bidders' estimates are scored; recorded so the decision replays."""
    return {
        "budget": int(task.bounty),
        "preference": task_preference(task),
        "exploration": settings.MATCH_EXPLORATION,
        "global_weight": settings.MATCH_GLOBAL_WEIGHT,
        "seed": secrets.randbits(32),
        "kernel": estimates.kernel_parameters(),
    }


def _bidder_estimates(task: Task, bids: list[Bid], ranking: dict) -> dict[int, estimates.Scored]:
    """Each agent bidder's estimate for this task at its bid's price, in one query, scored."""
    prices = {
        bid.bidder.agent.pk: bid.price for bid in bids if bid.bidder.kind == Participant.Kind.AGENT
    }
    if not prices or task.embedding is None:
        return {}
    found = registry_selectors.estimates_for_agents(
        vector_literal="[" + ",".join(f"{v:.7g}" for v in np.asarray(task.embedding)) + "]",
        model=task.embedding_model or embeddings.embedding_model_id(),
        agent_ids=list(prices),
        prices=prices,
    )
    return {
        agent_id: estimates.score(
            estimate,
            budget=ranking["budget"],
            preference=ranking["preference"],
            exploration=ranking["exploration"],
            seed=ranking["seed"],
        )
        for agent_id, estimate in found.items()
    }


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


def bids_score(
    *, task: Task, bids: list[Bid] | None = None, embed_plans: bool = True
) -> tuple[list[BidScore], dict]:
    """Every active bid (or ``bids``) scored, best first (ties go to the earlier bid), and the
    ranking parameters (seed included) the bidders' estimates were scored with."""
    if bids is None:
        bids = list(
            Bid.objects.filter(task=task, status=Bid.Status.ACTIVE)
            .select_related("bidder__agent")
            .order_by("created_at", "pk")
        )
    if embed_plans:
        _embed_plans(bids)
    ranking = _ranking_parameters(task)
    value = estimates.value_of_success(budget=ranking["budget"], preference=ranking["preference"])
    scored_agents = _bidder_estimates(task, bids, ranking)
    hours_left = (task.deadline - timezone.now()).total_seconds() / 3600 if task.deadline else None
    scored = []
    for bid in bids:
        agent_id = bid.bidder.agent.pk if bid.bidder.kind == Participant.Kind.AGENT else None
        estimate = scored_agents.get(agent_id) if agent_id else None
        factors = {
            # People (and agents without a vector) get the neutral prior's chance.
            "net_value": estimate.score if estimate else 0.5 - bid.price / value,
            "success": estimate.estimate.mean if estimate else 0.5,
            "plan_memory": _plan_memory(task, bid),
            "timeliness": (
                1.0 if hours_left is None else max(0.0, min(1.0, hours_left / bid.eta_hours - 1))
            ),
        }
        total = sum(AUCTION_WEIGHTS[name] * factors[name] for name in AUCTION_WEIGHTS)
        scored.append(
            BidScore(
                bid=bid,
                factors=factors,
                score=round(total, 6),
                inputs=estimate.estimate.inputs.as_dict() if estimate else None,
            )
        )
    # Ties go to the earlier bid (ids grow with time; the replay of the decision sorts the same).
    scored.sort(key=lambda item: (-item.score, item.bid.pk))
    return scored, ranking


def _bids_record(scored: list[BidScore]) -> list[dict]:
    return [
        {
            "bid": item.bid.pk,
            "bidder": item.bid.bidder_id,
            "price": item.bid.price,
            "factors": item.factors,
            "score": item.score,
            "inputs": item.inputs,
        }
        for item in scored
    ]


def _record_choice(
    *, task: Task, scored: tuple[list[BidScore], dict], chosen: Bid, purpose: str
) -> None:
    """A decision record of an award by hand or a claim: the bids as the market ranks them and
    the one chosen (the outcome that follows links to it)."""
    items, ranking = scored
    registry_services.decision_record_auction(
        subject_ref=task.ledger_ref,
        purpose=purpose,
        weights=AUCTION_WEIGHTS,
        bids=_bids_record(items),
        chosen_bid=chosen.pk,
        chosen_agent_id=(
            chosen.bidder.agent.pk if chosen.bidder.kind == Participant.Kind.AGENT else None
        ),
        ranking=ranking,
    )


def _auto_award_locked(*, task: Task) -> bool:
    if task.state != Task.State.OPEN:
        return False
    if task.depends_on.exclude(state=Task.State.ACCEPTED).exists():
        return False
    everything, ranking = bids_score(task=task)
    scored = [
        item
        for item in everything
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
        bids=_bids_record(scored),
        chosen_bid=best.bid.pk,
        chosen_agent_id=chosen_agent,
        ranking=ranking,
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
        transition_record(
            task,
            kind="auto_award_skipped",
            state=None,
            update_fields=("bidding_closes_at",),
            reason="no eligible bids",
        )
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
