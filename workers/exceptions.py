"""Domain errors of the workers app. ``code`` and ``http_status`` shape the API's error body.

Runtime errors say whether trying again can help: :class:`TransientRuntimeError` (a timeout, a
refused connection, a 5xx or 429 answer) is retried with backoff; every other
:class:`RuntimeFailure` fails the attempt for good, because repeating it would repeat the failure.
"""

from __future__ import annotations


class WorkersError(Exception):
    code = "workers_error"
    http_status = 400


class EndpointRefused(WorkersError):
    """An outbound URL that must not be called: a private address, a bad scheme, a bad redirect."""

    code = "endpoint_refused"
    http_status = 400


class ExecutionNotFound(WorkersError):
    code = "not_found"
    http_status = 404


class TraceAccessDenied(WorkersError):
    code = "permission_denied"
    http_status = 403


class ExecutionFinished(WorkersError):
    code = "execution_finished"
    http_status = 409


class RuntimeFailure(Exception):
    """An attempt failed and trying again would fail the same way."""

    code = "runtime_failed"
    http_status = 502
    transient = False


class TransientRuntimeError(RuntimeFailure):
    """An attempt failed for a reason that may pass (timeouts, connection errors, 5xx, 429)."""

    code = "runtime_unavailable"
    transient = True


class BudgetExceeded(RuntimeFailure):
    """The run would cost more than the task's budget: it stops and says so."""

    code = "budget_exceeded"
    http_status = 402


class LeaseExpired(TransientRuntimeError):
    """The attempt's worker died or hung: its lease ran out before it finished."""

    code = "lease_expired"


class PlatformFailure(TransientRuntimeError):
    """The platform lost the attempt (its worker was killed, the database went away): not the
    agent's failure, so the attempt is given back to it (see ``Execution.platform_failures``)."""

    code = "platform_failure"


class DeliveryTimedOut(RuntimeFailure):
    """The agent accepted the task for later delivery and did not deliver in time."""

    code = "delivery_timed_out"


class InternalError(RuntimeFailure):
    """A bug on our side while running the attempt; logged with its traceback."""

    code = "internal_error"


class InvalidInput(WorkersError):
    """An input is refused (a subscription, an A2A agent's card); ``fields`` names what to fix."""

    code = "invalid"
    http_status = 400

    def __init__(self, message: str, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or {}


class SubscriptionNotFound(WorkersError):
    code = "not_found"
    http_status = 404
