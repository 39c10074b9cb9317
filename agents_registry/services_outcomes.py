"""Writes of outcomes (reputation) and decision records (re-exported by ``services``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from django.db import IntegrityError, transaction
from django.db.models import F

from agents_registry import embeddings
from agents_registry.exceptions import InvalidInput
from agents_registry.matching import MatchResult
from agents_registry.models import (
    Agent,
    CapabilityProfile,
    DecisionCandidate,
    DecisionRecord,
    Outcome,
)


@transaction.atomic
def outcome_record(
    *,
    agent_id: int,
    profile_id: int | None,
    task_ref: str,
    outcome: str,
    cost: int,
    latency_seconds: float | None,
    embedding: Sequence[float] | np.ndarray | None = None,
    embedding_model: str = "",
    decision_id: int | None = None,
) -> Outcome:
    """Record what happened on a task and update the agent's reputation counters.

    ``embedding`` (and the model that made it): the task's vector, so the outcome is evidence
    for the agent's chance on similar tasks; ``decision_id``: the decision that chose the agent
    (default: the latest one for this task that did).

    Idempotent per (agent, task, outcome kind): a replay returns the first row and moves no
    counter, because the insert and the F() updates share one transaction and the unique
    constraint decides which call wins.
    """
    if outcome not in Outcome.Kind.values:
        raise InvalidInput(
            f"Unknown outcome {outcome!r}.",
            {"outcome": [f"One of: {', '.join(Outcome.Kind.values)}."]},
        )
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 0:
        raise InvalidInput("The cost must be a non-negative whole number of credits.")
    if latency_seconds is not None and latency_seconds < 0:
        raise InvalidInput("The latency cannot be negative.")
    if not task_ref:
        raise InvalidInput("task_ref is required.")
    vector = None
    if embedding is not None:
        try:
            vector = embeddings.validate_embedding(embedding)
        except embeddings.InvalidEmbedding as invalid:
            raise InvalidInput(str(invalid), {"embedding": [str(invalid)]}) from None
        if not embedding_model:
            raise InvalidInput("An embedding needs the model that made it.")
    if decision_id is None:
        decision_id = decision_choosing(subject_ref=task_ref, agent_id=agent_id)
    if (
        profile_id is not None
        and not CapabilityProfile.objects.filter(pk=profile_id, agent_id=agent_id).exists()
    ):
        raise InvalidInput("The profile version does not belong to this agent.")
    try:
        with transaction.atomic():
            row = Outcome.objects.create(
                agent_id=agent_id,
                profile_id=profile_id,
                task_ref=task_ref,
                outcome=outcome,
                cost=cost,
                latency_seconds=latency_seconds,
                embedding=vector,
                embedding_model=embedding_model if vector is not None else "",
                decision_id=decision_id,
            )
    except IntegrityError:
        existing = Outcome.objects.filter(
            agent_id=agent_id, task_ref=task_ref, outcome=outcome
        ).first()
        if existing is None:
            raise InvalidInput(f"Unknown agent {agent_id}.") from None
        return existing
    updates: dict = {"outcomes_total": F("outcomes_total") + 1}
    if outcome == Outcome.Kind.ACCEPTED:
        updates["outcomes_accepted"] = F("outcomes_accepted") + 1
        updates["earned_total"] = F("earned_total") + cost
    elif outcome == Outcome.Kind.REVISED:
        updates["outcomes_revised"] = F("outcomes_revised") + 1
    if latency_seconds is not None and outcome in (Outcome.Kind.ACCEPTED, Outcome.Kind.REVISED):
        updates["latency_samples"] = F("latency_samples") + 1
        updates["latency_seconds_total"] = F("latency_seconds_total") + latency_seconds
    Agent.objects.filter(pk=agent_id).update(**updates)
    return row


# Decisions that put an agent to work on a task (an outcome that follows is linked to one).
CHOOSING_PURPOSES = ("auto_award", "award", "claim")


def decision_choosing(*, subject_ref: str, agent_id: int) -> int | None:
    """The latest decision that chose ``agent_id`` for the task ``subject_ref``."""
    return (
        DecisionRecord.objects.filter(
            subject_ref=subject_ref, chosen_agent_id=agent_id, purpose__in=CHOOSING_PURPOSES
        )
        .order_by("-created_at", "-id")
        .values_list("pk", flat=True)
        .first()
    )


@transaction.atomic
def decision_record_auction(
    *,
    subject_ref: str,
    weights: dict[str, float],
    bids: list[dict[str, Any]],
    chosen_bid: int,
    chosen_agent_id: int | None,
    ranking: dict[str, Any] | None = None,
    purpose: str = "auto_award",
) -> DecisionRecord:
    """Store an award (automatic, by hand or a claim): the auction's weights, and every bid with
    its factors, score and estimate inputs in ``parameters`` (bidders may be humans, with no
    profile to pin as a candidate); ``ranking``: the parameters the estimates were scored with
    (seed, preference, budget), which ``matching.decision_replay`` needs."""
    return DecisionRecord.objects.create(
        subject_ref=subject_ref,
        purpose=purpose,
        weights=weights,
        parameters={"bids": bids, "chosen_bid": chosen_bid, "ranking": ranking or {}},
        chosen_agent_id=chosen_agent_id,
    )


def decision_record_create(
    *, subject_ref: str, purpose: str, result: MatchResult, chosen_agent_id: int | None
) -> DecisionRecord:
    """Store a ranking that led to a decision: inputs, weights, every candidate's factors and
    score, pinned to the profile versions that were scored, and the choice."""
    chosen_profile_id = None
    if chosen_agent_id is not None:
        chosen = [c for c in result.candidates if c.agent.pk == chosen_agent_id]
        # Choosing outside the ranking (e.g. a hand-picked bidder) is allowed and recorded.
        chosen_profile_id = chosen[0].profile.pk if chosen else None
    record = DecisionRecord.objects.create(
        subject_ref=subject_ref,
        purpose=purpose,
        weights=result.weights,
        parameters=result.parameters,
        chosen_agent_id=chosen_agent_id,
        chosen_profile_id=chosen_profile_id,
    )
    DecisionCandidate.objects.bulk_create(
        DecisionCandidate(
            record=record,
            rank=rank,
            agent_id=candidate.agent.pk,
            profile_id=candidate.profile.pk,
            similarity=candidate.similarity,
            price=candidate.price,
            factors=candidate.factors,
            score=candidate.score,
            inputs=candidate.estimate.inputs.as_dict() if candidate.estimate else {},
        )
        for rank, candidate in enumerate(result.candidates, start=1)
    )
    return record
