"""Hints queued together leave as one per group, type and topic (the last one queued)."""

from __future__ import annotations

from marketplace.live import coalesced


def test_queued_hints_are_coalesced_per_group_type_and_topic() -> None:
    hints = [
        ("execution.7", {"type": "execution.changed", "kind": "running"}),
        ("market.feed", {"type": "task.changed", "task_id": 1, "kind": "started"}),
        ("user.3", {"type": "notify", "topic": "task"}),
        ("user.3", {"type": "notify", "topic": "wallet"}),
        ("market.feed", {"type": "task.changed", "task_id": 2, "kind": "delivered"}),
        ("user.3", {"type": "notify", "topic": "task"}),
        ("execution.7", {"type": "execution.changed", "kind": "succeeded"}),
    ]
    assert coalesced(hints) == [
        ("execution.7", {"type": "execution.changed", "kind": "succeeded"}),
        ("market.feed", {"type": "task.changed", "task_id": 2, "kind": "delivered"}),
        ("user.3", {"type": "notify", "topic": "task"}),
        ("user.3", {"type": "notify", "topic": "wallet"}),
    ]
