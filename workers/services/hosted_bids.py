"""Hosted agents bid on the open tasks that match them.

A hosted agent (built-in, HTTP or OpenAI-compatible) has no one polling the market for it, so the
market bids for it: when a public task is posted, the best-matching hosted agents (cost-biased
ranking of the registry, over a similarity floor so they bid only on work they can do) place a bid
at their asking price, with a plan taken from their capability profile. The poster then awards by
hand or lets auto-award choose. An owner opts an agent out with ``runtime_config["auto_bid"] =
false``. The market calls :func:`hosted_bids_queue` from ``task_post`` (the explicit
``MARKET_POST_HANDLER`` hook); the bids are placed by a worker after the commit. Which agents bid
is decided by :func:`auto_bid_verdicts` alone, over the ranking of :func:`hosted_match` with the
exploration draw seeded by the task's idempotency key (the post form's per-draft key): the match
previews call the same two, so what they promise is what posting brings.

Matching skips agents at their concurrency limit, so a task posted while every fitting hosted
agent was busy got no bid. :func:`hosted_bids_retry` offers such tasks again (open, public,
recent, no hosted agent's bid yet): beat runs it every ``HOSTED_BIDS_RETRY_INTERVAL_SECONDS``,
and an accepted delivery (which frees its agent's slot) queues it at once.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from redis.exceptions import RedisError

from agents_registry import estimates, queueing
from agents_registry import selectors as registry_selectors
from agents_registry import services as registry_services
from agents_registry.matching import Candidate, MatchResult
from marketplace import services as market_services
from marketplace.exceptions import MarketError
from marketplace.models import Bid, Task
from workers.services.executions import HOSTED_RUNTIMES
from workers.services.outbox import outbox_send_on_commit

logger = logging.getLogger(__name__)


def hosted_bids_queue(*, task: Any) -> None:
    """Called inside ``task_post``'s transaction: queue the bidding for after the commit."""
    if task.visibility != Task.Visibility.PUBLIC:
        return
    # Through the outbox: a task posted while the broker is down gets its bids once it is back.
    outbox_send_on_commit("workers.hosted_bids_place", kwargs={"task_id": task.pk})


HOSTED_BIDS_RETRY_TASK = "workers.hosted_bids_retry"


RETRY_DEBOUNCE_KEY = "workers:hosted-bids-retry-queued"
RETRY_DEBOUNCE_SECONDS = 5


def hosted_bids_retry_queue() -> None:
    """Capacity may have freed (a delivery accepted): offer the unbid tasks again after the
    commit, at most once per ``RETRY_DEBOUNCE_SECONDS`` (a burst of acceptances asks for one
    sweep). A lost message costs only a beat interval: no outbox row for it."""
    transaction.on_commit(_retry_soon)


def _retry_soon() -> None:
    try:
        first = cache.add(RETRY_DEBOUNCE_KEY, 1, timeout=RETRY_DEBOUNCE_SECONDS)
    except RedisError:
        return  # beat's sweep comes anyway
    if first:
        queueing.send(HOSTED_BIDS_RETRY_TASK, kwargs={})


def hosted_bids_retry(*, now: Any = None, limit: int = 50) -> int:
    """Offer again the open public tasks of the last ``HOSTED_BIDS_RETRY_HOURS`` that no hosted
    agent bid on (oldest first, ``limit`` per round); the number of bids placed. Tasks younger
    than a relay interval are left to their own post message."""
    now = now or timezone.now()
    hosted_bid = Bid.objects.filter(task=OuterRef("pk"), bidder__agent__runtime__in=HOSTED_RUNTIMES)
    due = (
        Task.objects.filter(
            state=Task.State.OPEN,
            visibility=Task.Visibility.PUBLIC,
            embedding__isnull=False,
            created_at__gte=now - timedelta(hours=settings.HOSTED_BIDS_RETRY_HOURS),
            created_at__lte=now - timedelta(seconds=settings.OUTBOX_RELAY_INTERVAL_SECONDS),
        )
        .exclude(Exists(hosted_bid))
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(len(hosted_bids_place(task_id=task_id)) for task_id in due)


def _plan(description: str) -> str:
    first = description.split(". ")[0].strip().rstrip(".")
    return f"I will do this as my profile says: {first}."[:1000]


def auto_bid_seed(*, poster_id: int, key: str | None) -> int | None:
    """The exploration seed of one draft: a stable hash of its poster and form key (the task's
    idempotency key), so the preview while typing and the bids after posting draw alike."""
    if not key:
        return None
    digest = hashlib.sha256(f"{poster_id}:{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def hosted_match(
    *,
    poster: Any,
    budget: int,
    deadline: datetime | None = None,
    seed: int | None = None,
    text: str | None = None,
    embedding: Sequence[float] | None = None,
) -> MatchResult:
    """The ranking hosted bidding uses; the previews call it with the draft's text and seed."""
    return registry_selectors.match_agents(
        text=text,
        embedding=embedding,
        budget=budget,
        deadline=deadline,
        exclude_agent_ids=_agents_of(poster) if poster is not None else [],
        limit=settings.HOSTED_AUTO_BID_LIMIT * 3,
        seed=seed,
    )


@dataclass(frozen=True)
class AutoBid:
    will_bid: bool
    reason: str


def auto_bid_verdicts(candidates: Sequence[Candidate]) -> list[AutoBid]:
    """For each ranked candidate, whether the market bids for it when the task is posted, and
    why: the one rule that both the bidding and the previews follow."""
    floor = settings.HOSTED_AUTO_BID_MIN_SIMILARITY
    limit = settings.HOSTED_AUTO_BID_LIMIT
    verdicts = []
    bidding = 0
    for candidate in candidates:
        agent = candidate.agent
        if agent.runtime not in HOSTED_RUNTIMES:
            verdict = AutoBid(False, "Not hosted: its owner decides whether to bid.")
        elif not (agent.runtime_config or {}).get("auto_bid", True):
            verdict = AutoBid(False, "Its owner turned automatic bids off.")
        elif candidate.similarity < floor:
            verdict = AutoBid(
                False,
                f"Similarity {candidate.similarity:.2f} is below the {floor:.2f}"
                " that hosted agents need to bid.",
            )
        elif bidding >= limit:
            verdict = AutoBid(
                False, f"Only the {limit} best-ranked hosted agents bid automatically."
            )
        else:
            bidding += 1
            verdict = AutoBid(True, f"Bids {candidate.price} credits automatically on posting.")
        verdicts.append(verdict)
    return verdicts


def preview_context(result: MatchResult | None) -> dict[str, Any]:
    """What a match preview's legend and its "no agent matches well" line need."""
    floor = settings.HOSTED_AUTO_BID_MIN_SIMILARITY
    context: dict[str, Any] = {"floor": floor, "auto_bid_limit": settings.HOSTED_AUTO_BID_LIMIT}
    if result is None:
        return context
    parameters = result.parameters
    best = max((candidate.similarity for candidate in result.candidates), default=None)
    context.update(
        matches_well=best is not None and best >= floor,
        best_similarity=best,
        exploration_weight=result.weights.get("exploration", 0.0),
        preference=parameters.get("preference"),
        value_of_success=estimates.value_of_success(
            budget=parameters["budget"], preference=parameters["preference"]
        )
        if "preference" in parameters
        else None,
    )
    return context


def hosted_bids_place(*, task_id: int) -> list[Bid]:
    """Place the bids of the matching hosted agents. Idempotent: an agent that already bid is
    refused by the market (one active bid per bidder) and skipped; a closed task gets none."""
    task = Task.objects.filter(pk=task_id, state=Task.State.OPEN).first()
    if task is None or task.embedding is None:
        return []
    result = hosted_match(
        poster=task.poster,
        embedding=list(task.embedding),
        budget=task.bounty,
        deadline=task.deadline,
        seed=auto_bid_seed(poster_id=task.poster_id, key=task.idempotency_key),
    )
    chosen = [
        candidate
        for candidate, verdict in zip(
            result.candidates, auto_bid_verdicts(result.candidates), strict=True
        )
        if verdict.will_bid
    ]
    bids = []
    for candidate in chosen:
        profile = candidate.profile
        try:
            bids.append(
                market_services.bid_place(
                    task=task,
                    bidder=candidate.agent.participant,
                    price=candidate.price,
                    eta_hours=max(1, math.ceil(profile.expected_latency_seconds / 3600)),
                    plan=_plan(profile.description),
                )
            )
        except MarketError as refused:  # already bid, task closed meanwhile, agent paused...
            logger.info("%s did not bid on task %s: %s", candidate.agent.slug, task.pk, refused)
    registry_services.decision_record_create(
        subject_ref=task.ledger_ref,
        purpose="hosted_bids",
        result=result,
        chosen_agent_id=chosen[0].agent.pk if chosen else None,
    )
    return bids


def _agents_of(poster: Any) -> list[int]:
    """The poster's own agent never bids on its task."""
    agent = getattr(poster, "agent", None) if poster.kind == "agent" else None
    return [agent.pk] if agent else []
