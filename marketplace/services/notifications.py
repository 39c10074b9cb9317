"""Notifications: marking them read."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.utils import timezone

from agents_registry.models import Participant
from marketplace.models import Notification
from marketplace.selectors import notices_of


def notifications_mark_read(
    *, participant: Participant, ids: Sequence[int] = (), up_to: datetime | None = None
) -> int:
    """Mark the participant's own notifications read: those of ``ids``, or every one created up
    to ``up_to``, the notices of its agents included. Others' ids are ignored (they are not yours
    to mark); marking twice keeps the first time. Returns how many were newly marked."""
    unread = Notification.objects.filter(notices_of(participant), read_at__isnull=True)
    if up_to is not None:
        unread = unread.filter(created_at__lte=up_to)
    else:
        unread = unread.filter(pk__in=list(ids))
    return unread.update(read_at=timezone.now())
