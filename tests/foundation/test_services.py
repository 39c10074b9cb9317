"""The embedded PostgreSQL+pgvector and Redis, and the real Celery worker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import redis
from django.core.cache import cache
from django.db import connection

from marketplace import embedded
from tests.conftest import ROOT, subprocess_env, wait_until


def test_database_has_pgvector_and_builds_an_hnsw_index(db: None) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        assert cursor.fetchone() is not None
        cursor.execute("CREATE TEMP TABLE probe (id serial, embedding vector(3))")
        cursor.execute(
            "INSERT INTO probe (embedding) SELECT ARRAY[random(), random(), random()]::vector"
            " FROM generate_series(1, 200)"
        )
        cursor.execute("CREATE INDEX ON probe USING hnsw (embedding vector_cosine_ops)")
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN SELECT id FROM probe ORDER BY embedding <=> '[1,0,0]' LIMIT 5")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "probe_embedding_idx" in plan


def test_redis_is_reachable_through_the_cache() -> None:
    cache.set("probe", "value", timeout=10)
    assert cache.get("probe") == "value"


@pytest.mark.django_db(transaction=True)
def test_a_task_queued_from_a_web_request_runs_in_a_real_worker(
    celery_worker_process: object, client_for: object, staff: object
) -> None:
    client = client_for(staff)
    response = client.post("/ops/worker-roundtrip")
    assert response.status_code == 202
    token = response.json()["token"]
    wait_until(lambda: client.get(f"/ops/worker-roundtrip?token={token}").json()["done"])
    assert client.get(f"/ops/worker-roundtrip?token={token}").json()["done"] == "1"


def test_worker_roundtrip_is_staff_only(client_for: object, alice: object) -> None:
    assert client_for(alice).post("/ops/worker-roundtrip").status_code == 403


def test_embedded_servers_restart_reuse_data_and_survive_a_crash(tmp_path: Path) -> None:
    # A short folder: Unix socket paths are limited to about 100 bytes.
    data_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"mkt-{os.getpid()}"
    try:
        url = embedded.ensure_redis(data_dir)
        client = redis.Redis.from_url(url)
        client.set("kept", "yes")
        pid = embedded._redis_pid(data_dir)
        assert embedded.ensure_redis(data_dir) == url
        assert embedded._redis_pid(data_dir) == pid  # started twice: the same server

        database_url = embedded.ensure_postgres(data_dir)
        postgres_pid = int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
        # Started here, for this folder only: the session must not stop the project's servers.
        assert embedded.started_here("postgres", data_dir)
        assert embedded.started_here("redis", data_dir)
        assert not embedded.started_here("postgres", data_dir / "elsewhere")
        assert embedded.ensure_postgres(data_dir) == database_url
        run_sql = [
            sys.executable,
            "-c",
            "import sys, psycopg; c = psycopg.connect(sys.argv[1], autocommit=True);"
            " cur = c.execute(sys.argv[2]); print(cur.fetchall() if cur.description else '')",
            database_url,
        ]
        subprocess.run(
            [*run_sql, "CREATE TABLE IF NOT EXISTS kept (v text); INSERT INTO kept VALUES ('yes')"],
            check=True,
        )

        # A stop and a start keep the data.
        client.save()
        client.close()
        assert embedded.stop_all(data_dir) == ["redis", "postgres"]
        assert not embedded.redis_running(data_dir)
        assert not embedded.postgres_running(data_dir)
        embedded.ensure_redis(data_dir)
        embedded.ensure_postgres(data_dir)
        assert redis.Redis.from_url(url).get("kept") == b"yes"
        out = subprocess.run([*run_sql, "SELECT v FROM kept"], capture_output=True, check=True)
        assert b"yes" in out.stdout

        # A crash (SIGKILL) leaves stale pid files and sockets that must not block the next start.
        postgres_pid = int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
        redis_pid = embedded._redis_pid(data_dir)
        for pid in (redis_pid, postgres_pid):
            os.kill(pid, signal.SIGKILL)
        psutil.wait_procs([psutil.Process(postgres_pid)], timeout=10) if psutil.pid_exists(
            postgres_pid
        ) else None
        assert (data_dir / "redis" / "redis.pid").exists()
        embedded.ensure_redis(data_dir)
        embedded.ensure_postgres(data_dir)
        assert redis.Redis.from_url(url).ping()
        out = subprocess.run([*run_sql, "SELECT v FROM kept"], capture_output=True, check=True)
        assert b"yes" in out.stdout
    finally:
        embedded.stop_all(data_dir)
        subprocess.run(["rm", "-rf", str(data_dir)], check=False)


def test_embedded_redis_answers_once_started_even_with_a_large_dataset() -> None:
    """Redis answers LOADING while it reads its append-only file back: ensure_redis returns only
    once it answers, so the first command after a restart does not fail."""
    data_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"mkt-big-{os.getpid()}"
    try:
        url = embedded.ensure_redis(data_dir)
        client = redis.Redis.from_url(url)
        client.execute_command("DEBUG", "POPULATE", 1_000_000, "key", 64)
        client.bgrewriteaof()  # DEBUG POPULATE is not logged: write it into the file
        while client.info("persistence")["aof_rewrite_in_progress"]:
            time.sleep(0.05)
        client.close()
        embedded.stop_redis(data_dir)
        embedded.ensure_redis(data_dir)
        client = redis.Redis.from_url(url)
        assert client.set("first", "command") and client.dbsize() == 1_000_001
        client.close()
    finally:
        embedded.stop_all(data_dir)
        subprocess.run(["rm", "-rf", str(data_dir)], check=False)


def _local_port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _manage(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(not _local_port_open(6379), reason="no Redis on 127.0.0.1:6379 here")
def test_external_redis_mode_uses_the_given_server() -> None:
    script = (
        "from django.core.cache import cache; from django.conf import settings;"
        "cache.set('external-probe', 'ok'); print(settings.REDIS_URL, cache.get('external-probe'))"
    )
    result = _manage(
        ["shell", "-c", script], REDIS_URL="redis://127.0.0.1:6379/0", REDIS_DATABASE_BASE="12"
    )
    assert result.returncode == 0, result.stderr
    assert "redis://127.0.0.1:6379/0 ok" in result.stdout
    # The cache lives in database BASE + 1 of the external server.
    external = redis.Redis(host="127.0.0.1", port=6379, db=13)
    assert external.exists(":1:external-probe")
    external.delete(":1:external-probe")
