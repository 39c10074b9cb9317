"""The distributed parts a multi-machine deployment uses, started on loopback for the tests.

An S3 API (moto's server: the one faked part of the outside world), PgBouncer in transaction
pooling mode in front of the embedded PostgreSQL, and the machine's RabbitMQ when it answers.
Each is a real server process other processes reach over TCP, as web and worker nodes would.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from django.conf import settings

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
S3_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited early: {log.read_text()[-2000:]}")
        if answers(port):
            return
        time.sleep(0.1)
    raise RuntimeError(f"no answer on port {port}: {log.read_text()[-2000:]}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class S3Server:
    process: subprocess.Popen
    endpoint: str
    bucket: str

    def environment(self) -> dict[str, str]:
        """What a node needs to keep its files in the bucket."""
        return {
            "STORAGE_S3_BUCKET": self.bucket,
            "AWS_S3_ENDPOINT_URL": self.endpoint,
            "AWS_S3_REGION_NAME": "us-east-1",
            **S3_KEYS,
        }

    def storages(self, signed_seconds: int = 60) -> dict:
        """The STORAGES setting a node with ``environment()`` computes (for in-process tests)."""
        return {
            **settings.STORAGES,
            "default": {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {
                    "bucket_name": self.bucket,
                    "endpoint_url": self.endpoint,
                    "region_name": "us-east-1",
                    "access_key": S3_KEYS["AWS_ACCESS_KEY_ID"],
                    "secret_key": S3_KEYS["AWS_SECRET_ACCESS_KEY"],
                    "default_acl": None,
                    "querystring_auth": True,
                    "querystring_expire": signed_seconds,
                    "file_overwrite": True,
                    "signature_version": "s3v4",
                },
            },
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
        )


def start_s3(directory: Path, bucket: str = "deliverables") -> S3Server:
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = directory / "moto.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=open(log, "wb"),  # noqa: SIM115 - lives as long as the process
        stderr=subprocess.STDOUT,
    )
    wait_port(port, process, log)
    server = S3Server(process, f"http://127.0.0.1:{port}", bucket)
    server.client().create_bucket(Bucket=bucket)
    return server


@dataclass
class PgBouncer:
    process: subprocess.Popen
    port: int

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


def start_pgbouncer(directory: Path, pool_size: int = 10) -> PgBouncer:
    """PgBouncer in transaction mode on a loopback port, in front of the embedded PostgreSQL's
    socket (every database). It refuses to run as root: it runs as the server's own user."""
    directory.mkdir(parents=True, exist_ok=True)
    parts = urlsplit(settings.DATABASE_URL)
    socket_dir = parse_qs(parts.query).get("host", [settings.DATABASES["default"]["HOST"]])[0]
    owner = Path(socket_dir).owner()
    port = free_port()
    config = directory / "pgbouncer.ini"
    config.write_text(
        "\n".join(
            [
                "[databases]",
                f"* = host={socket_dir} user=postgres",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = any",
                "pool_mode = transaction",
                f"default_pool_size = {pool_size}",
                "max_client_conn = 500",
                "server_reset_query =",
                # Tests drop and create their database; pgbouncer must not hold it.
                "server_idle_timeout = 5",
                "ignore_startup_parameters = extra_float_digits",
                "admin_users = postgres",
                "",
            ]
        )
    )
    shutil.chown(directory, user=owner)
    shutil.chown(config, user=owner)
    log = directory / "pgbouncer.log"
    command = [PGBOUNCER, str(config)]
    if os.geteuid() == 0:
        command[1:1] = ["-u", owner]
    process = subprocess.Popen(
        command,
        stdout=open(log, "wb"),  # noqa: SIM115 - lives as long as the process
        stderr=subprocess.STDOUT,
    )
    wait_port(port, process, log)
    return PgBouncer(process, port)


def rabbitmq_answers() -> bool:
    return answers(5672)
