"""Loaded by pytest before Django (``-p tests.testenv``): the test environment's defaults.

Tests share the embedded servers of the data folder with ``make run`` but never its queues or
cache: Redis databases from REDIS_DATABASE_BASE=8 on, and PostgreSQL database test_marketplace.
Under pytest-xdist each worker process gets its own four Redis databases (its Celery worker, cache
and channel layer) and pytest-django gives it its own test database.
"""

import os

os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-" + "x" * 40)
os.environ.setdefault("REDIS_DATABASE_BASE", "8")
os.environ.setdefault("API_RATE_ANON", "100000/minute")
os.environ.setdefault("API_RATE_USER", "100000/minute")
os.environ.setdefault("LOG_LEVEL", "WARNING")

_xdist_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _xdist_worker.startswith("gw"):
    _base = int(os.environ["REDIS_DATABASE_BASE"]) + 4 * int(_xdist_worker[2:])
    os.environ["REDIS_DATABASE_BASE"] = str(_base)
