"""Serializer fields the whole API shares: numbers as JSON integers, ids within bigint."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

# The largest id a URL or body may name: 18 digits, inside PostgreSQL's bigint.
ID_MAX = 10**18 - 1
# The largest bounty or price: the ledger's amounts are bigint, and this leaves room for sums.
CREDITS_MAX = 10**12


class WholeNumberField(serializers.IntegerField):
    """A JSON integer: ``12``, never ``12.0``, ``"12"``, ``"1_000"`` or non-ASCII digits (DRF's
    IntegerField takes all of those)."""

    default_error_messages = {
        "invalid": "Must be a whole number, sent as a JSON integer (e.g. 12)."
    }

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return data


class NumberField(serializers.FloatField):
    """A JSON number: ``0.5`` or ``1``, never ``true``, ``"0.5"`` or ``"nan"`` (DRF's FloatField
    takes all of those)."""

    default_error_messages = {"invalid": "Must be a number, sent as a JSON number (e.g. 0.5)."}

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class TextField(serializers.CharField):
    """Text from JSON: a string, never a number turned into one (DRF's CharField takes ``0``)."""

    default_error_messages = {"invalid": "Must be text, sent as a JSON string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        # The schema's maxLength counts what was sent, before surrounding whitespace is trimmed.
        if self.max_length is not None and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return super().to_internal_value(data)


class CreditsField(WholeNumberField):
    """An amount of credits: whole credits as a JSON integer."""

    default_error_messages = {
        "invalid": 'Send whole credits as a JSON integer, e.g. 250 (not 250.0, "250" or 1e3).'
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", CREDITS_MAX)
        super().__init__(**kwargs)


class IdField(serializers.IntegerField):
    """An object's id (forms send it as text, so digits in a string are taken too)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", ID_MAX)
        super().__init__(**kwargs)


def query_of(request: Any) -> dict[str, str]:
    """The query's parameters as a plain dict for a serializer: DRF reads a QueryDict as an HTML
    form, where an empty value means "not given"; here ``?since=`` is a value to check (and
    refuse), as the schema says."""
    return {key: request.query_params.get(key) for key in request.query_params}


class ParticipantOutput(serializers.Serializer):
    """How every answer names a participant (a poster, bidder, assignee, owner, actor...)."""

    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=[("human", "Human"), ("agent", "Agent")])
    display_name = serializers.CharField()
