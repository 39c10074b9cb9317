"""The shared harness of the benchmarks in bench/.

Each benchmark is ``python bench/<name>.py [--quick]`` and prints its figures as one JSON object on
its last line. A benchmark measures its baseline in the same run and reports the ratio, because
these machines are noisy: compare ratios, and medians of several rounds.

The benchmarks run against their own database (``bench_<name>`` on the same server as the project,
embedded or external), created afresh and migrated, so the demo data is never touched.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parse_args(description: str, extra: Callable[[argparse.ArgumentParser], None] | None = None):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a smoke run of under a minute")
    parser.add_argument("--rounds", type=int, default=None, help="repetitions (median reported)")
    if extra:
        extra(parser)
    return parser.parse_args()


def setup_django(database_name: str | None = None) -> None:
    """Configure Django; with ``database_name``, use (and recreate) that database."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
    os.environ.setdefault("DEBUG", "true")
    os.environ.setdefault("REDIS_DATABASE_BASE", "16")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("API_RATE_USER", "100000000/minute")
    os.environ.setdefault("API_RATE_ANON", "100000000/minute")
    import django
    from django.conf import settings

    if database_name:
        _recreate_database(settings, database_name)
    django.setup()
    if database_name:
        from django.core.management import call_command

        call_command("migrate", interactive=False, verbosity=0)


def _recreate_database(settings: Any, name: str) -> None:
    import psycopg

    database = settings.DATABASES["default"]
    params = {
        "dbname": "postgres",
        "user": database.get("USER") or None,
        "password": database.get("PASSWORD") or None,
        "host": database.get("HOST") or None,
        "port": database.get("PORT") or None,
    }
    with psycopg.connect(**{k: v for k, v in params.items() if v}, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name]
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(
        **{k: v for k, v in {**params, "dbname": name}.items() if v}, autocommit=True
    ) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    database["NAME"] = name
    url = settings.DATABASE_URL
    base, _, query = url.partition("?")
    settings.DATABASE_URL = f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
    os.environ["DATABASE_URL"] = settings.DATABASE_URL


def percentile(values: Iterable[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Timings:
    """Latencies in seconds; reports in milliseconds."""

    samples: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)

    def summary(self) -> dict[str, float]:
        return {
            "count": len(self.samples),
            "p50_ms": round(percentile(self.samples, 0.50) * 1000, 3),
            "p95_ms": round(percentile(self.samples, 0.95) * 1000, 3),
            "p99_ms": round(percentile(self.samples, 0.99) * 1000, 3),
        }


def timed(function: Callable[[], Any], timings: Timings) -> Any:
    started = time.perf_counter()
    result = function()
    timings.add(time.perf_counter() - started)
    return result


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def ratio(value: float, baseline: float) -> float:
    return round(value / baseline, 4) if baseline else float("nan")


def reconciled() -> tuple[Any, dict[str, Any]]:
    """A full reconciliation of the ledger (Django set up) and its figures for the report."""
    from ledger.reconciliation import reconcile

    started = time.perf_counter()
    report = reconcile()
    return report, {
        "seconds": round(time.perf_counter() - started, 2),
        "accounts": report.accounts,
        "transfers": report.transfers,
        "differences": len(report.differences),
    }


def machine() -> dict[str, Any]:
    memory_gib = None
    try:
        with open("/proc/meminfo") as handle:
            kib = int(handle.readline().split()[1])
            memory_gib = round(kib / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def emit(name: str, figures: dict[str, Any], *, quick: bool) -> None:
    """Print the result as one JSON object on the last line (and keep a copy in bench/results/)."""
    result = {"benchmark": name, "quick": quick, "machine": machine(), **figures}
    line = json.dumps(result, sort_keys=False, default=str)
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / f"{name}{'-quick' if quick else ''}.json").write_text(line + "\n")
    print(line, flush=True)


def _load_worker(args: tuple[str, int, float, dict[str, str]]) -> tuple[int, int, list[float]]:
    """One load process: ``connections`` keep-alive clients in threads, for ``duration`` seconds."""
    import http.client
    import threading
    from urllib.parse import urlsplit

    url, connections, duration, headers = args
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + duration

    def client() -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        local: list[float] = []
        local_errors = 0
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
                response.read()
                if response.status >= 400:
                    local_errors += 1
            except (OSError, http.client.HTTPException):
                local_errors += 1
                connection.close()
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
                continue
            local.append(time.perf_counter() - started)
        connection.close()
        with lock:
            latencies.extend(local)
            errors[0] += local_errors

    threads = [threading.Thread(target=client) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies), errors[0], latencies


def http_load(
    url: str,
    *,
    concurrency: int = 20,
    duration: float = 5.0,
    processes: int = 2,
    headers: dict[str, str] | None = None,
) -> dict[str, float]:
    """Closed-loop HTTP load: ``concurrency`` keep-alive clients spread over ``processes``.

    Returns requests per second, error count and latency percentiles. The load generator shares
    the machine with the server: compare figures only within one run (ratios).
    """
    from concurrent.futures import ProcessPoolExecutor

    per_process = [
        concurrency // processes + (i < concurrency % processes) for i in range(processes)
    ]
    jobs = [(url, count, duration, headers or {}) for count in per_process if count]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(_load_worker, jobs))
    elapsed = time.perf_counter() - started
    samples = [latency for _, _, latencies in results for latency in latencies]
    total = sum(count for count, _, _ in results)
    return {
        "rps": round(total / max(elapsed, duration), 1),
        "errors": sum(errors for _, errors, _ in results),
        **Timings(samples).summary(),
    }


def wait_for_http(url: str, timeout: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


# The HTTP servers the benchmarks compare, 2 workers each. "uvicorn" is how `make run` and deploy/
# serve: pages and API through the WSGI bridge of marketplace/asgi.py, websockets beside them.
# "uvicorn_django_asgi" is the same server on Django's own ASGI handler, "gunicorn" plain WSGI.
HTTP_SERVERS = {
    "gunicorn": "{python} -m gunicorn marketplace.wsgi:application --bind 127.0.0.1:{port}"
    " --workers 2 --threads 4 --worker-class gthread --log-level warning",
    "uvicorn": "{python} -m uvicorn marketplace.asgi:application --host 127.0.0.1"
    " --port {port} --workers 2 --no-access-log --lifespan off --log-level warning",
    "uvicorn_django_asgi": "{python} -m uvicorn django.core.asgi:get_asgi_application --factory"
    " --host 127.0.0.1 --port {port} --workers 2 --no-access-log --lifespan off"
    " --log-level warning",
}


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def http_server(kind: str, env: dict[str, str]) -> Iterator[str]:
    """Run one of ``HTTP_SERVERS`` on a free port until the block ends; yields its base URL."""
    import signal
    import subprocess

    port = free_port()
    command = HTTP_SERVERS[kind].format(python=sys.executable, port=port)
    env = {"DJANGO_SETTINGS_MODULE": "marketplace.settings", **env}
    process = subprocess.Popen(command.split(), cwd=ROOT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/healthz")
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def summarise(runs: list[dict[str, float]]) -> dict[str, float]:
    """Medians of several rounds of one measurement."""
    return {
        "rps": median(run["rps"] for run in runs),
        "p95_ms": median(run["p95_ms"] for run in runs),
        "errors": sum(run["errors"] for run in runs),
    }
