"""Fixtures of the workers tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    # A literal address, so the allowed-host setting names exactly what the agent URL uses.
    return ("127.0.0.1", 0)
