"""Market API under load: the open-task list, task detail, bid and deliver endpoints with 20
concurrent keep-alive clients against the real HTTP server and a database holding 100,000
tasks, each compared in the same run with the minimal JSON view (``/healthz``) on the same server.

    python bench/api.py [--quick] [--server NAME]   # quick: 10,000 tasks; NAME from HTTP_SERVERS
    python bench/api.py --in-process [--quick]   # CPU ms and SQL statements per request
    python bench/api.py --redis-path [--quick] [--rounds N]  # the Redis path, before and after

``--in-process`` runs no server and no load generator: each endpoint is called through Django's
test client in this process, and reports this process's CPU time and the SQL statements per
request beside the minimal view's (what the server itself spends, free of the machine's noise).

``--redis-path`` measures, the same way, what issue 15's change to the Redis path costs: each
endpoint in alternating rounds with redis-py's client and pool (``core.redis_calls``,
what the market runs) and with the hand-made path it replaced (one raw connection per thread, no
pool, no retry: copied into this script only to measure against), as the median CPU ms per request
of each and their ratio in the same run.

The server is gunicorn (WSGI, 2 workers x 4 threads) by default, the figures' baseline since issue
5; ``--server uvicorn`` measures what ``make run`` and ``deploy/`` serve now (uvicorn, 2 workers,
the WSGI bridge of ``marketplace/asgi.py``), ``--server uvicorn_django_asgi`` Django's own ASGI
handler (see bench/web_servers.py and bench/web_servers_api.py).

The list and the detail are measured twice: as agents poll them (answers kept in Redis between
changes to the market, ``marketplace/read_cache.py``) and with ``MARKET_READ_CACHE=false``, what a
read right after a change costs (``*_not_kept``).

Tasks are seeded with bulk inserts (a benchmark database only): reads and the bid and deliver
services touch no escrow, so no ledger rows are needed for them.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from harness import (
    HTTP_SERVERS,
    Timings,
    emit,
    http_load,
    http_server,
    parse_args,
    ratio,
    setup_django,
    summarise,
)


def seed(
    total: int, clients: int, per_client: int
) -> tuple[list[str], list[list[int]], list[list[int]]]:
    from django.contrib.auth.models import User

    from agents_registry.models import Participant
    from agents_registry.services import agent_register, api_key_issue
    from marketplace.models import Task

    user = User.objects.create_user(username="bench-poster", password="x" * 12)
    poster = Participant.objects.create(kind="human", user=user, display_name="bench poster")
    # The agents belong to someone else: one owner's agents never take its own tasks.
    owner_user = User.objects.create_user(username="bench-owner", password="x" * 12)
    owner = Participant.objects.create(kind="human", user=owner_user, display_name="bench owner")
    batch = [
        Task(
            poster=poster,
            title=f"Task {i}: summarise report {i % 997}",
            description="Summarise the attached report in three bullet points.",
            bounty=100 + i % 900,
        )
        for i in range(total)
    ]
    Task.objects.bulk_create(batch, batch_size=5000)
    keys, bid_targets, deliver_targets = [], [], []
    for index in range(clients):
        agent = agent_register(owner=owner, name=f"bench agent {index}")
        _, secret = api_key_issue(participant=agent.participant, name="bench")
        keys.append(secret)
        bid_targets.append(list(range(1 + index * per_client, 1 + (index + 1) * per_client)))
        working = Task.objects.bulk_create(
            [
                Task(
                    poster=poster,
                    assignee=agent.participant,
                    price=100,
                    state="in_progress",
                    title=f"Assigned {index}-{n}",
                    description="Deliver something.",
                    bounty=100,
                )
                for n in range(per_client)
            ]
        )
        deliver_targets.append([task.pk for task in working])
    return keys, bid_targets, deliver_targets


def post_load(port: int, keys: list[str], targets: list[list[int]], body_for, path_for) -> dict:
    """Closed-loop POSTs: one client thread per key, each on its own list of tasks."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def client(key: str, task_ids: list[int]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        local = []
        for task_id in task_ids:
            started = time.perf_counter()
            connection.request(
                "POST",
                path_for(task_id),
                body=json.dumps(body_for(task_id)),
                headers={"Authorization": f"Api-Key {key}", "Content-Type": "application/json"},
            )
            response = connection.getresponse()
            body = response.read()
            if response.status >= 300:
                with lock:
                    errors[0] += 1
                    if errors[0] <= 3:  # say why, once or thrice
                        print(
                            f"{response.status} {path_for(task_id)}: {body[:300]!r}",
                            file=sys.stderr,
                        )
            local.append(time.perf_counter() - started)
        with lock:
            latencies.extend(local)

    started = time.perf_counter()
    with ThreadPoolExecutor(len(keys)) as pool:
        list(pool.map(client, keys, targets))
    elapsed = time.perf_counter() - started
    return {
        "rps": round(len(latencies) / elapsed, 1),
        "errors": errors[0],
        **Timings(latencies).summary(),
    }


def in_process(keys: list[str], bid_targets, deliver_targets, total: int, count: int) -> dict:
    from django.conf import settings
    from django.db import connection
    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=f"Api-Key {keys[0]}")

    def not_kept(call):  # settings set directly: override_settings costs more than a read
        settings.MARKET_READ_CACHE = False
        try:
            return call()
        finally:
            settings.MARKET_READ_CACHE = True

    bids = iter([task for targets in bid_targets for task in targets])
    delivers = iter(deliver_targets[0])
    calls = {
        "minimal_json": lambda: client.get("/healthz"),
        "task_list": lambda: client.get("/api/v1/tasks/?limit=20"),
        "task_detail": lambda: client.get(f"/api/v1/tasks/{total // 2}/"),
        "task_list_not_kept": lambda: not_kept(lambda: client.get("/api/v1/tasks/?limit=20")),
        "task_detail_not_kept": lambda: not_kept(
            lambda: client.get(f"/api/v1/tasks/{total // 2}/")
        ),
        "bid": lambda: client.post(
            f"/api/v1/tasks/{next(bids)}/bids/",
            {"price": 50, "eta_hours": 2, "plan": "Read it, then summarise."},
            content_type="application/json",
        ),
        "deliver": lambda: client.post(
            f"/api/v1/tasks/{next(delivers)}/deliveries/",
            {"text": "Three bullets."},
            content_type="application/json",
        ),
    }
    figures = {}
    for name, call in calls.items():
        for _ in range(3):  # warm-up: the second request of a key keeps its lookup
            assert call().status_code < 300, name
        statements: list[str] = []

        def counted(execute, sql, params, many, context, statements=statements):
            statements.append(sql)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(counted):
            assert call().status_code < 300, name
        started = time.process_time()
        for _ in range(count):
            call()
        figures[name] = {
            "cpu_ms": round((time.process_time() - started) / count * 1000, 3),
            "sql_statements": len(statements),
        }
    baseline = figures["minimal_json"]["cpu_ms"]
    for values in figures.values():
        values["ratio_to_minimal"] = ratio(baseline, values["cpu_ms"])
    return figures


class HandMadeRedisPath:
    """The Redis path before issue 15, for ``--redis-path`` only: commands on a raw connection per
    thread that bypasses the pool (it leaked the pool after Redis errors; never use it)."""

    def __init__(self) -> None:
        self.local = threading.local()

    def command(self, *args):
        from core.redis_calls import redis_client

        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = redis_client().connection_pool.make_connection()
            self.local.connection = connection
        connection.send_command(*args)
        return connection.read_response()

    def script(self, script, keys, args=()):
        import hashlib

        import redis

        sha = hashlib.sha1(script.text.encode()).hexdigest()
        try:
            return self.command("EVALSHA", sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return self.command("EVAL", script.text, len(keys), *keys, *args)

    @contextlib.contextmanager
    def installed(self):
        from core import redis_calls
        from marketplace import read_cache

        saved = (read_cache.redis_command, redis_calls.RedisScript.__call__)
        hand_made = self

        def script_call(script, keys, args=()):
            return hand_made.script(script, keys, args)

        read_cache.redis_command = self.command
        redis_calls.RedisScript.__call__ = script_call
        try:
            yield
        finally:
            read_cache.redis_command, redis_calls.RedisScript.__call__ = saved


def redis_path(keys: list[str], total: int, count: int, rounds: int) -> dict:
    """CPU ms per request with the client's pool and with the hand-made path, alternating."""
    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=f"Api-Key {keys[0]}")
    calls = {
        "minimal_json": lambda: client.get("/healthz"),
        "task_list": lambda: client.get("/api/v1/tasks/?limit=20"),
        "task_detail": lambda: client.get(f"/api/v1/tasks/{total // 2}/"),
        "me": lambda: client.get("/api/v1/me/"),
    }
    hand_made = HandMadeRedisPath()
    samples: dict[str, dict[str, list[float]]] = {
        name: {"pool": [], "hand_made": []} for name in calls
    }
    for _ in range(rounds):
        for path in ("hand_made", "pool"):
            with hand_made.installed() if path == "hand_made" else contextlib.nullcontext():
                for name, call in calls.items():
                    for _ in range(3):
                        assert call().status_code < 300, name
                    started = time.process_time()
                    for _ in range(count):
                        call()
                    samples[name][path].append((time.process_time() - started) / count * 1000)
    figures = {}
    for name, by_path in samples.items():
        pool, before = statistics.median(by_path["pool"]), statistics.median(by_path["hand_made"])
        figures[name] = {
            "cpu_ms_hand_made": round(before, 3),
            "cpu_ms_pool": round(pool, 3),
            "ratio_pool_to_hand_made": ratio(pool, before),
        }
    return figures


def main() -> None:
    def options(parser) -> None:
        parser.add_argument("--server", choices=sorted(HTTP_SERVERS), default="gunicorn")
        parser.add_argument(
            "--in-process", action="store_true", help="CPU and SQL per request, no server"
        )
        parser.add_argument(
            "--redis-path", action="store_true", help="the Redis path before and after, in process"
        )

    args = parse_args(__doc__.splitlines()[0], options)
    total = 10_000 if args.quick else 100_000
    duration = 2.0 if args.quick else 5.0
    rounds = args.rounds or (1 if args.quick else 3)
    os.environ.setdefault("REDIS_DATABASE_BASE", "20")
    args.in_process = args.in_process or args.redis_path
    if args.in_process:
        # As the server runs: no query log, no debug pages, the bench's rate limits.
        os.environ.update(
            DEBUG="false",
            SECRET_KEY="bench-" + "k" * 60,
            ALLOWED_HOSTS="testserver",
            EMBEDDING_BACKEND="hashing",
            MARKET_WRITE_RATE="100000000/minute",
        )
    setup_django("bench_api")
    from django.conf import settings

    count = 100 if args.quick else 300  # requests per endpoint, in process
    clients, per_client = 20, (10 if args.quick else 40)
    if args.in_process:
        per_client, rounds = count + 4, 1
    keys, bid_targets, deliver_targets = seed(total, clients, per_client * rounds)
    from django.db import connection

    with connection.cursor() as cursor:
        # Fresh statistics, as autovacuum would have them: the planner must know the table holds
        # 100k rows to walk the (state, created_at) index instead of sorting every open task.
        cursor.execute("ANALYZE")
    if args.redis_path:
        rounds = args.rounds or (3 if args.quick else 5)
        figures = redis_path(keys, total, count, rounds)
        emit(
            "api-redis-path",
            {"tasks": total, "requests": count, "rounds": rounds, "endpoints": figures},
            quick=args.quick,
        )
        return
    if args.in_process:
        figures = in_process(keys, bid_targets, deliver_targets, total, count)
        emit(
            "api-in-process",
            {"tasks": total, "requests": count, "endpoints": figures},
            quick=args.quick,
        )
        return
    env = os.environ.copy()
    env.update(
        {
            "DEBUG": "false",
            "SECRET_KEY": "bench-" + "k" * 60,
            "DATABASE_URL": settings.DATABASE_URL,
            "REDIS_URL": settings.REDIS_URL,
            "EMBEDDING_BACKEND": "hashing",
            "API_RATE_USER": "100000000/minute",
            "MARKET_WRITE_RATE": "100000000/minute",
        }
    )
    headers = {"Authorization": f"Api-Key {keys[0]}"}
    figures: dict[str, dict] = {}
    with http_server(args.server, env) as base:
        port = int(base.rsplit(":", 1)[1])
        reads = {
            "minimal_json": f"{base}/healthz",
            "task_list": f"{base}/api/v1/tasks/?limit=20",
            "task_detail": f"{base}/api/v1/tasks/{total // 2}/",
        }
        for name, url in reads.items():
            http_load(url, duration=1.0, headers=headers)  # warm up
            runs = [http_load(url, duration=duration, headers=headers) for _ in range(rounds)]
            figures[name] = summarise(runs)
        for name, targets, path_for, body_for in (
            (
                "bid",
                bid_targets,
                lambda t: f"/api/v1/tasks/{t}/bids/",
                lambda t: {"price": 50, "eta_hours": 2, "plan": "Read it, then summarise."},
            ),
            (
                "deliver",
                deliver_targets,
                lambda t: f"/api/v1/tasks/{t}/deliveries/",
                lambda t: {"text": "Three bullets."},
            ),
        ):
            runs = []
            for round_index in range(rounds):
                chunk = [
                    ids[round_index * per_client : (round_index + 1) * per_client]
                    for ids in targets
                ]
                runs.append(post_load(port, keys, chunk, body_for, path_for))
            figures[name] = summarise(runs)
    # The same reads with no answer kept: what every read after a change to the market costs.
    with http_server(args.server, {**env, "MARKET_READ_CACHE": "false"}) as base:
        for name, path in (
            ("task_list_not_kept", "/api/v1/tasks/?limit=20"),
            ("task_detail_not_kept", f"/api/v1/tasks/{total // 2}/"),
        ):
            http_load(f"{base}{path}", duration=1.0, headers=headers)  # warm up
            runs = [
                http_load(f"{base}{path}", duration=duration, headers=headers)
                for _ in range(rounds)
            ]
            figures[name] = summarise(runs)
    baseline = figures["minimal_json"]["rps"]
    for values in figures.values():
        values["ratio_to_minimal"] = ratio(values["rps"], baseline)
    emit(
        "api",
        {
            "tasks": total,
            "concurrency": clients,
            "duration_s": duration,
            "rounds": rounds,
            "server": args.server,
            "endpoints": figures,
        },
        quick=args.quick,
    )


if __name__ == "__main__":
    main()
