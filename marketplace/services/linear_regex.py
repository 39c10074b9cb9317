"""Posters' regular expressions, run by RE2: time linear in the text, whatever the pattern.

Python's ``re`` backtracks: ``^(a+)+$`` against ``"a" * 30 + "!"`` kept a worker busy for 26 s.
RE2 (``google-re2``, Google's maintained binding) has no backtracking and so refuses what needs it
(backreferences, lookarounds); a poster is told so when posting. The checks' JSON Schemas use the
same engine for ``pattern``; ``patternProperties`` (which jsonschema runs through ``re`` in three
places) is refused.
"""

from __future__ import annotations

import functools
from typing import Any

import re2
from jsonschema import ValidationError
from jsonschema.validators import extend, validator_for

MAX_PATTERN = 500

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False
_OPTIONS.max_mem = 8 << 20  # the compiled program's memory: bounded too


class UnsupportedPattern(ValueError):
    """The pattern does not compile under RE2; the message says why."""


@functools.lru_cache(maxsize=512)
def compiled(pattern: str) -> Any:
    try:
        return re2.compile(pattern, options=_OPTIONS)
    except re2.error as error:
        reason = error.args[0] if error.args else "invalid pattern"
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        raise UnsupportedPattern(
            f"{reason} (patterns run on RE2: no backreferences or lookarounds)"
        ) from None


def search(pattern: str, text: str) -> Any:
    return compiled(pattern).search(text)


def schema_patterns_check(schema: Any, where: str = "json_schema") -> None:
    """Every ``pattern`` of a JSON Schema compiles under RE2; ``patternProperties`` is refused."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "patternProperties":
                raise UnsupportedPattern(
                    f"{where}.patternProperties is not supported; use propertyNames with a pattern."
                )
            if key == "pattern" and isinstance(value, str):
                try:
                    compiled(value)
                except UnsupportedPattern as error:
                    raise UnsupportedPattern(f"{where}.pattern: {error}") from None
            else:
                schema_patterns_check(value, f"{where}.{key}")
    elif isinstance(schema, list):
        for index, item in enumerate(schema):
            schema_patterns_check(item, f"{where}.{index}")


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    if validator.is_type(instance, "string") and not search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def schema_validator(schema: dict) -> Any:
    """A jsonschema validator for ``schema`` whose ``pattern`` runs on RE2."""
    return extend(validator_for(schema), {"pattern": _pattern})(schema)
