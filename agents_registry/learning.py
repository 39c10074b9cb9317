"""How well the market's choices learn (read side, re-exported by ``selectors``): from every
ended outcome linked to the decision that chose its agent, the estimate the decision made for
that agent (recomputed from the record's stored inputs), what happened, what it cost, and the
estimated regret of the choice (the best candidate's expected net value minus the chosen one's,
both from the record's inputs at the time). Series are drawn as server-rendered SVG."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agents_registry import estimates
from agents_registry.models import DecisionRecord, Outcome

CHART_WIDTH = 320
CHART_HEIGHT = 200
PAD = 28


@dataclass
class Chart:
    title: str
    points: Sequence[tuple[float, float]]  # data coordinates
    x_label: str
    y_label: str
    diagonal: bool = False
    svg_points: str = ""
    svg_circles: list[tuple[float, float]] = field(default_factory=list)
    y_max: float = 1.0

    def layout(self) -> Chart:
        xs = [x for x, _ in self.points] or [0.0, 1.0]
        ys = [y for _, y in self.points] or [0.0, 1.0]
        x_low, x_high = (0.0, 1.0) if self.diagonal else (min(xs), max(xs))
        self.y_max = 1.0 if self.diagonal else max(max(ys), 1e-9)
        width, height = CHART_WIDTH - 2 * PAD, CHART_HEIGHT - 2 * PAD

        def place(x: float, y: float) -> tuple[float, float]:
            left = PAD + (0.5 if x_high == x_low else (x - x_low) / (x_high - x_low)) * width
            return round(left, 1), round(CHART_HEIGHT - PAD - y / self.y_max * height, 1)

        placed = [place(x, y) for x, y in self.points]
        self.svg_points = " ".join(f"{x},{y}" for x, y in placed)
        self.svg_circles = placed
        return self


def _chosen_inputs(record: DecisionRecord, agent_id: int) -> tuple[list, Any]:
    """All candidates' inputs of a decision, and the chosen agent's."""
    if "bids" in record.parameters:
        ranking = record.parameters.get("ranking") or {}
        items = [bid["inputs"] for bid in record.parameters["bids"] if bid.get("inputs")]
    else:
        ranking = record.parameters
        items = [candidate.inputs for candidate in record.candidates.all() if candidate.inputs]
    inputs = [estimates.EstimateInputs.from_dict(item) for item in items]
    chosen = next((item for item in inputs if item.agent_id == agent_id), None)
    return inputs, (chosen, ranking)


def learning_report(*, agent_id: int | None = None, limit: int = 2000) -> dict[str, Any]:
    """The market's (or one agent's) calibration, cost per accepted result over time and
    estimated regret over time, from the most recent ``limit`` decided, ended outcomes."""
    ended = (*Outcome.SUCCESS_KINDS, *Outcome.FAILURE_KINDS)
    outcomes = Outcome.objects.filter(decision__isnull=False, outcome__in=ended)
    if agent_id is not None:
        outcomes = outcomes.filter(agent_id=agent_id)
    rows = list(
        outcomes.select_related("decision")
        .prefetch_related("decision__candidates")
        .order_by("-created_at", "-id")[:limit]
    )
    rows.reverse()
    calibration: dict[int, list[tuple[float, int]]] = defaultdict(list)
    by_day: dict[str, dict[str, float]] = defaultdict(lambda: {"cost": 0, "accepted": 0, "n": 0})
    regret_by_day: dict[str, list[float]] = defaultdict(list)
    for outcome in rows:
        assert outcome.decision is not None  # the query keeps decided outcomes only
        inputs, (chosen, ranking) = _chosen_inputs(outcome.decision, outcome.agent_id)
        day = outcome.created_at.date().isoformat()
        accepted = int(outcome.outcome == Outcome.Kind.ACCEPTED)
        by_day[day]["cost"] += outcome.cost
        by_day[day]["accepted"] += accepted
        by_day[day]["n"] += 1
        if chosen is None or not ranking:
            continue
        weight = ranking.get("global_weight")
        predicted = estimates.estimate(chosen, global_weight=weight).mean
        calibration[min(9, int(predicted * 10))].append((predicted, accepted))
        value = estimates.value_of_success(
            budget=ranking.get("budget", chosen.price), preference=ranking.get("preference", 0.5)
        )
        nets = {
            item.agent_id: estimates.estimate(item, global_weight=weight).mean - item.price / value
            for item in inputs
        }
        regret_by_day[day].append(max(nets.values()) - nets[chosen.agent_id])
    bins = [
        (
            sum(p for p, _ in pairs) / len(pairs),
            sum(a for _, a in pairs) / len(pairs),
            len(pairs),
        )
        for _, pairs in sorted(calibration.items())
    ]
    total = sum(n for _, _, n in bins)
    ece = sum(n / total * abs(p - a) for p, a, n in bins) if total else None
    days = sorted(by_day)
    cost_series = [
        (index, by_day[day]["cost"] / by_day[day]["accepted"])
        for index, day in enumerate(days)
        if by_day[day]["accepted"]
    ]
    regret_days = sorted(regret_by_day)
    regret_series = [
        (index, sum(regret_by_day[day]) / len(regret_by_day[day]))
        for index, day in enumerate(regret_days)
    ]
    accepted_total = sum(int(day["accepted"]) for day in by_day.values())
    return {
        "outcomes": len(rows),
        "accepted": accepted_total,
        "ece": ece,
        "calibration_bins": bins,
        "days": days,
        "charts": [
            Chart(
                "Calibration: predicted vs observed acceptance",
                [(p, a) for p, a, _ in bins],
                "predicted P(accepted)",
                "observed share accepted",
                diagonal=True,
            ).layout(),
            Chart(
                "Cost per accepted result, by day",
                cost_series,
                "day",
                "credits per accepted",
            ).layout(),
            Chart(
                "Estimated regret of the choices, by day",
                regret_series,
                "day",
                "best minus chosen net value",
            ).layout(),
        ],
    }
