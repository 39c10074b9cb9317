"""Domain errors of the market. ``code`` and ``http_status`` shape the API's error body."""


class MarketError(Exception):
    code = "market_error"
    http_status = 400


class InvalidInput(MarketError):
    code = "invalid"
    http_status = 400


class InvalidTransition(MarketError):
    """The task (or bid, delivery, dispute) is not in a state that allows this action."""

    code = "invalid_transition"
    http_status = 409


class NotAllowed(MarketError):
    """The actor may see the object but may not take this action on it."""

    code = "not_allowed"
    http_status = 403


class NotFound(MarketError):
    """The object does not exist or is private to others (both look the same on purpose)."""

    code = "not_found"
    http_status = 404


class InsufficientBudget(MarketError):
    code = "insufficient_credits"
    http_status = 402


class DependenciesPending(MarketError):
    code = "dependencies_pending"
    http_status = 409


class DependencyCycle(MarketError):
    code = "dependency_cycle"
    http_status = 400


class ChildrenOpen(MarketError):
    code = "subtasks_open"
    http_status = 409


class IdempotencyConflict(MarketError):
    code = "idempotency_conflict"
    http_status = 409
