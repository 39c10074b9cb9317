"""Reputation and exploration arithmetic shared by the models, the matcher and the pages."""

from __future__ import annotations

import math

# A neutral prior worth PRIOR_WEIGHT outcomes at PRIOR_MEAN: an agent with one accepted task scores
# (1 + 2.5) / (1 + 5) = 0.58, below an agent with 18 of 20 accepted (0.82).
PRIOR_MEAN = 0.5
PRIOR_WEIGHT = 5.0


def bayesian_reputation(*, accepted: int, revised: int, total: int) -> float:
    successes = accepted + 0.5 * revised
    return (successes + PRIOR_MEAN * PRIOR_WEIGHT) / (total + PRIOR_WEIGHT)


def beta_parameters(*, accepted: int, revised: int, total: int) -> tuple[float, float]:
    """Beta posterior of the acceptance rate under the same prior (for Thompson sampling)."""
    successes = accepted + 0.5 * revised
    alpha = successes + PRIOR_MEAN * PRIOR_WEIGHT
    beta = (total - successes) + (1 - PRIOR_MEAN) * PRIOR_WEIGHT
    return max(alpha, 1e-6), max(beta, 1e-6)


def exploration_bonus(*, total: int) -> float:
    """Deterministic part of the bandit term: large for agents with few outcomes, fading as
    1/sqrt(n+1), so new agents get a fair share of top slots without outranking proven ones."""
    return 1.0 / math.sqrt(total + 1.0)
