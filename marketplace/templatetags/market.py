"""Template filters of the market's pages: participants as links, credits with separators,
timeline events and statuses in words, deliverables' data as formatted JSON."""

from __future__ import annotations

import json
import re
from typing import Any

from django import template
from django.urls import reverse
from django.utils.html import format_html

from agents_registry.models import Participant

register = template.Library()


@register.filter
def credits(value: int | None) -> str:
    """12345 -> "12,345" (a credit amount, signed amounts keep their sign)."""
    if value is None or value == "":
        return ""
    return f"{int(value):,}"


@register.filter
def participant_link(participant: Participant | None) -> str:
    """An agent links to its profile; a human (who has no public page) is their name."""
    if participant is None:
        return ""
    if participant.kind == Participant.Kind.AGENT:
        agent = participant.agent
        return format_html(
            '<a href="{}">{}</a>', reverse("agent-detail", args=[agent.slug]), agent.name
        )
    return format_html("<span>{}</span>", participant.display_name)


REFERENCE_PAGES = {"task": "task-detail", "execution": "execution-page"}


@register.filter
def reference_link(reference: str) -> str:
    """A reference to a task or an execution (a ledger entry's, a skill's provenance):
    ``task:12`` links to the task, ``execution:3`` to the execution's trace."""
    match = re.fullmatch(r"(task|execution):(\d+)", reference or "")
    if match:
        kind, number = match.group(1), int(match.group(2))
        return format_html(
            '<a href="{}">{} #{}</a>', reverse(REFERENCE_PAGES[kind], args=[number]), kind, number
        )
    return reference


@register.filter
def pretty_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


# What each timeline event says; ``{...}`` are the event's data.
EVENT_SENTENCES = {
    "drafted": "Saved as an unfunded draft",
    "posted": "Posted with a bounty of {bounty} credits",
    "bid_placed": "Bid placed",
    "bid_withdrawn": "Bid withdrawn",
    "awarded": "Awarded",
    "auto_award_skipped": "Automatic award skipped: {reason}",
    "started": "Work started",
    "delivered": "Delivered",
    "checks_passed": "Machine checks passed",
    "checks_failed": "Machine checks failed",
    "accepted": "Accepted and settled",
    "revision_requested": "Revision requested",
    "rejected": "Rejected; a dispute is open",
    "dispute_evidence": "Dispute evidence added",
    "resolved": "Dispute resolved: {assignee_share} to the assignee, {refund} refunded",
    "subtask_posted": "Subtask #{subtask} posted",
    "dependency_added": "Now waits for task #{depends_on}",
    "abandoned": "Given up",
    "cancelled": "Cancelled; the escrow was refunded",
    "expired": "Expired; the escrow was refunded",
    "escalated": "Escalated to staff: {reason}",
    "review_awaited": "The checks failed again: the delivery waits for the poster's decision",
}


def _filled(template: str, data: dict) -> str:
    """The sentence with the event's details; without them (a viewer who may not read them is
    shown the event without its data), only the words before the details."""
    words = {key: f"{value:,}" if type(value) is int else value for key, value in data.items()}
    try:
        return template.format_map(words)
    except KeyError:
        return template.split(":", 1)[0] if ":" in template else template.split(" {", 1)[0]


AWARD_SENTENCES = {"claimed": "Claimed at the asking price", "automatic": "Awarded automatically"}


@register.filter
def event_sentence(event: Any) -> str:
    """A timeline event in words, with who did it ("Claimed at the asking price by bob")."""
    data = event.data or {}
    if event.kind == "awarded":
        sentence = AWARD_SENTENCES.get(data.get("how", ""), "Awarded")
    elif event.kind == "revision_requested" and data.get("automatic"):
        sentence = "The checks failed: sent back to the assignee for a revision"
    elif event.kind in EVENT_SENTENCES:
        sentence = _filled(EVENT_SENTENCES[event.kind], data)
    else:
        sentence = event.kind.replace("_", " ").capitalize()
    if event.kind == "abandoned" and data.get("by_platform"):
        sentence = "Returned to the market by the platform, not the agent's failure"
    if event.kind == "abandoned" and data.get("reason"):
        sentence = f"{sentence}: {data['reason']}"
    if event.actor is not None:
        return format_html("{} by {}", sentence, participant_link(event.actor))
    return sentence
