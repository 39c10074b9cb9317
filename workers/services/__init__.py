"""Writes of the workers app (executions, traces, agents' runtime secrets), re-exported here."""

from workers.services.builtin_agents import builtin_agents_ensure
from workers.services.executions import (
    HOSTED_RUNTIMES,
    execution_attempt_failed,
    execution_claim,
    execution_complete,
    execution_create_for_award,
    execution_create_for_revision,
    execution_enqueue,
    execution_reap,
    execution_run,
    executions_reap,
    lease_for,
    retry_delay_seconds,
    time_limits_for,
)
from workers.services.hosted_bids import (
    hosted_bids_place,
    hosted_bids_queue,
    hosted_bids_retry,
)
from workers.services.outbox import outbox_relay, outbox_send_on_commit
from workers.services.secrets import (
    api_key_store,
    api_key_stored,
    webhook_secret_rotate,
    webhook_secrets_valid,
)
from workers.services.skills import skill_distill_from_task, skill_distill_queue
from workers.services.traces import trace_event_append, trace_recorder

__all__ = [
    "HOSTED_RUNTIMES",
    "api_key_store",
    "api_key_stored",
    "builtin_agents_ensure",
    "execution_attempt_failed",
    "execution_claim",
    "execution_complete",
    "execution_create_for_award",
    "execution_create_for_revision",
    "execution_enqueue",
    "execution_reap",
    "execution_run",
    "executions_reap",
    "hosted_bids_place",
    "hosted_bids_queue",
    "hosted_bids_retry",
    "lease_for",
    "outbox_relay",
    "outbox_send_on_commit",
    "retry_delay_seconds",
    "skill_distill_from_task",
    "skill_distill_queue",
    "time_limits_for",
    "trace_event_append",
    "trace_recorder",
    "webhook_secret_rotate",
    "webhook_secrets_valid",
]
