"""The database itself refuses to break the books, whatever SQL is sent to it."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from ledger import services
from ledger.models import Account, JournalEntry, Transfer
from tests.ledger.conftest import funded_wallet, new_ref


def raw(sql: str, params: list | None = None) -> None:
    """Run one statement in a savepoint; the test goes on after it fails."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # deferred checks fire here


@pytest.fixture
def books(db: None) -> dict:
    alice, bob = funded_wallet(100), funded_wallet(0)
    entry = services.transfer_post(
        legs=[services.TransferLeg(source=alice, destination=bob, amount=30)],
        idempotency_key="t",
    )
    return {
        "alice": Account.objects.get(address=f"wallet:{alice}"),
        "bob": Account.objects.get(address=f"wallet:{bob}"),
        "entry": entry,
        "transfer": entry.transfers.get(),
    }


def balances() -> dict[str, int]:
    return dict(Account.objects.values_list("address", "balance"))


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE ledger_transfer SET amount = amount + 1 WHERE id = %(transfer)s",
        "UPDATE ledger_transfer SET credit_account_id = %(alice)s WHERE id = %(transfer)s",
        "DELETE FROM ledger_transfer WHERE id = %(transfer)s",
        "UPDATE ledger_journalentry SET memo = 'edited' WHERE id = %(entry)s",
        "UPDATE ledger_journalentry SET idempotency_key = 'other' WHERE id = %(entry)s",
        "DELETE FROM ledger_journalentry WHERE id = %(entry)s",
        "UPDATE ledger_account SET balance = balance + 1000 WHERE id = %(bob)s",
        "UPDATE ledger_account SET may_go_negative = true WHERE id = %(alice)s",
        "UPDATE ledger_account SET address = 'wallet:someone' WHERE id = %(alice)s",
        "DELETE FROM ledger_account WHERE id = %(bob)s",
        # a transfer of nothing, of a negative amount, or from an account to itself
        "INSERT INTO ledger_transfer (entry_id, debit_account_id, credit_account_id, amount)"
        " VALUES (%(entry)s, %(alice)s, %(bob)s, 0)",
        "INSERT INTO ledger_transfer (entry_id, debit_account_id, credit_account_id, amount)"
        " VALUES (%(entry)s, %(alice)s, %(bob)s, -5)",
        "INSERT INTO ledger_transfer (entry_id, debit_account_id, credit_account_id, amount)"
        " VALUES (%(entry)s, %(alice)s, %(alice)s, 5)",
        # driving a wallet below zero
        "INSERT INTO ledger_transfer (entry_id, debit_account_id, credit_account_id, amount)"
        " VALUES (%(entry)s, %(bob)s, %(alice)s, 31)",
        # an entry with no transfers
        "INSERT INTO ledger_journalentry (idempotency_key, fingerprint, reason, domain_ref, memo,"
        " actor_ref, occurred_at, created_at) VALUES ('empty', '', 'transfer', '', '', '',"
        " now(), now())",
    ],
)
def test_raw_sql_cannot_edit_unbalance_or_overdraw(books: dict, sql: str) -> None:
    before = balances()
    params = {name: getattr(value, "pk", value) for name, value in books.items()}
    with pytest.raises(DatabaseError):
        raw(sql % params)
    assert balances() == before
    assert JournalEntry.objects.count() == 2
    assert Transfer.objects.count() == 2


def test_a_raw_transfer_moves_both_balances_in_the_same_statement(books: dict) -> None:
    """The only way to change a balance is a transfer, and then both sides move."""
    params = {name: getattr(value, "pk", value) for name, value in books.items()}
    raw(
        "INSERT INTO ledger_transfer (entry_id, debit_account_id, credit_account_id, amount)"
        " VALUES ({entry}, {bob}, {alice}, 10)".format(**params)
    )
    assert balances()[books["alice"].address] == 80
    assert balances()[books["bob"].address] == 20
    assert sum(balances().values()) == 0


@pytest.mark.django_db(transaction=True)
def test_a_committed_entry_cannot_gain_transfers() -> None:
    alice, bob = funded_wallet(100), funded_wallet(0)
    entry = services.transfer_post(
        legs=[services.TransferLeg(source=alice, destination=bob, amount=30)],
        idempotency_key="t",
    )
    ids = {a.address: a.pk for a in Account.objects.all()}
    with pytest.raises(DatabaseError, match="in the transaction that wrote it"):
        raw(
            "INSERT INTO ledger_transfer (entry_id, debit_account_id, credit_account_id, amount)"
            f" VALUES ({entry.pk}, {ids[f'wallet:{bob}']}, {ids[f'wallet:{alice}']}, 10)"
        )
    assert Account.objects.get(address=f"wallet:{bob}").balance == 30


def test_escrow_balance_check_constraint(db: None) -> None:
    """Even with the account guard out of the way, the CHECK keeps wallets and escrows >= 0."""
    owner = funded_wallet(5)
    task = new_ref("task")
    services.escrow_lock(task_ref=task, payer_ref=owner, amount=5, idempotency_key="l")
    with (
        pytest.raises(DatabaseError, match="ledger_account_balance_non_negative"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("ALTER TABLE ledger_account DISABLE TRIGGER ledger_account_guard")
        cursor.execute(
            "UPDATE ledger_account SET balance = -1 WHERE address = %s", [f"escrow:{task}"]
        )
    assert Account.objects.get(address=f"escrow:{task}").balance == 5
