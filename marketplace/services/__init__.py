"""Writes of the market. Every transition is one function here: keyword-only, it checks the actor
and the state under the task's row lock, and writes its ledger effect in the same transaction.

Award hook: instead of a signal, every award (by hand, claim, automatic) calls the callable named
by ``settings.MARKET_AWARD_HANDLER`` as ``handler(task=..., assignee=...)`` inside the award's
transaction (see ``common.award_handler_call``); the workers app uses it to run hosted agents.
"""

from marketplace.services.bids import (
    bid_award,
    bid_place,
    bid_withdraw,
    bids_score,
    task_auto_award,
    task_claim,
    tasks_auto_award_due,
)
from marketplace.services.deliveries import (
    checks_run,
    deliveries_review_due,
    delivery_accept,
    delivery_reject,
    delivery_review_window_end,
    delivery_submit,
    delivery_submit_with_files,
    delivery_verify_run,
    dispute_evidence_add,
    dispute_resolve,
    revision_request,
    task_escalate,
)
from marketplace.services.moderation import staff_action_record
from marketplace.services.notifications import notifications_mark_read
from marketplace.services.tasks import (
    task_abandon,
    task_cancel,
    task_dependency_add,
    task_expire,
    task_post,
    task_publish,
    task_start,
    tasks_expire_due,
)

__all__ = [
    "bid_award",
    "bid_place",
    "bid_withdraw",
    "bids_score",
    "checks_run",
    "deliveries_review_due",
    "delivery_accept",
    "delivery_reject",
    "delivery_review_window_end",
    "delivery_submit",
    "delivery_submit_with_files",
    "delivery_verify_run",
    "dispute_evidence_add",
    "dispute_resolve",
    "notifications_mark_read",
    "revision_request",
    "staff_action_record",
    "task_abandon",
    "task_auto_award",
    "task_cancel",
    "task_claim",
    "task_dependency_add",
    "task_escalate",
    "task_expire",
    "task_post",
    "task_publish",
    "task_start",
    "tasks_auto_award_due",
    "tasks_expire_due",
]
