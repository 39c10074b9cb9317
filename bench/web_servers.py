"""How the web server serves pages and API: uvicorn with the WSGI bridge, against the alternatives.

The same two Django views (a minimal JSON view, ``/healthz``, and a rendered page with a session
and CSRF token, ``/accounts/login/``) under three servers of 2 workers each, 20 concurrent
keep-alive clients: gunicorn (WSGI, gthread, 4 threads), uvicorn serving ``marketplace.asgi``
(Django's WSGI handler on 4 threads through a2wsgi, websockets beside it on the same port: what
``make run`` and deploy/ run) and uvicorn on Django's own ASGI handler. Baseline: gunicorn on
``/healthz``. The servers take turns, once per round, so a change in the machine's load falls on
all of them.

    python bench/web_servers.py [--quick]
"""

from __future__ import annotations

import os

from harness import emit, http_load, http_server, parse_args, ratio, summarise

LABELS = {
    "gunicorn": "gunicorn_wsgi",
    "uvicorn": "uvicorn_wsgi_bridge",
    "uvicorn_django_asgi": "uvicorn_django_asgi",
}
PATHS = {"minimal_json": "/healthz", "rendered_page": "/accounts/login/"}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    duration = 2.0 if args.quick else 6.0
    rounds = args.rounds or (1 if args.quick else 3)
    env = os.environ.copy()
    env.update({"DEBUG": "false", "SECRET_KEY": "bench-" + "k" * 60, "LOG_LEVEL": "WARNING"})
    env.setdefault("REDIS_DATABASE_BASE", "28")
    runs: dict[str, list[dict[str, float]]] = {}
    for _ in range(rounds):
        for kind, label in LABELS.items():
            with http_server(kind, env) as base:
                for name, path in PATHS.items():
                    http_load(f"{base}{path}", duration=1.0)  # warm up
                    run = http_load(f"{base}{path}", duration=duration)
                    runs.setdefault(f"{label}.{name}", []).append(run)
    figures = {name: summarise(measured) for name, measured in runs.items()}
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
            "bridge_over_gunicorn": {
                name: ratio(
                    figures[f"uvicorn_wsgi_bridge.{name}"]["rps"],
                    figures[f"gunicorn_wsgi.{name}"]["rps"],
                )
                for name in PATHS
            },
            "django_asgi_over_gunicorn": {
                name: ratio(
                    figures[f"uvicorn_django_asgi.{name}"]["rps"],
                    figures[f"gunicorn_wsgi.{name}"]["rps"],
                )
                for name in PATHS
            },
        },
        quick=args.quick,
    )


if __name__ == "__main__":
    main()
