"""Cost-biased matching of tasks to agents (re-exported by ``selectors``). See DESIGN.md §7, §11.

1. Candidates: the nearest current capability vectors by cosine distance from the HNSW index,
   over-fetched in a MATERIALIZED CTE with ``hnsw.ef_search`` at least as large (pgvector 0.6
   applies WHERE after the index scan, so filtering inside the scan would starve the result).
2. Hard filters, in SQL on the small over-fetched set: active agent, same embedding model, price
   within budget, free concurrency, expected latency within the deadline, no policy flag that
   refuses what the task involves, not excluded by the caller.
3. Score: a weighted sum of factors, each in [0, 1] and shown to users:
   similarity, price (1 - price/budget), reputation (Bayesian average), load (free share of the
   concurrency limit), latency (share of the time to deadline left over), and exploration (a
   randomised UCB bonus u / sqrt(n + 1), u ~ U(0, 1) from a seeded generator) so new agents get a
   fair share of top slots without outranking a clearly better agent.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from agents_registry import embeddings
from agents_registry.models import POLICY_FLAGS, Agent, CapabilityProfile
from agents_registry.reputation import bayesian_reputation, exploration_bonus

FETCH_MIN = 100
FETCH_MAX = 400
FETCH_RETRY = 1000  # the largest hnsw.ef_search pgvector accepts
NO_DEADLINE_HORIZON_SECONDS = 24 * 3600
FACTORS = ("similarity", "price", "reputation", "load", "latency", "exploration")


def match_weights(overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    weights = {
        "similarity": settings.MATCH_WEIGHT_SIMILARITY,
        "price": settings.MATCH_WEIGHT_PRICE,
        "reputation": settings.MATCH_WEIGHT_REPUTATION,
        "load": settings.MATCH_WEIGHT_LOAD,
        "latency": settings.MATCH_WEIGHT_LATENCY,
        "exploration": settings.MATCH_WEIGHT_EXPLORATION,
    }
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
        }


@dataclass
class MatchResult:
    candidates: list[Candidate]
    weights: dict[str, float]
    parameters: dict = field(default_factory=dict)


def _vector_literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{value:.7g}" for value in vector.tolist()) + "]"


_CANDIDATES_SQL = """
WITH nearest AS MATERIALIZED (
    SELECT p.id, p.embedding <=> %(vector)s::vector AS distance
    FROM agents_registry_capabilityprofile p
    WHERE p.is_current
    ORDER BY p.embedding <=> %(vector)s::vector
    LIMIT %(fetch)s
)
SELECT n.id, n.distance, p.price_per_task, p.price_per_unit, p.expected_latency_seconds,
    a.active_tasks, a.concurrency_limit, a.outcomes_total, a.outcomes_accepted,
    a.outcomes_revised, (
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
ORDER BY n.distance, n.id
"""


@dataclass(frozen=True)
class _Row:
    profile_id: int
    distance: float
    price_per_task: int
    price_per_unit: int | None
    expected_latency_seconds: int
    active_tasks: int
    concurrency_limit: int
    outcomes_total: int
    outcomes_accepted: int
    outcomes_revised: int


def _nearest_filtered(
    *, vector: np.ndarray, fetch: int, parameters: dict
) -> tuple[list[_Row], int]:
    """Rows passing the hard filters, with what scoring needs (so only the shortlist is loaded
    as model instances), and how many rows the index returned."""
    with transaction.atomic(), connection.cursor() as cursor:
        # SET LOCAL lasts until the end of this transaction only.
        cursor.execute(f"SET LOCAL hnsw.ef_search = {int(fetch)}")
        cursor.execute(
            _CANDIDATES_SQL, {**parameters, "vector": _vector_literal(vector), "fetch": fetch}
        )
        fetched = cursor.fetchall()
    return [_Row(*row[:10]) for row in fetched if row[10]], len(fetched)


def refusing_flags_for(requirements: Collection[str]) -> list[str]:
    """The policy flags that refuse any of the task's requirements (e.g. ``health_data``)."""
    wanted = set(requirements)
    return sorted(flag for flag, refused in POLICY_FLAGS.items() if refused in wanted)


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
) -> MatchResult:
    """Ranked candidates for a task described by ``text`` (or its ``embedding``) and budget.

    Over-budget, paused or suspended, policy-refusing, fully loaded and too-slow-for-deadline
    agents never appear. ``units`` adds ``price_per_unit * units`` to the estimated price.
    """
    chosen_weights = match_weights(weights)
    if embedding is not None:
        vector = embeddings.validate_embedding(embedding)
    elif text is not None and text.strip():
        vector = embeddings.embed_text(text)
    else:
        raise ValueError("match_agents needs a text or an embedding")
    if seed is None:
        # Drawn here and recorded with the parameters, so any ranking can be replayed exactly.
        seed = secrets.randbits(32)
    now = timezone.now()
    seconds_left = (deadline - now).total_seconds() if deadline is not None else None
    parameters = {
        "budget": int(budget),
        "deadline": deadline.isoformat() if deadline else None,
        "seed": seed,
        "model": embeddings.embedding_model_id(),
        "policy_requirements": sorted(policy_requirements),
        "units": units,
        "limit": limit,
    }
    if budget < 0 or limit <= 0 or (seconds_left is not None and seconds_left <= 0):
        return MatchResult(candidates=[], weights=chosen_weights, parameters=parameters)
    sql_parameters = {
        "model": parameters["model"],
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
    rows, fetched = _nearest_filtered(vector=vector, fetch=fetch, parameters=sql_parameters)
    while len(rows) < limit and fetched > len(rows) and fetch < FETCH_RETRY:
        fetch = min(FETCH_RETRY, fetch * 4)
        rows, fetched = _nearest_filtered(vector=vector, fetch=fetch, parameters=sql_parameters)

    # Draws are assigned in profile-id order so a seed gives the same draws whatever the
    # distances' tie order.
    generator = np.random.default_rng(seed)
    ordered_ids = sorted(row.profile_id for row in rows)
    draws = dict(zip(ordered_ids, generator.random(len(ordered_ids)), strict=True))
    horizon = seconds_left if seconds_left is not None else NO_DEADLINE_HORIZON_SECONDS
    scored = []
    for row in rows:
        price = row.price_per_task + (row.price_per_unit or 0) * (units or 0)
        if price > budget:
            continue
        factors = {
            "similarity": 1.0 - row.distance,
            "price": 1.0 - price / budget if budget > 0 else 1.0,
            "reputation": bayesian_reputation(
                accepted=row.outcomes_accepted,
                revised=row.outcomes_revised,
                total=row.outcomes_total,
            ),
            "load": 1.0 - row.active_tasks / row.concurrency_limit,
            "latency": max(0.0, 1.0 - row.expected_latency_seconds / horizon),
            "exploration": float(draws[row.profile_id])
            * exploration_bonus(total=row.outcomes_total),
        }
        score = math.fsum(chosen_weights[name] * factors[name] for name in FACTORS)
        scored.append((score, row, price, factors))
    scored.sort(key=lambda item: (-item[0], item[1].profile_id))
    shortlist = scored[:limit]
    # Only the shortlist becomes model instances; the vector column is not needed by callers.
    profiles = (
        CapabilityProfile.objects.defer("embedding")
        .select_related("agent")
        .in_bulk([row.profile_id for _, row, _, _ in shortlist])
    )
    candidates = [
        Candidate(
            agent=profiles[row.profile_id].agent,
            profile=profiles[row.profile_id],
            similarity=factors["similarity"],
            price=price,
            factors=factors,
            score=score,
        )
        for score, row, price, factors in shortlist
    ]
    return MatchResult(candidates=candidates, weights=chosen_weights, parameters=parameters)


def agent_current_profile(*, agent: Agent) -> CapabilityProfile | None:
    return CapabilityProfile.objects.filter(agent=agent, is_current=True).first()
