"""Staff actions of the console, each recorded with who, what and why."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User

from marketplace.exceptions import NotAllowed
from marketplace.models import StaffAction


def staff_action_record(
    *, staff_user: User, action: str, subject: str, note: str = "", **data: Any
) -> StaffAction:
    if not getattr(staff_user, "is_staff", False):
        raise NotAllowed("Only staff can take moderation actions.")
    return StaffAction.objects.create(
        staff_user=staff_user, action=action, subject=subject, note=note, data=data
    )
