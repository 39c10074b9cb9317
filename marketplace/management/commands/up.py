"""The one command that runs the whole marketplace: ``python manage.py up`` (``make run``).

Migrates, seeds the demo market, then supervises web, websockets, a Celery worker and beat with
their logs interleaved and prefixed: one that stops is started again with a backoff, and so are
the embedded PostgreSQL and Redis when this run uses them (``marketplace/supervisor.py``).

One uvicorn server on ``PORT`` answers pages, API and websockets, so a page opens its socket on
its own origin (``marketplace/asgi.py`` runs the views on threads through a WSGI bridge: as fast as
gunicorn, see BENCHMARKS.md). Ctrl-C stops all of them, and the embedded servers too when this
command started them.
"""

from __future__ import annotations

import io
import os
import shutil
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from marketplace import embedded
from marketplace.supervisor import Supervisor


class Command(BaseCommand):
    help = "Run migrations, seed the demo market and supervise web, worker and beat."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--no-demo", action="store_true", help="skip the demo data")
        parser.add_argument(
            "--web-workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2"))
        )
        parser.add_argument(
            "--worker-concurrency",
            type=int,
            default=int(os.environ.get("WORKER_CONCURRENCY", "2")),
        )

    def handle(self, *args: object, **options: object) -> None:
        data_dir = settings.DATA_DIR
        embedded.user_register(data_dir)

        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        demo = io.StringIO()
        if not options["no_demo"]:
            # By name: the demo touches every layer, so it lives in the top one (workers).
            call_command("seed_demo", stdout=demo)

        env = os.environ.copy()
        env["DATABASE_URL"] = settings.DATABASE_URL
        env["REDIS_URL"] = settings.REDIS_URL
        env["PYTHONUNBUFFERED"] = "1"
        # One folder of metrics for this machine's processes: /metrics adds them up.
        metrics_dir = data_dir / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
        python = sys.executable
        port, bind = options["port"], options["host"]
        # Absolute links (Agent Cards, event payloads, agents' callbacks) name this run's port.
        env.setdefault("SITE_URL", f"http://{bind}:{port}")
        manager = Supervisor()
        # The embedded servers run detached: watched, and started again if they stop.
        if not os.environ.get("DATABASE_URL"):
            manager.watch(
                "postgres",
                lambda: embedded.postgres_running(data_dir),
                lambda: embedded.ensure_postgres(data_dir),
            )
        if not os.environ.get("REDIS_URL"):
            manager.watch(
                "redis",
                lambda: embedded.redis_running(data_dir),
                lambda: embedded.ensure_redis(data_dir),
            )
        # exec: the supervised pid is the server itself, not a shell (signals reach it, and a
        # killed one is seen as stopped at once).
        manager.add_process(
            "web",
            f"exec {python} -m uvicorn marketplace.asgi:application --host {bind} --port {port}"
            f" --workers {options['web_workers']} --lifespan on",
            env=env,
        )
        manager.add_process(
            "worker",
            f"exec {python} -m celery -A workers.celery worker --loglevel INFO"
            f" --concurrency {options['worker_concurrency']} --hostname worker@%h",
            env=env,
        )
        manager.add_process(
            "beat",
            f"exec {python} -m celery -A workers.celery beat --loglevel INFO"
            f" --schedule {data_dir / 'celerybeat-schedule'}",
            env=env,
        )
        url = f"http://{bind}:{port}"
        self.stdout.write(self.style.SUCCESS(f"\nAgent marketplace running at {url}\n"))
        self.stdout.write(f"  MCP server (streamable HTTP, API keys): {url}/mcp\n")
        self.stdout.write(demo.getvalue().rstrip("\n"))
        self.stdout.write("  Ctrl-C stops everything.\n")
        try:
            manager.loop()
        finally:
            # Only the servers this command started, and only if no other user (a test run,
            # another `up`) registered since: they may be using them.
            embedded.user_unregister(data_dir)
            stopped = []
            if not embedded.other_users(data_dir):
                if embedded.started_here("postgres", data_dir) and embedded.stop_postgres(data_dir):
                    stopped.append("postgres")
                if embedded.started_here("redis", data_dir) and embedded.stop_redis(data_dir):
                    stopped.append("redis")
            if stopped:
                self.stdout.write(f"stopped the embedded {' and '.join(stopped)}")
        sys.exit(manager.returncode or 0)
