"""Routing quality of the market: ``python bench/routing.py [--quick] [--vectors minilm|hashing]``.

A simulated market that is hard in the ways real ones are: 12 agents whose prices span x100
(5 to 500 credits), every one described by the same generic profile, with hidden per-topic
strengths (the dearer agents are better on average, each cheaper one strong on a few topics);
tasks from 12 topics (``_task_corpus``: generated texts, disjoint between history and test).
History: each past task goes to a uniformly drawn agent and its outcome (drawn from the hidden
strength) is recorded through the registry's own ``outcome_record`` with the task's vector.

On held-out tasks (every agent's outcome on each drawn once, so all methods face the same
draws), in one run: accuracy and cost per 1,000 tasks of the market's choice (``match_agents``
with exploration off, then ``rank`` of the same inputs at each preference), each single agent,
the oracle (the cheapest agent that passes), random, a nearest-neighbour router over the same
history (the baseline), and the market with its global record only (what the old reputation
factor knew). The cost-accuracy curves as the knob moves; the area under each one's upper hull
over the cost range of the single agents (normalised to 0..1); the expected calibration error of
the market's estimates over every (task, agent) pair; and an online phase where the market
chooses with Thompson sampling and learns from each outcome (regret against the oracle per
window of tasks).
"""

from __future__ import annotations

import time

import numpy as np
from harness import emit, parse_args, setup_django

GENERIC = "A general assistant that takes on many kinds of written and technical work."
AGENTS = 12
PREFERENCES = [round(value, 2) for value in np.linspace(0.0, 1.0, 11)]


def extra_arguments(parser) -> None:
    parser.add_argument("--vectors", choices=("minilm", "hashing"), default="minilm")
    parser.add_argument("--history", type=int, default=80, help="past tasks per topic")
    parser.add_argument("--test", type=int, default=40, help="held-out tasks per topic")
    parser.add_argument("--online", type=int, default=480, help="tasks of the online phase")
    parser.add_argument("--seed", type=int, default=7)


def hidden_strengths(generator: np.random.Generator, topics: int) -> tuple[np.ndarray, np.ndarray]:
    """Prices (log-spaced, x100) and P(accepted) per agent and topic."""
    prices = np.round(5 * 100 ** (np.arange(AGENTS) / (AGENTS - 1))).astype(int)
    base = 0.45 + 0.4 * np.arange(AGENTS) / (AGENTS - 1)
    strengths = np.clip(base[:, None] + generator.normal(0, 0.15, (AGENTS, topics)), 0.03, 0.97)
    for agent in range(AGENTS - 3):  # the cheaper ones each excel at two topics
        for topic in generator.choice(topics, 2, replace=False):
            strengths[agent, topic] = generator.uniform(0.88, 0.97)
    return prices, strengths


def upper_hull_area(points: list[tuple[float, float]], low: float, high: float) -> float:
    """Area under the non-decreasing upper hull of (cost, accuracy) points over [low, high]
    divided by its width: mixing two operating points at random reaches any point between them,
    so the hull is what a method can offer; it is flat after its dearest useful point and 0
    below its cheapest."""
    ordered = sorted(set(points))
    hull: list[tuple[float, float]] = []
    for point in ordered:
        if hull and point[1] <= hull[-1][1]:
            continue  # dearer and no better
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (point[1] - y1) - (point[0] - x1) * (y2 - y1) >= 0:
                hull.pop()
            else:
                break
        hull.append(point)
    grid = np.linspace(low, high, 2001)
    xs = np.array([x for x, _ in hull])
    ys = np.array([y for _, y in hull])
    values = np.interp(grid, xs, ys, left=0.0, right=ys[-1])
    values[grid < xs[0]] = 0.0
    return float(np.trapezoid(values, grid) / (high - low))


def expected_calibration_error(
    predicted: np.ndarray, observed: np.ndarray, bins: int = 10
) -> float:
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(predicted, edges) - 1, 0, bins - 1)
    error = 0.0
    for bin_index in range(bins):
        chosen = index == bin_index
        if chosen.any():
            error += chosen.mean() * abs(predicted[chosen].mean() - observed[chosen].mean())
    return float(error)


def linear_features(history_vectors: np.ndarray, dimensions: int):
    """A bias column and the first ``dimensions`` principal components of the history, scaled by
    the history alone (the linear models' inputs: 384 raw dimensions over ~80 outcomes per agent
    would only overfit)."""
    mean = history_vectors.mean(axis=0)
    _, _, components = np.linalg.svd(history_vectors - mean, full_matrices=False)
    axes = components[:dimensions].T
    scale = ((history_vectors - mean) @ axes).std(axis=0).max()

    def of(vectors: np.ndarray) -> np.ndarray:
        return np.hstack([np.ones((len(vectors), 1)), (vectors - mean) @ axes / scale])

    return of


def logistic_estimates(
    x: np.ndarray, agents: np.ndarray, outcomes: np.ndarray, queries: np.ndarray, penalty: float
) -> np.ndarray:
    """Per-agent L2-penalised logistic regression over ``linear_features`` (Newton steps), the
    per-agent logistic model the issue names; the bias is not penalised."""
    estimates = np.zeros((len(queries), AGENTS))
    regulariser = penalty * np.eye(x.shape[1])
    regulariser[0, 0] = 1e-6
    for agent in range(AGENTS):
        rows, labels = x[agents == agent], outcomes[agents == agent].astype(float)
        weights = np.zeros(x.shape[1])
        for _ in range(25):
            p = 1 / (1 + np.exp(-rows @ weights))
            gradient = rows.T @ (p - labels) + regulariser @ weights
            hessian = (rows * (p * (1 - p))[:, None]).T @ rows + regulariser
            weights -= np.linalg.solve(hessian, gradient)
        estimates[:, agent] = 1 / (1 + np.exp(-queries @ weights))
    return estimates


class LinUCB:
    """Disjoint LinUCB (Li et al. 2010; the Symphony-Coord work's allocator): per agent a ridge
    regression of acceptance on ``linear_features``, its mean clipped to a probability, and an upper
    confidence bonus ``alpha * sqrt(x' A^-1 x)``."""

    def __init__(self, dimensions: int, ridge: float) -> None:
        self.inverse = np.stack([np.eye(dimensions) / ridge] * AGENTS)
        self.b = np.zeros((AGENTS, dimensions))

    @classmethod
    def fitted(
        cls, x: np.ndarray, agents: np.ndarray, outcomes: np.ndarray, ridge: float
    ) -> LinUCB:
        model = cls(x.shape[1], ridge)
        for row, agent, accepted in zip(x, agents, outcomes, strict=True):
            model.update(int(agent), row, float(accepted))
        return model

    def update(self, agent: int, x: np.ndarray, reward: float) -> None:
        inverse = self.inverse[agent]
        shifted = inverse @ x  # Sherman-Morrison
        self.inverse[agent] = inverse - np.outer(shifted, shifted) / (1 + x @ shifted)
        self.b[agent] += reward * x

    def mean_and_width(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        theta = np.einsum("aij,aj->ai", self.inverse, self.b)
        mean = np.clip(x @ theta.T, 0.01, 0.99)
        width = np.sqrt(np.einsum("ti,aij,tj->ta", x, self.inverse, x))
        return mean, width


def cached_vectors(texts: list[str], model: str, embed) -> np.ndarray:
    """The texts' vectors, computed once per (model, texts) and kept under .data/bench/."""
    import hashlib
    from pathlib import Path

    key = hashlib.sha256("\n".join([model, *texts]).encode()).hexdigest()[:16]
    path = Path(__file__).resolve().parent.parent / ".data" / "bench" / f"routing-{key}.npy"
    if path.exists():
        return np.load(path)
    vectors = np.asarray(embed(texts), dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def main() -> None:
    args = parse_args("Routing quality of the market", extra_arguments)
    if args.quick:
        args.history, args.test, args.online = min(args.history, 40), min(args.test, 20), 100
    setup_django("bench_routing")
    import _task_corpus
    from django.conf import settings
    from django.contrib.auth.models import User

    from agents_registry import embeddings, estimates
    from agents_registry.matching import match_agents, rank
    from agents_registry.services import (
        agent_register,
        outcome_record,
        participant_for_user,
        profile_create,
        profile_embed,
    )

    settings.EMBEDDING_BACKEND = args.vectors
    model = embeddings.embedding_model_id()
    generator = np.random.default_rng(args.seed)
    topics = list(_task_corpus.TOPICS)
    per_topic = args.history + args.test + (args.online // len(topics) + 1)
    texts, labels = [], []
    for topic_index, topic in enumerate(topics):
        for text in _task_corpus.topic_texts(topic, per_topic, seed=args.seed):
            texts.append(text)
            labels.append(topic_index)
    labels_array = np.array(labels)
    started = time.perf_counter()
    vectors = cached_vectors(texts, model, embeddings.embed_texts)
    embed_seconds = time.perf_counter() - started
    # Per topic: the first ``history`` texts are the past, the next ``test`` held out, the rest
    # the online phase.
    history, test, online = [], [], []
    for topic_index in range(len(topics)):
        rows = np.flatnonzero(labels_array == topic_index)
        history += list(rows[: args.history])
        test += list(rows[args.history : args.history + args.test])
        online += list(rows[args.history + args.test :])
    online = list(generator.permutation(online)[: args.online])

    prices, strengths = hidden_strengths(generator, len(topics))
    owner = participant_for_user(user=User.objects.create_user("bench-owner"))
    agents, profiles = [], []
    for index in range(AGENTS):
        agent = agent_register(owner=owner, name=f"Agent {index:02d}")
        profile = profile_create(
            agent=agent,
            actor=owner,
            description=GENERIC,
            price_per_task=int(prices[index]),
            expected_latency_seconds=600,
        )
        profile_embed(profile_id=profile.pk)
        agents.append(agent.pk)
        profiles.append(profile.pk)
    position = {agent_id: index for index, agent_id in enumerate(agents)}

    def record(row: int, agent_index: int, accepted: bool, task_number: int) -> None:
        outcome_record(
            agent_id=agents[agent_index],
            profile_id=profiles[agent_index],
            task_ref=f"task:{task_number}",
            outcome="accepted" if accepted else "rejected",
            cost=int(prices[agent_index]),
            latency_seconds=60.0,
            embedding=vectors[row],
            embedding_model=model,
        )

    started = time.perf_counter()
    history_agents = generator.integers(0, AGENTS, len(history))
    history_outcomes = (
        generator.random(len(history)) < strengths[history_agents, labels_array[history]]
    )
    for number, (row, agent_index, accepted) in enumerate(
        zip(history, history_agents, history_outcomes, strict=True)
    ):
        record(row, int(agent_index), bool(accepted), number + 1)
    record_seconds = time.perf_counter() - started

    # Every agent's outcome on every held-out task, drawn once.
    passes = generator.random((len(test), AGENTS)) < strengths[:, labels_array[test]].T
    budget = int(prices.max())

    # The market: its estimates for every agent on every held-out task (one match each).
    started = time.perf_counter()
    inputs_per_task, predicted = [], np.zeros((len(test), AGENTS))
    for task_index, row in enumerate(test):
        result = match_agents(
            embedding=vectors[row],
            budget=budget,
            limit=AGENTS,
            weights={"exploration": 0.0},
            seed=task_index,
        )
        inputs = [candidate.estimate.inputs for candidate in result.candidates]
        inputs_per_task.append(inputs)
        for candidate in result.candidates:
            predicted[task_index, position[candidate.agent.pk]] = candidate.estimate.mean
    match_seconds = time.perf_counter() - started

    def evaluate(choices: list[int]) -> dict:
        chosen = np.array(choices)
        accuracy = float(passes[np.arange(len(test)), chosen].mean())
        return {
            "accuracy": round(accuracy, 4),
            "cost_per_1000": int(prices[chosen].sum() * 1000 / len(test)),
        }

    def market_choices(preference: float, *, global_only: bool = False) -> list[int]:
        parameters = {
            "budget": budget,
            "preference": preference,
            "exploration": 0.0,
            "seed": 0,
            "global_weight": settings.MATCH_GLOBAL_WEIGHT,
        }
        choices = []
        for inputs in inputs_per_task:
            if global_only:
                inputs = [
                    estimates.EstimateInputs(**{**item.as_dict(), "evidence": estimates.Evidence()})
                    for item in inputs
                ]
            choices.append(position[rank(inputs, parameters=parameters)[0][0].agent_id])
        return choices

    market_curve = {p: evaluate(market_choices(p)) for p in PREFERENCES}
    global_curve = {p: evaluate(market_choices(p, global_only=True)) for p in PREFERENCES}
    # How many different agents each one puts first across the held-out tasks (one: the ranking
    # does not depend on the task).
    distinct_first = {
        "market": len(set(market_choices(settings.MATCH_PREFERENCE))),
        "global_record_only": len(set(market_choices(settings.MATCH_PREFERENCE, global_only=True))),
    }

    # The nearest-neighbour router: the k nearest past tasks (any agent), each agent's smoothed
    # success rate among them, minus a cost penalty that its own knob sweeps.
    history_vectors = vectors[history]
    neighbours = 50
    rates = np.zeros((len(test), AGENTS))
    for task_index, row in enumerate(test):
        similarities = history_vectors @ vectors[row]
        nearest = np.argsort(-similarities)[:neighbours]
        for agent_index in range(AGENTS):
            mask = history_agents[nearest] == agent_index
            rates[task_index, agent_index] = (history_outcomes[nearest][mask].sum() + 1) / (
                mask.sum() + 2
            )
    knn_curve = {}
    for penalty in [0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2, 2.0, 5.0]:
        choices = list(np.argmax(rates - penalty * prices / prices.max(), axis=1))
        knn_curve[penalty] = evaluate(choices)

    singles = {f"agent_{index:02d}": evaluate([index] * len(test)) for index in range(AGENTS)}
    best_single = max(singles.values(), key=lambda item: (item["accuracy"], -item["cost_per_1000"]))
    oracle_choices = [
        int(np.flatnonzero(row)[np.argmin(prices[np.flatnonzero(row)])]) if row.any() else 0
        for row in passes
    ]
    random_figures = {
        "accuracy": round(float(passes.mean()), 4),
        "cost_per_1000": int(prices.mean() * 1000),
    }

    low, high = float(prices.min() * 1000), float(prices.max() * 1000)

    def area(curve: dict) -> float:
        return round(
            upper_hull_area(
                [(v["cost_per_1000"], v["accuracy"]) for v in curve.values()], low, high
            ),
            4,
        )

    default_preference = settings.MATCH_PREFERENCE
    default_point = evaluate(market_choices(default_preference))
    # The cheapest market point at least as accurate as the best single agent.
    qualifying = [
        (value["cost_per_1000"], preference, value)
        for preference, value in market_curve.items()
        if value["accuracy"] >= best_single["accuracy"]
    ]
    best_point = min(qualifying)[2] if qualifying else None

    # Calibration of the market's estimates over every (task, agent) pair, and over the chosen.
    chosen_default = market_choices(default_preference)
    ece_all = expected_calibration_error(predicted.ravel(), passes.ravel().astype(float))
    ece_chosen = expected_calibration_error(
        predicted[np.arange(len(test)), chosen_default],
        passes[np.arange(len(test)), chosen_default].astype(float),
    )

    # The other estimators the issue names, on the same history and the same draws, ranked by
    # the market's own rule (expected net value at each preference): each at its best setting
    # on these held-out tasks, which flatters them, not the market.
    def curve_of(probabilities: np.ndarray) -> dict:
        return {
            preference: evaluate(
                list(
                    np.argmax(
                        probabilities
                        - prices[None, :]
                        / estimates.value_of_success(budget=budget, preference=preference),
                        axis=1,
                    )
                )
            )
            for preference in PREFERENCES
        }

    def summary(probabilities: np.ndarray, setting: dict) -> dict:
        curve = curve_of(probabilities)
        at_best = [
            value["cost_per_1000"]
            for value in curve.values()
            if value["accuracy"] >= best_single["accuracy"]
        ]
        return {
            "setting": setting,
            "area": area(curve),
            "cheapest_share_of_best_single_cost": round(
                min(at_best) / best_single["cost_per_1000"], 3
            )
            if at_best
            else None,
            "ece_all_pairs": round(
                expected_calibration_error(probabilities.ravel(), passes.ravel().astype(float)), 4
            ),
        }

    def best_of(candidates: list[tuple[dict, np.ndarray]]) -> dict:
        return max((summary(p, setting) for setting, p in candidates), key=lambda s: s["area"])

    linear_settings = [(dimensions, ridge) for dimensions in (8, 16, 32) for ridge in (1.0, 4.0)]
    logistic, linucb_offline = [], []
    for dimensions, ridge in linear_settings:
        of = linear_features(history_vectors, dimensions)
        x_history, x_test = of(history_vectors), of(vectors[test])
        setting = {"dimensions": dimensions, "penalty": ridge}
        logistic.append(
            (
                setting,
                logistic_estimates(x_history, history_agents, history_outcomes, x_test, ridge),
            )
        )
        fitted = LinUCB.fitted(x_history, history_agents, history_outcomes, ridge)
        linucb_offline.append((setting, fitted.mean_and_width(x_test)[0]))
    estimator_comparison = {
        "market_knn_beta": summary(predicted, {"global_weight": settings.MATCH_GLOBAL_WEIGHT}),
        "knn_router_rates": summary(rates, {"neighbours": neighbours}),
        "logistic_per_agent": best_of(logistic),
        "linucb_ridge_mean": best_of(linucb_offline),
    }

    # Online: the market chooses with Thompson sampling (seeded per task) and learns from each
    # outcome; regret is the oracle's expected net value minus the chosen one's. Every agent's
    # outcome on each online task is drawn once, so LinUCB (same history, same rule, its upper
    # confidence bound instead of a draw) faces the same draws.
    value = estimates.value_of_success(budget=budget, preference=default_preference)
    expected_net = strengths[:, labels_array[online]].T - prices[None, :] / value
    online_passes = generator.random((len(online), AGENTS)) < strengths[:, labels_array[online]].T
    window = max(1, len(online) // 4)

    def per_quarter(values: list[float]) -> list[float]:
        return [
            round(float(np.mean(values[i : i + window])), 4) for i in range(0, len(values), window)
        ]

    regrets, hits = [], []
    started = time.perf_counter()
    for step, row in enumerate(online):
        result = match_agents(
            embedding=vectors[row], budget=budget, limit=AGENTS, seed=10_000 + step
        )
        chosen = position[result.candidates[0].agent.pk]
        accepted = bool(online_passes[step, chosen])
        record(row, chosen, accepted, 100_000 + step)
        regrets.append(float(expected_net[step].max() - expected_net[step, chosen]))
        hits.append(accepted)
    online_seconds = time.perf_counter() - started
    regret_windows = per_quarter(regrets)

    best_linear = estimator_comparison["linucb_ridge_mean"]["setting"]
    of = linear_features(history_vectors, best_linear["dimensions"])
    x_history, x_online = of(history_vectors), of(vectors[online])
    linucb_online = {}
    for alpha in (0.25, 1.0):
        model_state = LinUCB.fitted(
            x_history, history_agents, history_outcomes, best_linear["penalty"]
        )
        linucb_regrets, linucb_hits = [], []
        for step in range(len(online)):
            mean, width = model_state.mean_and_width(x_online[step : step + 1])
            chosen = int(np.argmax(mean[0] + alpha * width[0] - prices / value))
            accepted = bool(online_passes[step, chosen])
            model_state.update(chosen, x_online[step], float(accepted))
            linucb_regrets.append(float(expected_net[step].max() - expected_net[step, chosen]))
            linucb_hits.append(accepted)
        linucb_online[f"alpha_{alpha}"] = {
            "accuracy": round(float(np.mean(linucb_hits)), 4),
            "mean_regret_per_quarter": per_quarter(linucb_regrets),
        }

    figures = {
        "vectors": args.vectors,
        "model_id": model,
        "agents": AGENTS,
        "topics": len(topics),
        "history_tasks": len(history),
        "test_tasks": len(test),
        "prices": prices.tolist(),
        "settings": {
            "preference_default": default_preference,
            "neighbours": settings.MATCH_NEIGHBOURS,
            "radius": settings.MATCH_KERNEL_RADIUS,
            "width": settings.MATCH_KERNEL_WIDTH,
            "global_weight": settings.MATCH_GLOBAL_WEIGHT,
        },
        "seconds": {
            "embed": round(embed_seconds, 1),
            "record_history": round(record_seconds, 1),
            "match_test": round(match_seconds, 1),
            "online": round(online_seconds, 1),
        },
        "single_agents": singles,
        "best_single": best_single,
        "oracle": evaluate(oracle_choices),
        "random": random_figures,
        "market_default": default_point,
        "market_cheapest_at_best_single_accuracy": best_point,
        "market_curve": market_curve,
        "global_record_only_curve": global_curve,
        "distinct_agents_chosen": distinct_first,
        "knn_router_curve": knn_curve,
        "area_under_hull": {
            "market": area(market_curve),
            "knn_router": area(knn_curve),
            "single_agents": area(singles),
            "global_record_only": area(global_curve),
        },
        "ece": {"all_pairs": round(ece_all, 4), "chosen": round(ece_chosen, 4)},
        "online": {
            "tasks": len(online),
            "accuracy": round(float(np.mean(hits)), 4),
            "mean_regret_per_quarter": regret_windows,
            "linucb": linucb_online,
        },
        "estimators": estimator_comparison,
    }
    figures["targets"] = {
        "accuracy_ge_best_single_at_le_65pct_cost": bool(
            best_point and best_point["cost_per_1000"] <= 0.65 * best_single["cost_per_1000"]
        ),
        "auc_above_singles_and_knn": figures["area_under_hull"]["market"]
        > max(
            figures["area_under_hull"]["single_agents"], figures["area_under_hull"]["knn_router"]
        ),
        "ece_le_0.05": ece_all <= 0.05,
    }
    emit("routing", figures, quick=args.quick)


if __name__ == "__main__":
    main()
