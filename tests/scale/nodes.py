"""Web and worker nodes as separate process groups, each with a data folder of its own, on the
shared servers the test names in its environment (as machines of a deployment would be)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from celery import current_app

from tests.conftest import ROOT
from tests.scale.servers import free_port


def node_environment(data_dir: Path, **overrides: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DJANGO_ALLOW_ASYNC_UNSAFE", "DATA_DIR"}
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    # TASK_LOG_LEVEL=INFO: the tests read beat's "Sending due task" lines to see who schedules.
    env.update(
        {"DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", "TASK_LOG_LEVEL": "INFO", **overrides}
    )
    return env


@dataclass
class Node:
    name: str
    process: subprocess.Popen
    log: Path
    port: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL the whole process group, as a machine's crash would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def _spawn(name: str, command: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
    log = Path(env["DATA_DIR"]) / f"{name}.log"
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=open(log, "wb"),  # noqa: SIM115 - lives as long as the process
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a process group of its own: killed as one, like a machine
    )
    return process, log


def spawn_web(name: str, env: dict[str, str]) -> Node:
    port = free_port()
    env = {**env, "SITE_URL": f"http://127.0.0.1:{port}"}
    process, log = _spawn(
        name,
        [sys.executable, "-m", "uvicorn", "marketplace.asgi:application"]
        + ["--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--lifespan", "on"],
        env,
    )
    return Node(name, process, log, port)


def start_web(name: str, env: dict[str, str], timeout: float = 60) -> Node:
    return wait_web(spawn_web(name, env), timeout)


def wait_web(node: Node, timeout: float = 60) -> Node:
    process, name = node.process, node.name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"web node {name} exited: {node.tail()}")
        try:
            with urllib.request.urlopen(f"{node.url}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return node
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    node.stop()
    raise RuntimeError(f"web node {name} did not answer: {node.tail()}")


def spawn_worker(name: str, env: dict[str, str], *, concurrency: int = 1) -> Node:
    hostname = f"{name}@{os.getpid()}"
    process, log = _spawn(
        name,
        [sys.executable, "-m", "celery", "-A", "workers.celery", "worker", "--loglevel", "INFO"]
        + ["--concurrency", str(concurrency), "--hostname", hostname]
        + ["--without-gossip", "--without-mingle"],
        env,
    )
    return Node(name, process, log, extra={"hostname": hostname})


def start_worker(
    name: str, env: dict[str, str], *, concurrency: int = 1, app=None, timeout: float = 60
) -> Node:
    return wait_worker(spawn_worker(name, env, concurrency=concurrency), app, timeout)


def wait_worker(node: Node, app=None, timeout: float = 60) -> Node:
    process, name, hostname = node.process, node.name, node.extra["hostname"]
    control = (app or current_app).control
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"worker node {name} exited: {node.tail()}")
        if control.ping(destination=[hostname], timeout=0.5):
            return node
    node.stop()
    raise RuntimeError(f"worker node {name} did not answer: {node.tail()}")


def start_beat(name: str, env: dict[str, str]) -> Node:
    process, log = _spawn(
        name,
        [sys.executable, "-m", "celery", "-A", "workers.celery", "beat", "--loglevel", "INFO"],
        env,
    )
    return Node(name, process, log)
