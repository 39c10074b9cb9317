"""Why plain HTTP is served by gunicorn (WSGI) and websockets by uvicorn (ASGI).

The same two Django views (a minimal JSON view, ``/healthz``, and a rendered page with a session
and CSRF token, ``/accounts/login/``) under gunicorn (2 gthread workers) and under uvicorn
(2 workers), 20 concurrent keep-alive clients. Baseline: gunicorn on ``/healthz``.

    python bench/web_servers.py [--quick]
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from harness import ROOT, emit, http_load, median, parse_args, ratio, wait_for_http


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


SERVERS = {
    "gunicorn_wsgi": "{python} -m gunicorn marketplace.wsgi:application --bind 127.0.0.1:{port}"
    " --workers 2 --threads 4 --worker-class gthread --log-level warning",
    "uvicorn_asgi": "{python} -m uvicorn marketplace.asgi:application --host 127.0.0.1"
    " --port {port} --workers 2 --no-access-log --lifespan off --log-level warning",
}
PATHS = {"minimal_json": "/healthz", "rendered_page": "/accounts/login/"}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    duration = 2.0 if args.quick else 6.0
    rounds = args.rounds or (1 if args.quick else 3)
    env = os.environ.copy()
    env.update({"DEBUG": "false", "SECRET_KEY": "bench-" + "k" * 60, "LOG_LEVEL": "WARNING"})
    env.setdefault("REDIS_DATABASE_BASE", "28")
    figures: dict[str, dict[str, float]] = {}
    for server, command in SERVERS.items():
        port = free_port()
        process = subprocess.Popen(
            command.format(python=sys.executable, port=port).split(),
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
        try:
            wait_for_http(f"http://127.0.0.1:{port}/healthz")
            for name, path in PATHS.items():
                http_load(f"http://127.0.0.1:{port}{path}", duration=1.0)  # warm up
                runs = [
                    http_load(f"http://127.0.0.1:{port}{path}", duration=duration)
                    for _ in range(rounds)
                ]
                figures[f"{server}.{name}"] = {
                    "rps": median(run["rps"] for run in runs),
                    "p95_ms": median(run["p95_ms"] for run in runs),
                    "errors": sum(run["errors"] for run in runs),
                }
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
    baseline = figures["gunicorn_wsgi.minimal_json"]["rps"]
    for values in figures.values():
        values["ratio_to_gunicorn_minimal"] = ratio(values["rps"], baseline)
    emit(
        "web_servers",
        {
            "concurrency": 20,
            "duration_s": duration,
            "rounds": rounds,
            "servers": figures,
            "asgi_over_wsgi_page": ratio(
                figures["uvicorn_asgi.rendered_page"]["rps"],
                figures["gunicorn_wsgi.rendered_page"]["rps"],
            ),
        },
        quick=args.quick,
    )


if __name__ == "__main__":
    main()
