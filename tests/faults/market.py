"""The marketplace as ``make run`` starts it (``manage.py up`` on servers of its own folder), with
the means to break its parts and to watch the API while they are broken: for the fault suite and
``bench/faults.py``.

The documented answers while a part is down (README, "When Redis is down") are a 2xx, or a 503 in
the one JSON error shape with ``Retry-After``; anything else is recorded as wrong.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg
import redis

from tests import own_marketplace
from tests.conftest import ROOT

KEY_LINE = re.compile(r"API key of Bob's research desk \(shown once\): (\S+)")


@dataclass
class Answer:
    at: float
    status: int  # 0: no HTTP answer at all (connection refused, reset, timeout)
    documented: bool
    detail: str = ""


def _documented(status: int, headers: http.client.HTTPMessage | None, body: bytes) -> bool:
    if 200 <= status < 300:
        return True
    if status != 503 or headers is None:
        return False
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return (
        set(error) == {"code", "message", "fields"}
        and int(headers.get("Retry-After") or 0) > 0
        and headers.get("Content-Type", "").startswith("application/json")
    )


class Market:
    """One ``manage.py up`` with its own data folder, port and log file."""

    def __init__(self, name: str, **extra_env: str) -> None:
        self.data_dir, self.port, self.env = own_marketplace.environment(name, **extra_env)
        self.log_path = Path(f"{self.data_dir}.log")
        self.process: subprocess.Popen[str] | None = None
        self.key = ""

    # --- running it -----------------------------------------------------------------------------

    def start(self, timeout: float = 240) -> None:
        self._log = open(self.log_path, "w")  # noqa: SIM115 (open for the market's lifetime)
        self.process = own_marketplace.start(self.env, self._log)
        ready = own_marketplace.wait_ready(self.port, self.process, timeout=timeout)
        if ready is None:
            raise RuntimeError(f"the market never became ready; see {self.log_path}")
        found = KEY_LINE.search(self.log_path.read_text())
        if found is None:
            raise RuntimeError(f"no demo API key in {self.log_path}")
        self.key = found.group(1)

    def stop(self) -> int | None:
        if self.process is None:
            return None
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = None
        self._log.close()
        return code

    def remove(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)
        if not os.environ.get("FAULTS_KEEP_LOG"):  # to read what happened after a run
            self.log_path.unlink(missing_ok=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def manage(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    # --- its parts ------------------------------------------------------------------------------

    def _children(self) -> list[psutil.Process]:
        assert self.process is not None
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def _main_of(self, *words: str) -> int | None:
        """The pid of the supervised command whose arguments include ``words`` (its main process,
        not its own children, e.g. not the Celery pool processes)."""
        children = self._children()
        ours = {self.process.pid} | {child.pid for child in children}  # not orphans of a killed one
        for child in children:
            try:
                argv, parent = child.cmdline(), child.parent()
                if parent is None or parent.pid not in ours:
                    continue
                parent_argv = parent.cmdline()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if all(word in argv for word in words) and not all(w in parent_argv for w in words):
                return child.pid
        return None

    def worker_pid(self) -> int | None:
        return self._main_of("celery", "worker")

    def beat_pid(self) -> int | None:
        return self._main_of("celery", "beat")

    def web_pid(self) -> int | None:
        return self._main_of("uvicorn", "marketplace.asgi:application")

    def redis_pid(self) -> int | None:
        try:
            pid = int((self.data_dir / "redis" / "redis.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if psutil.pid_exists(pid) else None

    def postgres_pid(self) -> int | None:
        try:
            pid = int((self.data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        return pid if psutil.pid_exists(pid) else None

    def redis_answers(self) -> bool:
        client = redis.Redis(
            unix_socket_path=str(self.data_dir / "redis" / "redis.sock"), socket_timeout=1
        )
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def postgres_answers(self) -> bool:
        try:
            lines = (self.data_dir / "postgres" / "postmaster.pid").read_text().splitlines()
            with psycopg.connect(
                host=lines[4].strip(), user="postgres", dbname="marketplace", connect_timeout=2
            ) as connection:
                connection.execute("SELECT 1")
            return True
        except (OSError, IndexError, psycopg.Error):
            return False

    # --- the API --------------------------------------------------------------------------------

    def request(
        self, method: str, path: str, body: object = None, timeout: float = 10
    ) -> tuple[int, http.client.HTTPMessage | None, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        headers = {"Authorization": f"Api-Key {self.key}"}
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        try:
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            return response.status, response.headers, response.read()
        except OSError as error:
            return 0, None, str(error).encode()
        finally:
            connection.close()

    def ready(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", "/readyz")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()


@dataclass
class Load:
    """API clients reading (the task list, the key's holder) as fast as they can, every answer
    recorded with its time."""

    market: Market
    clients: int = 4
    answers: list[Answer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def _client(self, index: int) -> None:
        paths = ["/api/v1/tasks/?limit=5", "/api/v1/me/"]
        turn = index
        while not self._stop.is_set():
            path = paths[turn % len(paths)]
            turn += 1
            status, headers, body = self.market.request("GET", path)
            answer = Answer(time.monotonic(), status, _documented(status, headers, body))
            if not answer.documented:
                answer.detail = f"{path}: {status} {body[:200]!r}"
            with self._lock:
                self.answers.append(answer)
            if status != 200:
                time.sleep(0.05)  # as a client told to wait would, a little

    def __enter__(self) -> Load:
        for index in range(self.clients):
            thread = threading.Thread(target=self._client, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def wrong(self) -> list[str]:
        return [answer.detail for answer in self.answers if not answer.documented]

    def recovered_at(self, after: float) -> float | None:
        """When the API answered 200 again after ``after`` and kept doing so: the time of the
        first answer after the last failure (None if it never did)."""
        with self._lock:
            later = [answer for answer in self.answers if answer.at >= after]
        last_bad = max((a.at for a in later if a.status != 200), default=after)
        good = [a.at for a in later if a.at > last_bad and a.status == 200]
        return min(good) if good else None


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.1) -> float:
    """Seconds until ``predicate()`` held; raises after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(interval)
    raise AssertionError(f"not within {timeout} s: {getattr(predicate, '__name__', predicate)}")


def fault_env() -> dict[str, str]:
    """What the fault runs set: fast embeddings and limits the load cannot reach. The queue lease
    and the heartbeat are the defaults: work sent while the broker is down leaves through the
    outbox once it is back, and a killed worker's attempt is re-queued a heartbeat lease later."""
    return {
        "EMBEDDING_BACKEND": "hashing",
        "API_RATE_USER": "1000000/minute",
        "API_RATE_ANON": "1000000/minute",
        "MARKET_WRITE_RATE": "1000000/minute",
        "LOG_LEVEL": os.environ.get("FAULTS_LOG_LEVEL", "WARNING"),
    }
