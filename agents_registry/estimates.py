"""P(accepted | agent, task): outcome-grounded estimates, cost of pass, posterior sampling.

DESIGN.md §7. An agent's chance on a task comes from its own outcomes on the nearest past tasks
(each outcome keeps its task's vector): among its most recent outcomes, the ``k`` nearest to the
task, each weighted 1 within ``radius`` (cosine distance) and ``exp(-(d - radius) / width)``
beyond, so a record on unrelated work counts for little. That weighted record updates a Beta
prior centred on the agent's global record (itself shrunk toward the profile-text prior: the
similarity of the task to the agent's capability text), worth up to ``global_weight`` outcomes
(fewer for an agent with a short record), so an agent with few neighbours stays near its global
record, a new agent's posterior is wide, and every posterior narrows with evidence.

Ranking is by expected net value, SALE-style value minus cost: ``p * V - price`` with the value
of success ``V = budget * 10**(3 * preference - 1)`` (``preference`` 0: the cheapest that may
pass; 1: the most likely to pass within budget). The explanation shows ``price / p``, the
expected cost per accepted result (Cost-of-Pass). Exploration is Thompson sampling: ``p`` in
the score is the mean moved toward a draw from the posterior (by ``MATCH_EXPLORATION``; the
half-way default explored enough with less regret than the full draw in ``bench/routing.py``),
from a generator seeded by (seed, agent), so any ranking replays exactly and a candidate's draw
does not depend on who else was ranked.

Everything here but :func:`estimates_for_agents` is pure arithmetic on stored inputs, which is
what :func:`agents_registry.matching.decision_replay` recomputes.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction

from agents_registry.reputation import PRIOR_WEIGHT

PRIOR_FLOOR = 0.02
PRIOR_CEILING = 0.8
# Similarity (1 - cosine distance) at which the profile prior is even, and how fast it moves.
PRIOR_PIVOT = 0.2
PRIOR_SLOPE = 3.0
# The weight of an agent's global record in its local posterior grows with that record, from
# this for a new agent (a wide posterior: it gets tried) up to ``MATCH_GLOBAL_WEIGHT``.
NEW_AGENT_WEIGHT = 2.0


@dataclass(frozen=True)
class Evidence:
    """The agent's record on the nearest past tasks: weighted sums, and plain counts of those
    that count (almost) fully (weight at least one half), for the explanation."""

    weighted_accepted: float = 0.0
    weighted_total: float = 0.0
    similar_accepted: int = 0
    similar_total: int = 0

    @property
    def text(self) -> str:
        if not self.similar_total:
            return "no similar past tasks"
        return f"accepted {self.similar_accepted} of {self.similar_total} similar tasks"


@dataclass(frozen=True)
class EstimateInputs:
    """What an estimate and a score are computed from; stored with every decision."""

    agent_id: int
    profile_id: int | None
    price: int
    similarity: float
    accepted: int  # global counters of the agent
    revised: int
    total: int
    evidence: Evidence

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EstimateInputs:
        return cls(**{**data, "evidence": Evidence(**data["evidence"])})


@dataclass(frozen=True)
class Estimate:
    inputs: EstimateInputs
    prior: float  # from the profile text alone
    global_rate: float  # the agent's global record shrunk toward the prior
    alpha: float
    beta: float

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    @property
    def deviation(self) -> float:
        total = self.alpha + self.beta
        return math.sqrt(self.alpha * self.beta / (total * total * (total + 1.0)))

    @property
    def cost_per_accepted(self) -> float:
        return self.inputs.price / self.mean


def profile_prior(similarity: float) -> float:
    """With no outcomes, the chance that an agent's work passes follows its capability text's
    similarity to the task: even at ``PRIOR_PIVOT``, near the floor for unrelated work, never
    above the ceiling (a description is a claim, not a record)."""
    return min(PRIOR_CEILING, max(PRIOR_FLOOR, 0.5 + PRIOR_SLOPE * (similarity - PRIOR_PIVOT)))


def estimate(inputs: EstimateInputs, *, global_weight: float | None = None) -> Estimate:
    weight = settings.MATCH_GLOBAL_WEIGHT if global_weight is None else global_weight
    prior = profile_prior(inputs.similarity)
    # Revisions are not ended attempts (an accept or a reject of the same task follows).
    ended = max(0, inputs.total - inputs.revised)
    global_rate = (inputs.accepted + PRIOR_WEIGHT * prior) / (ended + PRIOR_WEIGHT)
    weight = min(weight, NEW_AGENT_WEIGHT + ended)
    evidence = inputs.evidence
    alpha = evidence.weighted_accepted + weight * global_rate
    beta = (evidence.weighted_total - evidence.weighted_accepted) + weight * (1.0 - global_rate)
    return Estimate(
        inputs=inputs,
        prior=prior,
        global_rate=global_rate,
        alpha=max(alpha, 1e-6),
        beta=max(beta, 1e-6),
    )


def value_of_success(*, budget: int, preference: float) -> float:
    """What one accepted result is worth to the poster, in credits, for the ranking: a tenth of
    the budget at preference 0 (the price decides: the cheapest that may pass), the budget at
    1/3, a hundred times it at 1 (the chance of passing decides, within budget)."""
    return max(1, budget) * 10.0 ** (3.0 * min(1.0, max(0.0, preference)) - 1.0)


def posterior_draw(estimate: Estimate, *, seed: int, agent_id: int) -> float:
    generator = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(agent_id)])
    return float(generator.beta(estimate.alpha, estimate.beta))


@dataclass(frozen=True)
class Scored:
    estimate: Estimate
    used: float  # the probability the score used (mean moved toward the draw)
    score: float  # net value as a share of the value of success: p - price / V
    factors: dict[str, float]


def score(
    estimate: Estimate, *, budget: int, preference: float, exploration: float, seed: int
) -> Scored:
    inputs = estimate.inputs
    value = value_of_success(budget=budget, preference=preference)
    mean = estimate.mean
    used = mean
    if exploration:
        used = mean + exploration * (
            posterior_draw(estimate, seed=seed, agent_id=inputs.agent_id) - mean
        )
    net = used - inputs.price / value
    factors = {
        "success": mean,
        "uncertainty": estimate.deviation,
        "exploration": used - mean,
        "prior": estimate.prior,
        "global": estimate.global_rate,
        "similarity": inputs.similarity,
        "cost_per_accepted": estimate.cost_per_accepted,
        "net_value": net,
    }
    return Scored(estimate=estimate, used=used, score=net, factors=factors)


def explanation(scored: Scored) -> str:
    estimate = scored.estimate
    return (
        f"P(accepted) {estimate.mean:.2f} ± {estimate.deviation:.2f}"
        f" ({estimate.inputs.evidence.text}; global {estimate.global_rate:.2f},"
        f" profile prior {estimate.prior:.2f}); expected cost per accepted result"
        f" {estimate.cost_per_accepted:,.0f}"
    )


def kernel_parameters() -> dict[str, float | int]:
    return {
        "neighbours": settings.MATCH_NEIGHBOURS,
        "neighbourhood": settings.MATCH_NEIGHBOURHOOD,
        "recent": settings.MATCH_RECENT_OUTCOMES,
        "radius": settings.MATCH_KERNEL_RADIUS,
        "width": settings.MATCH_KERNEL_WIDTH,
    }


# The evidence of one agent (``{agent}``: its id column in the outer query): among its most
# recent ended outcomes of the same embedding model, the k nearest to the task, kernel-weighted.
# The ``{gate}`` lets the outer query skip agents that failed the hard filters; ``{vector}`` is the
# task's vector (a parameter, or a column of the outer query); ``{radius}`` the distance within
# which a past task counts fully (``neighbourhood_radius``, or the fixed setting).
EVIDENCE_LATERAL = """
LEFT JOIN LATERAL (
    SELECT COALESCE(SUM(w), 0) AS weighted_total,
        COALESCE(SUM(w * ok), 0) AS weighted_accepted,
        COUNT(*) FILTER (WHERE w >= 0.5) AS similar_total,
        COUNT(*) FILTER (WHERE w >= 0.5 AND ok = 1) AS similar_accepted
    FROM (
        SELECT LEAST(1.0, EXP(-GREATEST(nn.distance - {radius}, 0) / %(width)s)) AS w, nn.ok
        FROM (
            SELECT r.embedding <=> {vector} AS distance, r.ok
            FROM (
                SELECT o.embedding, (o.outcome = 'accepted')::int AS ok
                FROM agents_registry_outcome o
                WHERE o.agent_id = {agent} AND {gate}
                    AND o.outcome = ANY(%(ended_kinds)s::varchar[])
                    AND o.embedding IS NOT NULL AND o.embedding_model = %(model)s
                ORDER BY o.created_at DESC, o.id DESC
                LIMIT %(recent)s
            ) r
            ORDER BY 1
            LIMIT %(neighbours)s
        ) nn
    ) weighted
) evidence ON TRUE
"""

# The radius adapts to how dense the past is around the task: the distance of its
# ``neighbourhood``-th nearest past task (any agent's, from the HNSW index over outcomes), so
# "similar" means "among the nearest past work" in a sparse market and a dense one alike, but
# never beyond the ``radius`` setting (where the past holds nothing like the task, distant work
# must not count fully). Its own statement, so its index scan can use a small ef_search.
_NEIGHBOURHOOD_SQL = """
SELECT COALESCE(LEAST(MAX(distance), %(radius_cap)s), %(radius_cap)s) FROM (
    SELECT o.embedding <=> %(vector)s::vector AS distance
    FROM agents_registry_outcome o
    WHERE o.embedding IS NOT NULL
    ORDER BY o.embedding <=> %(vector)s::vector
    LIMIT %(neighbourhood)s
) nearest
"""


def neighbourhood_radius(cursor: Any, parameters: Mapping[str, Any]) -> float:
    """Inside the caller's transaction (``SET LOCAL`` lasts until its end)."""
    cursor.execute(f"SET LOCAL hnsw.ef_search = {max(40, int(parameters['neighbourhood']))}")
    cursor.execute(_NEIGHBOURHOOD_SQL, parameters)
    return float(cursor.fetchone()[0])


EVIDENCE_COLUMNS = (
    "evidence.weighted_accepted, evidence.weighted_total,"
    " evidence.similar_accepted, evidence.similar_total"
)


def evidence_parameters(*, vector_literal: str, model: str) -> dict[str, Any]:
    from agents_registry.models import Outcome

    kernel = kernel_parameters()
    return {
        "vector": vector_literal,
        "model": model,
        "ended_kinds": [str(kind) for kind in (*Outcome.SUCCESS_KINDS, *Outcome.FAILURE_KINDS)],
        "radius_cap": float(kernel["radius"]),
        "neighbourhood": int(kernel["neighbourhood"]),
        "width": max(1e-6, float(kernel["width"])),
        "recent": int(kernel["recent"]),
        "neighbours": int(kernel["neighbours"]),
    }


def evidence_of(row: Sequence[Any]) -> Evidence:
    weighted_accepted, weighted_total, similar_accepted, similar_total = row
    return Evidence(
        weighted_accepted=float(weighted_accepted or 0.0),
        weighted_total=float(weighted_total or 0.0),
        similar_accepted=int(similar_accepted or 0),
        similar_total=int(similar_total or 0),
    )


_AGENTS_SQL = (
    """
SELECT a.id, p.id, p.price_per_task, COALESCE(1 - (p.embedding <=> %(vector)s::vector), 0),
    a.outcomes_accepted, a.outcomes_revised, a.outcomes_total, """
    + EVIDENCE_COLUMNS
    + """
FROM agents_registry_agent a
LEFT JOIN agents_registry_capabilityprofile p ON p.agent_id = a.id AND p.is_current
    AND p.embedding_model = %(model)s
"""
    + EVIDENCE_LATERAL.format(
        agent="a.id", gate="TRUE", vector="%(vector)s::vector", radius="%(radius)s"
    )
    + """
WHERE a.id = ANY(%(agent_ids)s::bigint[])
"""
)


def estimates_for_agents(
    *,
    vector_literal: str,
    model: str,
    agent_ids: Collection[int],
    prices: Mapping[int, int] | None = None,
) -> dict[int, Estimate]:
    """The estimate of each agent for one task, in one query (an automatic award's bidders, a
    claimant). ``prices``: what each asks here (a bid), else its profile's price per task."""
    if not agent_ids:
        return {}
    parameters = {
        **evidence_parameters(vector_literal=vector_literal, model=model),
        "agent_ids": [int(agent_id) for agent_id in agent_ids],
    }
    with transaction.atomic(), connection.cursor() as cursor:
        parameters["radius"] = neighbourhood_radius(cursor, parameters)
        cursor.execute(_AGENTS_SQL, parameters)
        rows = cursor.fetchall()
    found = {}
    for row in rows:
        agent_id, profile_id, price_per_task = row[0], row[1], row[2]
        price = (prices or {}).get(agent_id, price_per_task or 0)
        inputs = EstimateInputs(
            agent_id=agent_id,
            profile_id=profile_id,
            price=int(price),
            similarity=float(row[3]),
            accepted=row[4],
            revised=row[5],
            total=row[6],
            evidence=evidence_of(row[7:11]),
        )
        found[agent_id] = estimate(inputs)
    return found


_TASKS_SQL = """
SELECT t.id, COALESCE(1 - (t.embedding <=> p.embedding), 0), {evidence_columns}
FROM {tasks} t
JOIN agents_registry_capabilityprofile p ON p.agent_id = %(agent_id)s AND p.is_current
{evidence}
WHERE t.id = ANY(%(task_ids)s::bigint[])
"""


def estimates_for_tasks(
    *, agent_id: int, task_table: str, task_ids: Collection[int], model: str
) -> dict[int, Estimate]:
    """One agent's estimate on each of many tasks (its "tasks for me"), in one query: the
    tasks' vectors are read from ``task_table`` (the market's, named by its caller)."""
    from agents_registry.models import Agent, CapabilityProfile

    if not task_ids:
        return {}
    agent = Agent.objects.filter(pk=agent_id).first()
    profile = CapabilityProfile.objects.filter(agent_id=agent_id, is_current=True).first()
    if agent is None or profile is None:
        return {}
    sql = _TASKS_SQL.format(
        evidence_columns=EVIDENCE_COLUMNS,
        tasks=connection.ops.quote_name(task_table),
        # A fixed radius here: an index search per task of the window would cost too much.
        evidence=EVIDENCE_LATERAL.format(
            agent="%(agent_id)s", gate="TRUE", vector="t.embedding", radius="%(radius)s"
        ),
    )
    parameters = {
        **evidence_parameters(vector_literal="", model=model),
        "agent_id": int(agent_id),
        "task_ids": [int(task_id) for task_id in task_ids],
    }
    parameters["radius"] = parameters["radius_cap"]
    with connection.cursor() as cursor:
        cursor.execute(sql, parameters)
        rows = cursor.fetchall()
    return {
        task_id: estimate(
            EstimateInputs(
                agent_id=agent_id,
                profile_id=profile.pk,
                price=profile.price_per_task,
                similarity=float(similarity),
                accepted=agent.outcomes_accepted,
                revised=agent.outcomes_revised,
                total=agent.outcomes_total,
                evidence=evidence_of(evidence_row),
            )
        )
        for task_id, similarity, *evidence_row in rows
    }
