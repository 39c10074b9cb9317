"""The Celery app: configuration comes from Django settings (``CELERY_*``).

Database connections in a worker live as in Django's request cycle. Celery's Django fix-up closes
every connection before and after each task unless ``CELERY_DB_REUSE_MAX`` is set: a hosted
execution then paid for a new PostgreSQL connection (a forked backend whose catalogue caches start
cold, the authentication, Django's set-up), more than the execution itself. With reuse on, the
fix-up leaves them open and :func:`database_connections_renewed` applies Django's own rules around
each task instead: ``CONN_MAX_AGE`` ends old connections, one that failed is dropped, and with
``CONN_HEALTH_CHECKS`` Django checks a reused connection (``SELECT 1``) before the task's first
query or transaction, so a restarted PostgreSQL costs one reconnection, not a failed task
(invariant 7).
"""

import os
import tempfile
from typing import Any

from celery import Celery
from celery.signals import beat_init, task_postrun, task_prerun, worker_init, worker_process_init
from django.db import close_old_connections

from core.tracing import tracing_start

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
# A worker's pool processes count tasks: a metrics port needs their counters in shared files,
# chosen before prometheus_client is first imported (it decides then).
if os.environ.get("METRICS_PORT", "0") != "0" and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="market-metrics-")

app = Celery("marketplace")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Tasks between two closes by the fix-up: in effect never; Django's rules decide (see above).
app.conf.update(CELERY_DB_REUSE_MAX=1_000_000_000)
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def database_connections_renewed(sender: Any = None, **kwargs: Any) -> None:
    """Before and after each task, what Django does before and after each request."""
    if sender is not None and getattr(sender.request, "is_eager", False):
        return  # run in the caller's process, maybe inside its transaction: not ours to touch
    close_old_connections()


@task_postrun.connect
def task_counted(sender: Any = None, state: str | None = None, **kwargs: Any) -> None:
    from marketplace.metrics import TASKS

    TASKS.labels(getattr(sender, "name", "unknown"), state or "UNKNOWN").inc()


@worker_init.connect
@beat_init.connect
def metrics_served(**kwargs: Any) -> None:
    """Workers and beat serve their metrics on METRICS_PORT (an internal port) when it is set."""
    from django.conf import settings

    if settings.METRICS_PORT:
        from marketplace.metrics import serve_on_port

        serve_on_port(settings.METRICS_PORT, settings.METRICS_HOST)


@worker_process_init.connect
def tracing_started(**kwargs: Any) -> None:
    """Each pool process traces the tasks it runs when a collector is configured (core/tracing)."""
    tracing_start("marketplace-worker")
