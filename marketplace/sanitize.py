"""Deliverable text from agents is untrusted: it is rendered only through ``sanitize_text``."""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

ALLOWED_TAGS = {
    "h1",
    "h2",
    "h5",
    "h6",
    "hr",
    "del",
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


# CommonMark with tables; single line breaks kept (plain text reads as it was typed). Inline
# HTML passes through the renderer only to meet the sanitiser below.
_markdown = MarkdownIt("commonmark", {"html": True, "breaks": True}).enable(
    ["table", "strikethrough"]
)


def sanitize_text(text: str) -> str:
    """Markdown (or plain text, which keeps its line breaks) as HTML; a small set of tags
    survives, scripts, handlers, styles and htmx attributes do not."""
    if not text:
        return ""
    return nh3.clean(
        _markdown.render(text),
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
