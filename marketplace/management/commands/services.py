"""Start, stop or show the embedded PostgreSQL and Redis of the data folder."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from marketplace import embedded


class Command(BaseCommand):
    help = "Manage the embedded PostgreSQL+pgvector and Redis servers (status, start, stop)."
    requires_system_checks = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["status", "start", "stop"])

    def handle(self, *args: object, action: str, **options: object) -> None:
        data_dir = settings.DATA_DIR
        if action == "stop":
            stopped = embedded.stop_all(data_dir)
            self.stdout.write(f"stopped: {', '.join(stopped) or 'nothing was running'}")
            return
        if action == "start":
            embedded.ensure_postgres(data_dir)
            embedded.ensure_redis(data_dir)
        postgres = "running" if embedded.postgres_running(data_dir) else "stopped"
        redis = "running" if embedded.redis_running(data_dir) else "stopped"
        self.stdout.write(f"data folder: {data_dir}\npostgres: {postgres}\nredis: {redis}")
