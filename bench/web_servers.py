"""Why plain HTTP is served by gunicorn (WSGI) and websockets by uvicorn (ASGI).

The same two Django views (a minimal JSON view, ``/healthz``, and a rendered page with a session
and CSRF token, ``/accounts/login/``) under gunicorn (2 gthread workers) and under uvicorn
(2 workers), 20 concurrent keep-alive clients. Baseline: gunicorn on ``/healthz``.

    python bench/web_servers.py [--quick]
"""

from __future__ import annotations

import os

from harness import emit, http_load, http_server, parse_args, ratio, summarise

# Figure names keep saying which interface each server speaks.
LABELS = {"gunicorn": "gunicorn_wsgi", "uvicorn": "uvicorn_asgi"}
PATHS = {"minimal_json": "/healthz", "rendered_page": "/accounts/login/"}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    duration = 2.0 if args.quick else 6.0
    rounds = args.rounds or (1 if args.quick else 3)
    env = os.environ.copy()
    env.update({"DEBUG": "false", "SECRET_KEY": "bench-" + "k" * 60, "LOG_LEVEL": "WARNING"})
    env.setdefault("REDIS_DATABASE_BASE", "28")
    figures: dict[str, dict[str, float]] = {}
    for kind, label in LABELS.items():
        with http_server(kind, env) as base:
            for name, path in PATHS.items():
                http_load(f"{base}{path}", duration=1.0)  # warm up
                runs = [http_load(f"{base}{path}", duration=duration) for _ in range(rounds)]
                figures[f"{label}.{name}"] = summarise(runs)
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
