"""Distilled experience: every accepted public task leaves a skill behind.

When a delivery is accepted (by the poster or at the end of the review window), the market's
accept hook queues ``workers.skill_distill`` for after the commit. It writes what a later agent
can reuse: what was asked, the criteria and checks it met, the plan that won the auction, what was
delivered (an excerpt, the data's shape) and at what price, as a versioned "experience" skill of
the assignee, with its
provenance (the task, and the execution's trace for a hosted agent). The skill is embedded like
any other, so it is found by meaning in the skill library and can be declared in ``skills_used``,
which pays its creator royalties on reuse. It lives here, in the top layer, because it reads the
market's task and the worker's execution and writes the registry's skill.

Private tasks leave nothing: the skill library is public. Once per task: the task's row lock
serialises two runs of the same message.
"""

from __future__ import annotations

from django.db import transaction

from agents_registry.models import Skill, SkillVersion
from agents_registry.services import skill_publish
from marketplace.models import Bid, Delivery, Task
from workers.models import Execution
from workers.services.hosted_bids import hosted_bids_retry_queue
from workers.services.outbox import outbox_send_on_commit

EXCERPT_CHARS = 1_500


def _excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _data_shape(data: object) -> str:
    if isinstance(data, dict):
        return "a JSON object with " + ", ".join(f"`{key}`" for key in list(data)[:20])
    if isinstance(data, list):
        return f"a JSON list of {len(data)} items"
    return ""


def skill_distill_from_task(*, task_id: int) -> SkillVersion | None:
    """The experience skill of an accepted public task (made once); None when it leaves none."""
    with transaction.atomic():
        task = (
            Task.objects.select_for_update(of=("self",))
            .select_related("assignee")
            .filter(pk=task_id)
            .first()
        )
        if (
            task is None
            or task.state != Task.State.ACCEPTED
            or task.visibility != Task.Visibility.PUBLIC
            or task.assignee is None
        ):
            return None
        existing = SkillVersion.objects.filter(
            provenance_task_ref=task.ledger_ref,
            skill__kind=Skill.Kind.EXPERIENCE,
            skill__creator=task.assignee,
        ).first()
        if existing is not None:
            return existing
        delivery = Delivery.objects.filter(task=task, status=Delivery.Status.ACCEPTED).first()
        if delivery is None:
            return None
        plan = (
            Bid.objects.filter(task=task, bidder=task.assignee, status=Bid.Status.AWARDED)
            .values_list("plan", flat=True)
            .first()
        )
        execution = (
            Execution.objects.filter(task_ref=task.pk, agent__participant=task.assignee)
            .order_by("-pk")
            .values_list("pk", flat=True)
            .first()
        )
        passed = [result["check"] for result in delivery.check_results if result.get("passed")]
        lines = [
            f"Task: {task.title}",
            f"What was asked:\n{_excerpt(task.description)}",
        ]
        if task.acceptance_criteria:
            lines.append(f"Accepted when: {_excerpt(task.acceptance_criteria, 600)}")
        if passed:
            lines.append(f"Machine checks passed: {', '.join(passed)}")
        if plan:
            lines.append(f"Plan that won the auction: {_excerpt(plan, 600)}")
        delivered = [part for part in (_excerpt(delivery.text), _data_shape(delivery.data)) if part]
        if delivered:
            lines.append("What was delivered and accepted:\n" + "\n".join(delivered))
        lines.append(f"Price: {task.price:,} credits.")
        return skill_publish(
            creator=task.assignee,
            kind=Skill.Kind.EXPERIENCE,
            title=f"Experience: {task.title}"[:160],
            body="\n\n".join(lines),
            provenance_task_ref=task.ledger_ref,
            provenance_trace_ref=f"execution:{execution}" if execution else "",
        )


def skill_distill_queue(*, task: Task) -> None:
    """The market's accept hook (``MARKET_ACCEPT_HANDLER``), inside the settlement's transaction:
    distil the task after the commit, through the outbox (a broker that is down delays it). The
    assignee's slot is free again: tasks that got no hosted bid while it was busy are offered
    again."""
    if task.visibility == Task.Visibility.PUBLIC:
        outbox_send_on_commit("workers.skill_distill", kwargs={"task_id": task.pk})
    if task.assignee is not None and task.assignee.kind == "agent":
        hosted_bids_retry_queue()
