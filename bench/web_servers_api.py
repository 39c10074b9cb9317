"""The API's hottest reads and the pages under gunicorn and under ``make run``'s server, in pairs.

Both servers (2 workers each: gunicorn gthread x 4 threads; uvicorn on ``marketplace.asgi``, the
WSGI bridge with 4 threads) run at once on the same database of 10,000 tasks (``bench_api``, made
afresh), and the load alternates between them request kind by request kind, round by round, so a
change in the machine's load falls on both alike. 20 concurrent keep-alive clients, API-key auth.
Baseline: gunicorn on the same request in the same round; the figure is the median of the
per-round ratios.

    python bench/web_servers_api.py [--quick] [--rounds N]
"""

from __future__ import annotations

import contextlib
import os
import statistics

from harness import emit, http_load, http_server, parse_args, setup_django


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    rounds = args.rounds or (2 if args.quick else 5)
    duration = 2.0 if args.quick else 4.0
    os.environ.setdefault("REDIS_DATABASE_BASE", "20")
    setup_django("bench_web_api")
    from api import seed
    from django.conf import settings

    keys, _, _ = seed(2_000 if args.quick else 10_000, 1, 1)
    env = os.environ.copy()
    env.update(
        {
            "DEBUG": "false",
            "SECRET_KEY": "bench-" + "k" * 60,
            "DATABASE_URL": settings.DATABASE_URL,
            "REDIS_URL": settings.REDIS_URL,
            "EMBEDDING_BACKEND": "hashing",
            "API_RATE_USER": "100000000/minute",
            "LOG_LEVEL": "WARNING",
        }
    )
    headers = {"Authorization": f"Api-Key {keys[0]}"}
    paths = {
        "minimal_json": "/healthz",
        "task_list": "/api/v1/tasks/?limit=20",
        "task_detail": "/api/v1/tasks/1000/",
        "rendered_page": "/accounts/login/",
        "feed_page": "/",
    }
    servers = ("gunicorn", "uvicorn")
    runs: dict[str, dict[str, list[float]]] = {name: {s: [] for s in servers} for name in paths}
    with contextlib.ExitStack() as stack:
        bases = {server: stack.enter_context(http_server(server, env)) for server in servers}
        for server in servers:
            for path in paths.values():
                http_load(f"{bases[server]}{path}", duration=1.0, headers=headers)  # warm up
        for _ in range(rounds):
            for name, path in paths.items():
                for server in servers:
                    result = http_load(f"{bases[server]}{path}", duration=duration, headers=headers)
                    assert result["errors"] == 0, (server, path, result)
                    runs[name][server].append(result["rps"])
    figures = {}
    for name, by_server in runs.items():
        ratios = [u / g for g, u in zip(by_server["gunicorn"], by_server["uvicorn"], strict=True)]
        figures[name] = {
            "gunicorn_rps": statistics.median(by_server["gunicorn"]),
            "uvicorn_bridge_rps": statistics.median(by_server["uvicorn"]),
            "bridge_over_gunicorn": round(statistics.median(ratios), 3),
            "ratios": [round(r, 3) for r in ratios],
        }
    emit(
        "web_servers_api",
        {"rounds": rounds, "duration_s": duration, "concurrency": 20, "requests": figures},
        quick=args.quick,
    )


if __name__ == "__main__":
    main()
