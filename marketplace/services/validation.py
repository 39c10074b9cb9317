"""Input rules shared by the services (the API and forms show these messages as they are)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone
from jsonschema import SchemaError
from jsonschema.validators import validator_for

from marketplace.exceptions import InvalidInput
from marketplace.services import linear_regex

MAX_TITLE = 200
MAX_DESCRIPTION = 20_000
MAX_PLAN = 2_000
MAX_ETA_HOURS = 24 * 365
MAX_BOUNTY = 10**12
MAX_REVIEW_TEXT = 5_000  # a reason to reject, a revision request, dispute evidence
MAX_ABANDON_REASON = 2_000
MAX_AUTO_AWARD_BIDS = 100
MAX_AUTO_AWARD_WINDOW_HOURS = 24 * 90
CHECK_KEYS = {"json_schema", "regex", "required_fields"}


def clean_text(value: Any, *, field: str, maximum: int, required: bool = True) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be text.")
    value = value.strip()
    if required and not value:
        raise InvalidInput(f"{field} is required.")
    if len(value) > maximum:
        raise InvalidInput(f"{field} is {len(value)} characters long; the limit is {maximum}.")
    return value


def clean_positive_int(value: Any, *, field: str, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{field} must be a whole number of credits.")
    if value <= 0:
        raise InvalidInput(f"{field} must be greater than zero.")
    if maximum is not None and value > maximum:
        raise InvalidInput(f"{field} must be at most {maximum}.")
    return value


def clean_deadline(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if timezone.is_naive(value):
        raise InvalidInput("deadline must include a time zone.")
    if value <= timezone.now():
        raise InvalidInput("deadline must be in the future.")
    return value


def clean_checks(checks: dict | None) -> dict:
    """Machine checks: ``json_schema`` (a JSON Schema for the delivery's data), ``regex`` (must
    match the delivery's text), ``required_fields`` (keys, dotted for nesting, of the data)."""
    if not checks:
        return {}
    if not isinstance(checks, dict):
        raise InvalidInput("checks must be an object.")
    unknown = set(checks) - CHECK_KEYS
    if unknown:
        raise InvalidInput(
            f"Unknown checks: {', '.join(sorted(unknown))}; use {', '.join(sorted(CHECK_KEYS))}."
        )
    cleaned: dict[str, Any] = {}
    if "json_schema" in checks:
        schema = checks["json_schema"]
        if not isinstance(schema, dict):
            raise InvalidInput("checks.json_schema must be a JSON Schema object.")
        try:
            validator_for(schema).check_schema(schema)
            linear_regex.schema_patterns_check(schema, "checks.json_schema")
        except SchemaError as error:
            raise InvalidInput(
                f"checks.json_schema is not a valid schema: {error.message}"
            ) from None
        except linear_regex.UnsupportedPattern as error:
            raise InvalidInput(str(error)) from None
        cleaned["json_schema"] = schema
    if "regex" in checks:
        pattern = checks["regex"]
        if not isinstance(pattern, str) or not pattern or len(pattern) > linear_regex.MAX_PATTERN:
            raise InvalidInput(
                f"checks.regex must be a pattern of 1 to {linear_regex.MAX_PATTERN} characters."
            )
        try:
            linear_regex.compiled(pattern)
        except linear_regex.UnsupportedPattern as error:
            raise InvalidInput(f"checks.regex does not compile: {error}") from None
        cleaned["regex"] = pattern
    if "required_fields" in checks:
        fields = checks["required_fields"]
        if (
            not isinstance(fields, list)
            or not fields
            or not all(isinstance(name, str) and name for name in fields)
        ):
            raise InvalidInput("checks.required_fields must be a non-empty list of field names.")
        cleaned["required_fields"] = fields
    return cleaned


def clean_auto_award(auto_award: dict | None) -> dict:
    """``{"after_bids": n}`` awards when the n-th bid arrives; ``{"window_hours": h}`` awards the
    best bid h hours after posting; both together award at whichever comes first. ``preference``
    (0..1): what the automatic award weighs, from the cheapest bid likely to pass (0) to the bid
    most likely to pass within the bounty (1); the market's default when absent."""
    if not auto_award:
        return {}
    if not isinstance(auto_award, dict):
        raise InvalidInput("auto_award must be an object.")
    unknown = set(auto_award) - {"after_bids", "window_hours", "preference"}
    if unknown:
        raise InvalidInput(f"Unknown auto_award options: {', '.join(sorted(unknown))}.")
    cleaned: dict[str, float] = {}
    if auto_award.get("after_bids") is not None:
        cleaned["after_bids"] = clean_positive_int(
            auto_award["after_bids"], field="auto_award.after_bids", maximum=MAX_AUTO_AWARD_BIDS
        )
    if auto_award.get("window_hours") is not None:
        cleaned["window_hours"] = clean_positive_int(
            auto_award["window_hours"],
            field="auto_award.window_hours",
            maximum=MAX_AUTO_AWARD_WINDOW_HOURS,
        )
    if not cleaned:
        raise InvalidInput("auto_award needs after_bids or window_hours.")
    preference = auto_award.get("preference")
    if preference is not None:
        if isinstance(preference, bool) or not isinstance(preference, int | float):
            raise InvalidInput("auto_award.preference must be a number from 0 to 1.")
        if not 0.0 <= float(preference) <= 1.0:
            raise InvalidInput("auto_award.preference must be from 0 to 1.")
        cleaned["preference"] = float(preference)
    return cleaned
