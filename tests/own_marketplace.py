"""The whole marketplace as ``make run`` starts it, on servers of a data folder of its own.

For the end-to-end tests that start, restart or stop servers: they must never touch the servers
the rest of the suite shares.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from tests.conftest import ROOT

UP = [sys.executable, "manage.py", "up", "--web-workers", "1", "--worker-concurrency", "1"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def environment(name: str, **extra: str) -> tuple[Path, int, dict[str, str]]:
    """A fresh data folder (short: Unix socket paths are limited), a free port, and the
    environment of a run command on them (no URLs: it starts its own embedded servers)."""
    data_dir = Path("/tmp") / f"mkt-{name}-{os.getpid()}"
    shutil.rmtree(data_dir, ignore_errors=True)
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "REDIS_DATABASE_BASE", "EMBEDDING_BACKEND"}
    }
    env.update(
        {
            "DATA_DIR": str(data_dir),
            "DEBUG": "true",
            "PORT": str(port),
            **extra,
        }
    )
    return data_dir, port, env


def start(env: dict[str, str], output: IO[str] | int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        UP, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, text=True
    )


def wait_ready(port: int, process: subprocess.Popen[str], timeout: float = 150) -> dict | None:
    """The body of ``/readyz`` once it answers 200, or None if the command died or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            status, body = http_get(f"http://127.0.0.1:{port}/readyz")
        except OSError:
            status, body = 0, b""
        if status == 200:
            return json.loads(body)
        time.sleep(0.5)
    return None
