"""The one run command, end to end: starts everything, serves, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

from tests.conftest import ROOT


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_run_command_serves_the_site_and_ctrl_c_stops_everything() -> None:
    # Its own data folder (short: Unix socket paths are limited), so it starts its own servers.
    data_dir = Path("/tmp") / f"mkt-run-{os.getpid()}"
    shutil.rmtree(data_dir, ignore_errors=True)
    port = _free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "REDIS_DATABASE_BASE"}
    }
    env.update({"DATA_DIR": str(data_dir), "DEBUG": "true", "PORT": str(port)})
    env["WS_PORT"] = str(_free_port())
    process = subprocess.Popen(
        [sys.executable, "manage.py", "up", "--web-workers", "1", "--worker-concurrency", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    try:
        ready = None
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status, body = _get(f"http://127.0.0.1:{port}/readyz")
            except OSError:
                time.sleep(0.5)
                continue
            if status == 200:
                ready = json.loads(body)
                break
            time.sleep(0.5)
        assert ready is not None, "the site never became ready"
        assert ready["checks"]["worker"]["ok"] is True
        assert _get(f"http://127.0.0.1:{port}/")[0] == 200
        children = psutil.Process(process.pid).children(recursive=True)
        assert len(children) >= 4  # web, ws, worker, beat (and their own children)

        process.send_signal(signal.SIGINT)
        remaining, _ = process.communicate(timeout=60)
        output.append(remaining)
        assert f"running at http://127.0.0.1:{port}" in remaining
        assert "demo login: alice" in remaining
        assert "stopped the embedded postgres and redis" in remaining
        _, alive = psutil.wait_procs(children, timeout=10)
        assert alive == []
        servers = [
            proc
            for proc in psutil.process_iter(["cmdline"])
            if str(data_dir) in " ".join(proc.info["cmdline"] or [])
        ]
        assert servers == []
    finally:
        if process.poll() is None:
            process.kill()
        shutil.rmtree(data_dir, ignore_errors=True)
