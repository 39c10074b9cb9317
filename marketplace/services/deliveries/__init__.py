"""Deliveries: submit (with files), machine checks, accept (settle), request a revision, reject
(dispute), the end of the review window, escalation of stalled work, and staff resolution of
disputes. One module per concern; every public name is importable from here as before."""

from marketplace.services.deliveries.checks import checks_run, delivery_verify_run
from marketplace.services.deliveries.disputes import (
    delivery_reject,
    dispute_evidence_add,
    dispute_resolve,
    task_escalate,
)
from marketplace.services.deliveries.files import (
    ALLOWED_FILE_TYPES,
    MAX_DATA_BYTES,
    MAX_FILES,
    MAX_TEXT,
    DeliveryWithFiles,
    delivery_submit,
    delivery_submit_with_files,
)
from marketplace.services.deliveries.review import (
    deliveries_review_due,
    delivery_review_window_end,
    revision_request,
)
from marketplace.services.deliveries.settlement import delivery_accept

__all__ = [
    "ALLOWED_FILE_TYPES",
    "MAX_DATA_BYTES",
    "MAX_FILES",
    "MAX_TEXT",
    "DeliveryWithFiles",
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
    "revision_request",
    "task_escalate",
]
