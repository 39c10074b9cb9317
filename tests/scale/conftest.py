"""Session fixtures of the scale tests: the shared servers a multi-machine deployment uses."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from django.conf import settings

from tests.scale import servers


@pytest.fixture(scope="session")
def s3_server() -> Iterator[servers.S3Server]:
    server = servers.start_s3(settings.DATA_DIR / "scale" / "s3")
    yield server
    servers.stop(server.process)


@pytest.fixture(scope="session")
def pgbouncer() -> Iterator[servers.PgBouncer]:
    if not os.path.exists(servers.PGBOUNCER):
        pytest.skip("pgbouncer is not installed (scripts/ensure-pgbouncer.sh installs it)")
    bouncer = servers.start_pgbouncer(settings.DATA_DIR / "scale" / "pgbouncer")
    yield bouncer
    servers.stop(bouncer.process)
