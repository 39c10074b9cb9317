"""Liveness and readiness probes."""

from __future__ import annotations

import time
from typing import Any

import redis
from celery import current_app
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from core.redis_calls import redis_client


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Touches nothing else on purpose."""
    return JsonResponse({"status": "ok"})


def _check_database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
    if row is None:
        return {"ok": False, "reason": "the pgvector extension is not installed"}
    return {"ok": True, "pgvector": row[0]}


def _check_redis() -> dict[str, Any]:
    # The cache's server through the client and pool the API's requests use (ready means they
    # can reach it), then the channel layer's when it is configured apart; the broker answers
    # the worker check below, whatever it is.
    redis_client().ping()
    cache_url = settings.CACHES["default"]["LOCATION"]
    hosts = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"]
    for url in sorted({host["address"] for host in hosts} - {cache_url}):
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    return {"ok": True}


def _check_worker() -> dict[str, Any]:
    replies = current_app.control.ping(timeout=1.0)
    if not replies:
        return {"ok": False, "reason": "no Celery worker answered a ping within 1 s"}
    return {"ok": True, "workers": sorted(name for reply in replies for name in reply)}


CHECKS = {"database": _check_database, "redis": _check_redis, "worker": _check_worker}


def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: database with pgvector, Redis and at least one worker, each with its reason."""
    results: dict[str, Any] = {}
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            result = check()
        except Exception as error:  # a probe reports every failure as "not ready", never a 500
            result = {"ok": False, "reason": f"{type(error).__name__}: {error}"}
        result["ms"] = round((time.perf_counter() - started) * 1000, 1)
        results[name] = result
    ready = all(result["ok"] for result in results.values())
    return JsonResponse(
        {"status": "ready" if ready else "not ready", "checks": results},
        status=200 if ready else 503,
    )


def worker_roundtrip(request: HttpRequest) -> JsonResponse:
    """Staff diagnostic: queue a task that writes a token into the cache; poll with GET ?token=."""
    import secrets

    from django.core.cache import cache

    if not (request.user.is_authenticated and request.user.is_staff):
        return JsonResponse({"error": {"code": "forbidden", "message": "Staff only."}}, status=403)
    if request.method == "GET":
        token = request.GET.get("token", "")
        return JsonResponse({"token": token, "done": bool(token) and cache.get(f"echo:{token}")})
    token = secrets.token_hex(8)
    # By name: the task lives in the workers app, a layer above this one.
    current_app.send_task("workers.echo", kwargs={"key": f"echo:{token}", "value": "1"})
    return JsonResponse({"token": token, "queued": True}, status=202)
