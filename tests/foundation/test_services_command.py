"""``manage.py services status`` only looks and ``services stop`` only stops: neither starts the
embedded servers (settings start them for every other command when no URLs are given)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_status_and_stop_start_nothing() -> None:
    data_dir = Path("/tmp") / f"mkt-status-{os.getpid()}"
    shutil.rmtree(data_dir, ignore_errors=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    }
    env.update({"DATA_DIR": str(data_dir), "DEBUG": "true"})
    try:
        for action, expected in (
            ("status", "postgres: stopped\nredis: stopped"),
            ("stop", "stopped: nothing was running"),
            ("status", "postgres: stopped\nredis: stopped"),
        ):
            result = subprocess.run(
                [sys.executable, "manage.py", "services", action],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert result.returncode == 0, result.stderr
            assert expected in result.stdout
            assert not (data_dir / "postgres").exists() and not (data_dir / "redis").exists()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
