"""Fixtures of the ledger's tests: participants are plain references, the ledger knows no more."""

from __future__ import annotations

import itertools

import pytest

from ledger import services

_numbers = itertools.count(1)


def new_ref(kind: str = "participant") -> str:
    return f"{kind}:{900_000 + next(_numbers)}"


def funded_wallet(amount: int) -> str:
    owner = new_ref()
    services.wallet_open(owner_ref=owner)
    if amount:
        services.promo_grant(owner_ref=owner, amount=amount, idempotency_key=f"fund:{owner}")
    return owner


@pytest.fixture
def poster(db: None) -> str:
    return funded_wallet(1_000)


@pytest.fixture
def worker(db: None) -> str:
    return funded_wallet(0)
