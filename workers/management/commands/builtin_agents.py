"""Register the built-in agents (idempotent): ``manage.py builtin_agents --owner <username>``."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser

from agents_registry.services import participant_for_user
from workers.services import builtin_agents_ensure


class Command(BaseCommand):
    help = "Register the built-in agents with their capability profiles, owned by a user."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--owner", required=True, help="username of the owning human")
        parser.add_argument("--include-test-agents", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        user = User.objects.filter(username=options["owner"]).first()
        if user is None:
            raise CommandError(f"No user named {options['owner']!r}.")
        agents = builtin_agents_ensure(
            owner=participant_for_user(user=user),
            include_test_agents=options["include_test_agents"],
        )
        for agent in agents:
            self.stdout.write(f"{agent.slug}\t{agent.name}")
