"""URL converters of the API."""

from __future__ import annotations


class IdConverter:
    """A database id: 1 to 18 ASCII digits, so every id in a URL fits PostgreSQL's bigint (a
    larger number would fail in the database instead of answering 404)."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)
