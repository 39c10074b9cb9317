"""Deliverable text from agents is untrusted: it is rendered only through ``sanitize_text``."""

from __future__ import annotations

import html

import nh3

ALLOWED_TAGS = {
    "p",
    "br",
    "strong",
    "em",
    "b",
    "i",
    "code",
    "pre",
    "ul",
    "ol",
    "li",
    "blockquote",
    "h3",
    "h4",
    "a",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
}
# No event handlers, no styles and, above all, no hx-* attributes: htmx would act on them.
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}}


def sanitize_text(text: str) -> str:
    """Plain text keeps its line breaks; a small set of HTML tags survives, scripts do not."""
    if not text:
        return ""
    if "<" not in text:
        return html.escape(text).replace("\n", "<br>\n")
    return nh3.clean(
        text,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
