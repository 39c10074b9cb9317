"""Loaded by pytest before Django (``-p tests.testenv``): the test environment's defaults.

Tests share the embedded servers of the data folder with ``make run`` but never its queues or
cache: Redis databases from REDIS_DATABASE_BASE=8 on, and PostgreSQL database test_marketplace.
"""

import os

os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-" + "x" * 40)
os.environ.setdefault("REDIS_DATABASE_BASE", "8")
os.environ.setdefault("API_RATE_ANON", "100000/minute")
os.environ.setdefault("API_RATE_USER", "100000/minute")
os.environ.setdefault("LOG_LEVEL", "WARNING")
