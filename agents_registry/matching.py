"""Cost-biased matching of tasks to agents (re-exported by ``selectors``). See DESIGN.md §7, §11.

1. Candidates: the nearest current capability vectors by cosine distance from the HNSW index,
   over-fetched in a MATERIALIZED CTE with ``hnsw.ef_search`` at least as large (pgvector 0.6
   applies WHERE after the index scan, so filtering inside the scan would starve the result).
2. Hard filters, in SQL on the small over-fetched set: active agent, same embedding model, price
   within budget, free concurrency, expected latency within the deadline, no policy flag that
   refuses what the task involves, not excluded by the caller.
3. Score: the expected net value of each candidate's work on *this* task (``estimates``): its
   P(accepted) from its outcomes on the nearest past tasks, shrunk toward its global record and
   the profile-text prior, a Thompson draw from that posterior (seeded per candidate), minus its
   price over the value of success that the poster's ``preference`` sets. The candidates' evidence
   comes in the same query as the candidates (a LATERAL per candidate that passed the filters).
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from agents_registry import embeddings, estimates
from agents_registry.models import POLICY_FLAGS, Agent, CapabilityProfile, DecisionRecord

FETCH_MIN = 100
FETCH_MAX = 400
FETCH_RETRY = 1000  # the largest hnsw.ef_search pgvector accepts
WEIGHTS = ("exploration",)


def match_weights(overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """``exploration``: the share of the posterior draw in the score (0: the posterior mean)."""
    weights = {"exploration": settings.MATCH_EXPLORATION}
    if overrides:
        unknown = set(overrides) - set(weights)
        if unknown:
            raise ValueError(f"Unknown match weights: {sorted(unknown)}")
        weights.update({name: float(value) for name, value in overrides.items()})
    return weights


@dataclass
class Candidate:
    agent: Agent
    profile: CapabilityProfile
    similarity: float
    price: int
    factors: dict[str, float]
    score: float
    estimate: estimates.Estimate | None = None
    explanation: str = ""

    @property
    def evidence(self) -> str:
        return self.estimate.inputs.evidence.text if self.estimate else ""

    def as_dict(self) -> dict:
        return {
            "agent_id": self.agent.pk,
            "agent_slug": self.agent.slug,
            "agent_name": self.agent.name,
            "profile_id": self.profile.pk,
            "profile_version": self.profile.version,
            "similarity": round(self.similarity, 6),
            "price": self.price,
            "factors": {name: round(value, 6) for name, value in self.factors.items()},
            "score": round(self.score, 6),
            "evidence": self.evidence,
            "explanation": self.explanation,
        }


@dataclass
class MatchResult:
    candidates: list[Candidate]
    weights: dict[str, float]
    parameters: dict = field(default_factory=dict)


def _vector_literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{value:.7g}" for value in vector.tolist()) + "]"


_CANDIDATES_TEMPLATE = """
WITH nearest AS MATERIALIZED (
    SELECT p.id, p.embedding <=> %(vector)s::vector AS distance
    FROM agents_registry_capabilityprofile p
    WHERE p.is_current
    ORDER BY p.embedding <=> %(vector)s::vector
    LIMIT %(fetch)s
), filtered AS (
    SELECT n.id, n.distance, p.price_per_task, p.price_per_unit, a.id AS agent_id,
        a.outcomes_total, a.outcomes_accepted, a.outcomes_revised, (
        a.status = 'active'
        AND p.embedding_model = %(model)s
        AND p.price_per_task <= %(budget)s
        AND a.active_tasks < a.concurrency_limit
        AND p.expected_latency_seconds <= %(max_latency)s
        AND NOT (p.policy_flags && %(refusing_flags)s::varchar[])
        AND NOT (a.id = ANY(%(excluded)s::bigint[]))
    ) AS passes
    FROM nearest n
    JOIN agents_registry_capabilityprofile p ON p.id = n.id
    JOIN agents_registry_agent a ON a.id = p.agent_id
)
SELECT f.id, f.distance, f.price_per_task, f.price_per_unit, f.agent_id, f.outcomes_total,
    f.outcomes_accepted, f.outcomes_revised, {evidence_columns}, f.passes
FROM filtered f
{evidence}
ORDER BY f.distance, f.id
"""
# From module constants only: the candidates and their evidence in one statement.
_CANDIDATES_SQL = _CANDIDATES_TEMPLATE.format(
    evidence_columns=estimates.EVIDENCE_COLUMNS,
    evidence=estimates.EVIDENCE_LATERAL.format(
        agent="f.agent_id",
        gate="f.passes",
        vector="%(vector)s::vector",
        radius="%(radius)s",
    ),
)


@dataclass(frozen=True)
class _Row:
    profile_id: int
    distance: float
    price_per_task: int
    price_per_unit: int | None
    agent_id: int
    outcomes_total: int
    outcomes_accepted: int
    outcomes_revised: int
    evidence: estimates.Evidence = field(kw_only=True)


def _nearest_filtered(
    *, vector_literal: str, fetch: int, parameters: dict
) -> tuple[list[_Row], int]:
    """Rows passing the hard filters, with what scoring needs (so only the shortlist is loaded
    as model instances) and each one's evidence, and how many rows the index returned."""
    with transaction.atomic(), connection.cursor() as cursor:
        if "radius" not in parameters:  # the retry with a larger fetch reuses it
            parameters["radius"] = estimates.neighbourhood_radius(cursor, parameters)
        # SET LOCAL lasts until the end of this transaction only.
        cursor.execute(f"SET LOCAL hnsw.ef_search = {int(fetch)}")
        cursor.execute(_CANDIDATES_SQL, {**parameters, "fetch": fetch})
        fetched = cursor.fetchall()
    rows = [_Row(*row[:8], evidence=estimates.evidence_of(row[8:12])) for row in fetched if row[12]]
    return rows, len(fetched)


def refusing_flags_for(requirements: Collection[str]) -> list[str]:
    """The policy flags that refuse any of the task's requirements (e.g. ``health_data``)."""
    wanted = set(requirements)
    return sorted(flag for flag, refused in POLICY_FLAGS.items() if refused in wanted)


def _task_vector(text: str | None, embedding: Sequence[float] | np.ndarray | None) -> np.ndarray:
    if embedding is not None:
        return embeddings.validate_embedding(embedding)
    if text is not None and text.strip():
        return embeddings.embed_text(text)
    raise ValueError("match_agents needs a text or an embedding")


def rank(
    inputs: Sequence[estimates.EstimateInputs], *, parameters: Mapping[str, Any]
) -> list[tuple[estimates.EstimateInputs, estimates.Scored]]:
    """Score and order candidates from their stored inputs: what the matcher and the replay of
    a decision both call. Ties go to the lower profile id (then agent id)."""
    scored = [
        (
            item,
            estimates.score(
                estimates.estimate(item, global_weight=parameters["global_weight"]),
                budget=parameters["budget"],
                preference=parameters["preference"],
                exploration=parameters["exploration"],
                seed=parameters["seed"],
            ),
        )
        for item in inputs
    ]
    scored.sort(key=lambda pair: (-pair[1].score, pair[0].profile_id or 0, pair[0].agent_id))
    return scored


def match_agents(
    *,
    text: str | None = None,
    embedding: Sequence[float] | np.ndarray | None = None,
    budget: int,
    deadline: datetime | None = None,
    exclude_agent_ids: Collection[int] = (),
    limit: int = 10,
    seed: int | None = None,
    policy_requirements: Collection[str] = (),
    units: int | None = None,
    weights: Mapping[str, float] | None = None,
    preference: float | None = None,
) -> MatchResult:
    """Ranked candidates for a task described by ``text`` (or its ``embedding``) and budget.

    Over-budget, paused or suspended, policy-refusing, fully loaded and too-slow-for-deadline
    agents never appear. ``units`` adds ``price_per_unit * units`` to the estimated price.
    ``preference`` (0..1, default ``MATCH_PREFERENCE``): from the cheapest agent that will likely
    pass to the one most likely to pass within budget.
    """
    chosen_weights = match_weights(weights)
    vector = _task_vector(text, embedding)
    if seed is None:
        # Drawn here and recorded with the parameters, so any ranking can be replayed exactly.
        seed = secrets.randbits(32)
    if preference is None:
        preference = settings.MATCH_PREFERENCE
    now = timezone.now()
    seconds_left = (deadline - now).total_seconds() if deadline is not None else None
    model = embeddings.embedding_model_id()
    parameters = {
        "budget": int(budget),
        "deadline": deadline.isoformat() if deadline else None,
        "seed": seed,
        "model": model,
        "policy_requirements": sorted(policy_requirements),
        "units": units,
        "limit": limit,
        "preference": float(preference),
        "exploration": chosen_weights["exploration"],
        "global_weight": settings.MATCH_GLOBAL_WEIGHT,
        "kernel": estimates.kernel_parameters(),
    }
    if budget < 0 or limit <= 0 or (seconds_left is not None and seconds_left <= 0):
        return MatchResult(candidates=[], weights=chosen_weights, parameters=parameters)
    vector_literal = _vector_literal(vector)
    sql_parameters = {
        **estimates.evidence_parameters(vector_literal=vector_literal, model=model),
        "budget": int(budget),
        "max_latency": int(seconds_left) if seconds_left is not None else 2**31 - 1,
        "refusing_flags": refusing_flags_for(policy_requirements),
        "excluded": [int(agent_id) for agent_id in exclude_agent_ids],
    }
    # Ten times the shortlist (at least 100) is enough when the filters keep a tenth of the
    # nearest; when they keep less, look further, up to what pgvector allows. Whether the filters
    # dropped rows, not whether the index returned ``fetch`` of them, says to look further: an
    # HNSW search can return fewer rows than its ef_search when more exist (near-duplicate
    # vectors leave parts of the graph poorly linked), which made a test fail now and then.
    fetch = min(FETCH_MAX, max(FETCH_MIN, limit * 10))
    rows, fetched = _nearest_filtered(
        vector_literal=vector_literal, fetch=fetch, parameters=sql_parameters
    )
    while len(rows) < limit and fetched > len(rows) and fetch < FETCH_RETRY:
        fetch = min(FETCH_RETRY, fetch * 4)
        rows, fetched = _nearest_filtered(
            vector_literal=vector_literal, fetch=fetch, parameters=sql_parameters
        )

    inputs = []
    for row in rows:
        price = row.price_per_task + (row.price_per_unit or 0) * (units or 0)
        if price > budget:
            continue
        inputs.append(
            estimates.EstimateInputs(
                agent_id=row.agent_id,
                profile_id=row.profile_id,
                price=price,
                similarity=1.0 - row.distance,
                accepted=row.outcomes_accepted,
                revised=row.outcomes_revised,
                total=row.outcomes_total,
                evidence=row.evidence,
            )
        )
    shortlist = rank(inputs, parameters=parameters)[:limit]
    # Only the shortlist becomes model instances; the vector column is not needed by callers.
    profiles = (
        CapabilityProfile.objects.defer("embedding")
        .select_related("agent")
        .in_bulk([item.profile_id for item, _ in shortlist])
    )
    candidates = [
        Candidate(
            agent=profiles[item.profile_id].agent,
            profile=profiles[item.profile_id],
            similarity=item.similarity,
            price=item.price,
            factors=scored.factors,
            score=scored.score,
            estimate=scored.estimate,
            explanation=estimates.explanation(scored),
        )
        for item, scored in shortlist
    ]
    return MatchResult(candidates=candidates, weights=chosen_weights, parameters=parameters)


def decision_replay(record: DecisionRecord) -> list[int]:
    """The ranking of a decision recomputed from its stored inputs alone: agent ids for a
    shortlist, bid ids for an award (automatic, by hand or a claim). Equal to the recorded
    order whatever outcomes came since: the inputs, not the database, are replayed."""
    parameters = record.parameters
    if "bids" in parameters:
        return _auction_replay(record)
    inputs = [
        estimates.EstimateInputs.from_dict(candidate.inputs)
        for candidate in record.candidates.order_by("rank")
    ]
    return [item.agent_id for item, _ in rank(inputs, parameters=parameters)]


def _auction_replay(record: DecisionRecord) -> list[int]:
    ranking = record.parameters.get("ranking") or {}
    totals = []
    for bid in record.parameters["bids"]:
        factors = dict(bid["factors"])
        if bid.get("inputs"):
            # An agent bidder: its net value recomputed from its estimate inputs and the seed.
            factors["net_value"] = rank(
                [estimates.EstimateInputs.from_dict(bid["inputs"])], parameters=ranking
            )[0][1].score
        total = sum(weight * factors[name] for name, weight in record.weights.items())
        totals.append((-round(total, 6), bid["bid"]))
    return [bid_id for _, bid_id in sorted(totals)]


def agent_current_profile(*, agent: Agent) -> CapabilityProfile | None:
    return CapabilityProfile.objects.filter(agent=agent, is_current=True).first()
