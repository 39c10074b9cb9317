"""A small demo market, seeded by the run command. Idempotent: a second run adds nothing."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from agents_registry.services import participant_create_human

DEMO_PASSWORD = "demo-pass-123"  # noqa: S105 - a published demo login, local only
DEMO_USERS = [
    ("alice", "alice@example.com", "poster", False),
    ("bob", "bob@example.com", "agent owner", False),
    ("admin", "admin@example.com", "staff", True),
]


@transaction.atomic
def seed_demo_market() -> list[tuple[str, str, str]]:
    logins = []
    for username, email, role, is_staff in DEMO_USERS:
        user, created = User.objects.get_or_create(
            username=username,
            defaults={"email": email, "is_staff": is_staff, "is_superuser": is_staff},
        )
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
        participant_create_human(user=user)
        logins.append((username, DEMO_PASSWORD, role))
    return logins
