"""The API's body parsers: DRF's, refusing NUL characters anywhere in what they read.

PostgreSQL stores no NUL (U+0000) in text or JSONB; a NUL that reached a query failed there with
a 500. Refused here, every endpoint answers 400 and names where the character was.
"""

from __future__ import annotations

from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError


def _nul_at(value: Any, where: str) -> str | None:
    """The path of the first text holding a NUL in ``value`` (keys included), or None."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    if isinstance(value, dict):
        items: Any = value.items()
    elif hasattr(value, "lists"):  # a QueryDict of a form
        items = value.lists()
    elif isinstance(value, list | tuple):
        items = ((str(index), item) for index, item in enumerate(value))
    else:
        return None
    for key, item in items:
        name = f"{where}.{key}" if where else str(key)
        if isinstance(key, str) and "\x00" in key:
            return name
        found = _nul_at(item, name)
        if found is not None:
            return found
    return None


def refuse_nul(value: Any) -> Any:
    found = _nul_at(value, "")
    if found is not None:
        raise ParseError(
            f"Text may not contain NUL characters (U+0000); remove them from {found or 'the body'}."
        )
    return value


class JSONParser(parsers.JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        return refuse_nul(super().parse(stream, media_type, parser_context))


class MultiPartParser(parsers.MultiPartParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        parsed = super().parse(stream, media_type, parser_context)
        refuse_nul(parsed.data)
        # Every file of every field (values() gives only the last one of each).
        refuse_nul([upload.name or "" for _, uploads in parsed.files.lists() for upload in uploads])
        return parsed
