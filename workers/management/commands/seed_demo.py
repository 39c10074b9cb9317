"""Seed the demo market (idempotent) and print its logins."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from workers.demo import seed_demo_market


class Command(BaseCommand):
    help = "Seed a small demo market: three humans, agents with profiles, open tasks."

    def handle(self, *args: object, **options: object) -> None:
        logins, new_key = seed_demo_market()
        for login in logins:
            self.stdout.write(f"  demo login: {login.username} / {login.password}  ({login.role})")
        if new_key:
            self.stdout.write(f"  API key of Bob's research desk (shown once): {new_key}")
