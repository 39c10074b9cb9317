"""Probes, and configuration errors that stop the start with a clear message."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from tests.conftest import ROOT, subprocess_env

READYZ = (
    "import json; from django.test import Client;"
    "r = Client().get('/readyz'); print(r.status_code, json.dumps(r.json()))"
)


def run_manage(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_healthz_answers_json(client: object) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db(transaction=True)
def test_readyz_is_ready_with_a_worker(client: object, celery_worker_process: object) -> None:
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ready"
    assert body["checks"]["database"]["pgvector"] == "0.6.2"
    assert body["checks"]["worker"]["ok"] is True


def test_readyz_reports_a_missing_worker_with_the_reason() -> None:
    # No worker consumes from these Redis databases.
    result = run_manage(["shell", "-c", READYZ], REDIS_DATABASE_BASE="29")
    status, body = result.stdout.strip().splitlines()[-1].split(" ", 1)
    body = json.loads(body)
    assert status == "503"
    assert body["status"] == "not ready"
    assert body["checks"]["worker"] == {
        "ok": False,
        "reason": "no Celery worker answered a ping within 1 s",
        "ms": body["checks"]["worker"]["ms"],
    }
    assert body["checks"]["database"]["ok"] is True


def test_readyz_reports_a_missing_database_with_the_reason(tmp_path: object) -> None:
    result = run_manage(
        ["shell", "-c", READYZ],
        DATABASE_URL=f"postgresql://postgres@/nothing?host={tmp_path}",
        REDIS_DATABASE_BASE="29",
    )
    status, body = result.stdout.strip().splitlines()[-1].split(" ", 1)
    body = json.loads(body)
    assert status == "503"
    assert body["checks"]["database"]["ok"] is False
    assert "OperationalError" in body["checks"]["database"]["reason"]


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.skipif(not _port_open(5432), reason="no PostgreSQL on 127.0.0.1:5432 here")
def test_readyz_on_an_external_postgres_without_pgvector_says_so() -> None:
    result = run_manage(
        ["shell", "-c", READYZ],
        DATABASE_URL="postgresql://postgres@127.0.0.1:5432/postgres",
        REDIS_DATABASE_BASE="29",
    )
    status, body = result.stdout.strip().splitlines()[-1].split(" ", 1)
    assert status == "503", result.stderr
    assert json.loads(body)["checks"]["database"] == {
        "ok": False,
        "reason": "the pgvector extension is not installed",
        "ms": json.loads(body)["checks"]["database"]["ms"],
    }


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL": "mysql://root@localhost/db"}, "DATABASE_URL must start with one of"),
        ({"DATABASE_URL": "postgresql://host:notaport/db"}, "DATABASE_URL is malformed"),
        ({"REDIS_URL": "http://localhost"}, "REDIS_URL must start with one of"),
        ({"DEBUG": "maybe"}, "DEBUG='maybe' is not a boolean"),
        ({"DEBUG": "false", "SECRET_KEY": ""}, "SECRET_KEY is required when DEBUG is off"),
        ({"DEBUG": "false", "SECRET_KEY": "short"}, "SECRET_KEY must be at least 50 characters"),
        ({"PLATFORM_FEE_BASIS_POINTS": "five"}, "PLATFORM_FEE_BASIS_POINTS='five' is not an"),
        ({"EMBEDDING_BACKEND": "magic"}, "EMBEDDING_BACKEND='magic' must be one of"),
        ({"WORKERS_MAX_ATTEMPTS": "0"}, "WORKERS_MAX_ATTEMPTS=0 must be at least 1"),
        ({"SECURE_HSTS_SECONDS": "soon"}, "SECURE_HSTS_SECONDS='soon' is not an integer"),
    ],
)
def test_bad_configuration_stops_with_a_clear_message(env: dict[str, str], message: str) -> None:
    result = run_manage(["check"], **env)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_production_settings_pass_the_deploy_check() -> None:
    result = run_manage(
        ["check", "--deploy", "--fail-level", "WARNING"],
        DEBUG="false",
        HTTPS="true",
        SECRET_KEY="a-production-secret-key-that-is-long-enough-" + "y" * 30,
        ALLOWED_HOSTS="market.example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_env_example_lists_every_variable_the_settings_read() -> None:
    import re

    settings_source = (ROOT / "marketplace" / "settings.py").read_text()
    read = set(re.findall(r'env_[a-z]+\(\s*"([A-Z0-9_]+)"', settings_source))
    listed = set(re.findall(r"^([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert read - listed == set()


@pytest.mark.django_db
def test_every_model_change_has_its_migration() -> None:
    """What ``makemigrations --check`` says, inside the test session: run as a command of its own
    before the tests, it started the embedded servers in a process that left them running."""
    from django.core.management import call_command

    try:
        call_command("makemigrations", "--check", "--dry-run", verbosity=0)
    except SystemExit:
        pytest.fail("Models changed without a migration: run `manage.py makemigrations`.")
