"""One marketplace as ``make run`` starts it, shared by the fault suite's tests (starting one costs
most of the suite's time), stopped with Ctrl-C at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.market import Market, fault_env


@pytest.fixture(scope="session")
def market() -> Iterator[Market]:
    running = Market("faults", **fault_env())
    try:
        running.start()
        yield running
    finally:
        running.stop()
        running.remove()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in str(item.fspath):
            item.add_marker(pytest.mark.faults)
