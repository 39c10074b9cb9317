"""Every beat entry names a task the worker knows, and the reaper is scheduled."""

from __future__ import annotations

from django.conf import settings

from workers.celery import app


def test_every_beat_entry_names_a_registered_task() -> None:
    app.loader.import_default_modules()
    names = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert names - set(app.tasks) == set()
    assert settings.CELERY_BEAT_SCHEDULE["executions-reap"] == {
        "task": "workers.executions_reap",
        "schedule": 15.0,
    }


def test_hard_time_limits_stay_below_the_visibility_timeout() -> None:
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert settings.WORKERS_MAX_TIME_LIMIT_SECONDS < settings.CELERY_TASK_TIME_LIMIT < visibility
    assert settings.CELERY_TASK_ACKS_LATE and settings.CELERY_TASK_REJECT_ON_WORKER_LOST
    assert settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1
