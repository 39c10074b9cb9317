"""A Redis server of a test's own, on a Unix socket in a folder of its own: to kill and start
again without touching the embedded Redis the rest of the suite shares."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from marketplace.embedded import _redis_executable


class OwnRedis:
    def __init__(self) -> None:
        # Short: Unix socket paths are limited to about 100 bytes.
        self.folder = Path(tempfile.mkdtemp(prefix="redis-", dir="/tmp"))
        self.socket = self.folder / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, database: int = 0) -> str:
        return f"unix://{self.socket}?db={database}"

    def start(self) -> None:
        self.socket.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [str(_redis_executable()), "--port", "0", "--unixsocket", str(self.socket)]
            + ["--save", "", "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1)
            try:
                if client.ping():
                    return
            except redis.RedisError:
                time.sleep(0.02)
            finally:
                client.close()
        raise RuntimeError("the test's own Redis did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)
