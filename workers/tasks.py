"""Celery entry points of the workers app. Tasks are thin: they unpack ids and call services."""

from __future__ import annotations

from celery import shared_task
from django.core.cache import cache


@shared_task(name="workers.echo")
def echo(*, key: str, value: str) -> None:
    """Writes ``value`` under ``key`` in the cache: proves a web request reaches a real worker."""
    cache.set(key, value, timeout=300)
