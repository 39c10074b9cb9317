"""The one run command, end to end: starts everything, serves, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import shutil
import signal
import subprocess

import psutil

from tests import own_marketplace


def test_run_command_serves_the_site_and_ctrl_c_stops_everything() -> None:
    data_dir, port, env = own_marketplace.environment("run")
    process = own_marketplace.start(env, subprocess.PIPE)
    try:
        ready = own_marketplace.wait_ready(port, process)
        assert ready is not None, "the site never became ready"
        assert ready["checks"]["worker"]["ok"] is True
        assert own_marketplace.http_get(f"http://127.0.0.1:{port}/")[0] == 200
        # The MCP endpoint is on the same origin, and refuses a request without an API key.
        assert own_marketplace.http_get(f"http://127.0.0.1:{port}/mcp")[0] == 401
        children = psutil.Process(process.pid).children(recursive=True)
        assert len(children) >= 3  # web, worker, beat (and their own children)

        process.send_signal(signal.SIGINT)
        remaining, _ = process.communicate(timeout=60)
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
