"""The machine checks of a task's acceptance criteria, run on a delivery in a worker; the built-in
verifier agent (``workers/runtimes/builtin.py``) runs the same ``checks_run`` on its material."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from marketplace.models import Delivery
from marketplace.services import linear_regex
from marketplace.services.common import transition_record


def _field_present(data: Any, dotted: str) -> bool:
    current = data
    for part in dotted.split("."):
        if not isinstance(current, dict) or part not in current:
            return False
        current = current[part]
    return True


def checks_run(*, checks: dict, text: str, data: Any) -> list[dict[str, Any]]:
    """Run the machine checks; each result says what was checked, whether it passed, and why."""
    results: list[dict[str, Any]] = []
    if "json_schema" in checks:
        if data is None:
            results.append(
                {"check": "json_schema", "passed": False, "evidence": "The delivery has no data."}
            )
        else:
            validator = linear_regex.schema_validator(checks["json_schema"])
            errors = sorted(validator.iter_errors(data), key=lambda error: list(error.path))
            evidence = [
                f"{'/'.join(map(str, error.path)) or '(root)'}: {error.message}"
                for error in errors[:10]
            ]
            results.append(
                {
                    "check": "json_schema",
                    "passed": not errors,
                    "evidence": "; ".join(evidence) if errors else "The data matches the schema.",
                }
            )
    if "regex" in checks:
        try:
            match = linear_regex.search(checks["regex"], text or "")
            regex_evidence = (
                f"Matched “{match.group(0)[:200]}” at position {match.start()}."
                if match
                else f"No match for {checks['regex']!r} in the text."
            )
        except linear_regex.UnsupportedPattern as error:  # a task posted before checks ran RE2
            match, regex_evidence = None, f"The pattern cannot run: {error}"
        results.append({"check": "regex", "passed": match is not None, "evidence": regex_evidence})
    if "required_fields" in checks:
        missing = [name for name in checks["required_fields"] if not _field_present(data, name)]
        results.append(
            {
                "check": "required_fields",
                "passed": not missing,
                "evidence": (
                    "Missing: " + ", ".join(missing) if missing else "All required fields present."
                ),
            }
        )
    return results


def delivery_verify_run(*, delivery_id: int) -> bool:
    """Run the checks of one delivery and store the results; a redelivered message finds the
    results stored and does nothing (the conditional update admits one writer)."""
    delivery = Delivery.objects.select_related("task").filter(pk=delivery_id).first()
    if delivery is None or delivery.check_status != Delivery.CheckStatus.PENDING:
        return False
    results = checks_run(checks=delivery.task.checks, text=delivery.text, data=delivery.data)
    passed = all(result["passed"] for result in results)
    status = Delivery.CheckStatus.PASSED if passed else Delivery.CheckStatus.FAILED
    with transaction.atomic():
        updated = Delivery.objects.filter(
            pk=delivery_id, check_status=Delivery.CheckStatus.PENDING
        ).update(check_status=status, check_results=results)
        if updated:
            transition_record(
                delivery.task,
                kind="checks_" + status,
                state=None,
                delivery=delivery_id,
                results=results,
            )
    return bool(updated)
