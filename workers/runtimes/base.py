"""What every runtime receives and returns.

A runtime is a function ``run(context) -> RunResult``. It records what it does through
``context.record(...)`` (trace events, committed as they happen so the trace page shows progress)
and meters cost through ``context.charge(...)``, which stops the run with BudgetExceeded before the
cost would pass the task's budget. It raises TransientRuntimeError for failures worth retrying and
RuntimeFailure for the others.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from workers.exceptions import BudgetExceeded

# Browsers send a textarea's lines ending in \r\n: a fence is recognised either way.
_FENCED = re.compile(r"```[a-zA-Z0-9_-]*\r?\n(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class Revision:
    """A run that revises an earlier delivery: what the poster asked to change (or, after failed
    checks, their evidence), and what was delivered."""

    delivery_id: int
    message: str
    previous_text: str = ""


@dataclass(frozen=True)
class TaskBrief:
    """The task as a runtime sees it: what to do and how the result will be judged."""

    task_id: int
    title: str
    description: str
    acceptance_criteria: str = ""
    checks: dict[str, Any] = field(default_factory=dict)
    budget: int = 0
    revision: Revision | None = None

    @property
    def material(self) -> str:
        """The content to work on: the first fenced block of the description, else all of it."""
        match = _FENCED.search(self.description)
        return match.group(1).strip() if match else self.description.strip()


@dataclass
class RunResult:
    text: str = ""
    data: Any = None
    # True when the agent accepted the task and will deliver later through the API.
    accepted_for_later_delivery: bool = False


@dataclass
class RunContext:
    execution_id: int
    attempt: int
    task: TaskBrief
    agent_config: dict[str, Any]
    record: Callable[..., None]
    time_limit_seconds: float = 60.0
    # Decrypted secrets for this run only: webhook signing secrets (current first), an API key.
    webhook_secrets: tuple[str, ...] = ()
    api_key: str = ""
    # Absolute URLs the agent may call back (deliver later, append trace events).
    callback_urls: dict[str, str] = field(default_factory=dict)
    spent: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    # The events ``record`` held back, for the worker to write with the attempt's outcome (see
    # workers.services.traces.BufferedTrace); empty when ``record`` writes them as they happen.
    take_held_events: Callable[[], list[dict[str, Any]]] = list

    def charge(self, *, cost: int, input_tokens: int = 0, output_tokens: int = 0) -> None:
        """Meter usage; refuses, before counting it, a cost that would pass the budget."""
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        if self.spent + cost > self.task.budget:
            raise BudgetExceeded(
                f"This run would cost {self.spent + cost} credits, over the task's budget of "
                f"{self.task.budget}; it stopped after spending {self.spent}."
            )
        self.spent += cost


def price_for_tokens(config: dict[str, Any], *, input_tokens: int, output_tokens: int) -> int:
    """Credits for token usage at the agent's declared prices per 1,000 tokens, rounded up."""
    input_price = int(config.get("price_per_1k_input_tokens", 0))
    output_price = int(config.get("price_per_1k_output_tokens", 0))
    micro = input_tokens * input_price + output_tokens * output_price
    return -(-micro // 1000)
