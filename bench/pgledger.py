"""Our ledger against pgledger: the same three-leg settlements, the same server, the same clients.

    python bench/pgledger.py --pgledger-sql /tmp/pgledger/ulid-to-uuid.sql \\
        --pgledger-sql /tmp/pgledger/uuid-to-ulid.sql --pgledger-sql /tmp/pgledger/pgledger.sql \\
        [--quick] [--rounds N] [--clients N] [--settlements N] [--preload N] [--busy]

pgledger (https://github.com/pgr0ss/pgledger, a ledger made of PostgreSQL functions) is not part
of this repository and its code is never committed here: the script loads the SQL files given by
``--pgledger-sql``, in that order, into a schema of its own (``pgledger``) in the benchmark's
fresh database. Measured against pgledger's commit c18c7d2, got with:

    mkdir -p /tmp/pgledger
    git -C <pgledger clone> show HEAD:vendor/scoville-pgsql-ulid/ulid-to-uuid.sql \\
        > /tmp/pgledger/ulid-to-uuid.sql
    git -C <pgledger clone> show HEAD:vendor/scoville-pgsql-ulid/uuid-to-ulid.sql \\
        > /tmp/pgledger/uuid-to-ulid.sql
    git -C <pgledger clone> show HEAD:pgledger.sql > /tmp/pgledger/pgledger.sql

What is compared, in alternating rounds on one embedded PostgreSQL server, from ``--clients``
processes with a connection each:

* ours: ``escrow_settle`` through the real ledger service, exactly as bench/ledger.py's settle
  worker (idempotency key, locks, funds and escrow checks, the entry, three transfers, the balance
  trigger, the escrow's resolution);
* pgledger: the same money movements with pgledger's own functions: one
  ``pgledger_create_transfers`` call with the three legs from the escrow account to the payee,
  the third party and back to the poster (pgledger locks the accounts, moves the balances, writes
  a transfer and two entries per leg; it has no idempotency key or escrow state).

Both sides have their accounts made beforehand the same way: an escrow account per settlement,
funded from a funder account, 1,000 posters, 1,000 payees, 1,000 creators and the platform's fee
account (ours keeps it as 8 sub-accounts, pgledger as the one row it is given). The mixes are
bench/ledger.py's: ``uniform`` (the third leg a royalty to one of 1,000 creators) and ``hot``
(the third leg the platform fee). Both sides draw the same accounts in the same order.

``--preload N`` first adds about N transfers to both ledgers with set-based SQL, in pairs that
net to zero (ours as bench/growth.py grows the ledger; pgledger's rows written straight into its
tables with the balances, versions and entries its functions would have written). ``--busy``
measures every round twice, quiet and with one core taken by another process that spins (the
machine shared), on the same preloaded ledgers. At the end our reconciliation must find no
difference, and pgledger's books must balance: its accounts' balances sum to zero per currency,
and every account's balance and version match its entries. The last line of output is one JSON
object (see bench/harness.py).
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import emit, median, parse_args, ratio, reconciled, setup_django
from bench.ledger import CREATORS, ESCROW, FEE_BP, PAYEES, PAYOUT, POSTERS, ROYALTY_BP

SCHEMA = "pgledger"
CURRENCY = "CREDIT"
MIXES = ("uniform", "hot")
# The variadic form pgledger's README shows: one call, three legs, one transaction.
SETTLE_SQL = (
    "SELECT count(*) FROM pgledger_create_transfers((%s, %s, %s)::transfer_request,"
    " (%s, %s, %s)::transfer_request, (%s, %s, %s)::transfer_request)"
)


def extra_arguments(parser) -> None:
    parser.add_argument(
        "--pgledger-sql",
        action="append",
        required=True,
        metavar="PATH",
        help="pgledger's SQL files, in load order (repeat the option)",
    )
    parser.add_argument("--clients", type=int, default=4, help="settling processes per side")
    parser.add_argument("--settlements", type=int, default=None, help="per side, mix and round")
    parser.add_argument("--preload", type=int, default=0, help="transfers added to both first")
    parser.add_argument(
        "--busy",
        action="store_true",
        help="measure every round again with one core taken by a process that spins",
    )


def _spin() -> None:
    while True:
        pass


@contextlib.contextmanager
def one_core_taken(taken: bool) -> Iterator[None]:
    """Another process on the machine that takes a core for itself while the round runs."""
    if not taken:
        yield
        return
    spinner = multiprocessing.get_context("fork").Process(target=_spin, daemon=True)
    spinner.start()
    try:
        yield
    finally:
        spinner.terminate()
        spinner.join()


def pgledger_connect():
    import psycopg
    from django.conf import settings

    # pgledger's functions name their tables unqualified, so its schema is the search path.
    return psycopg.connect(
        settings.DATABASE_URL, autocommit=True, options=f"-c search_path={SCHEMA}"
    )


def pgledger_load(paths: list[str]) -> None:
    with pgledger_connect() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        for path in paths:
            conn.execute(Path(path).read_text())


def pgledger_prepare(total: int) -> dict[str, Any]:
    """Accounts through ``pgledger_create_account`` and escrows funded through its transfers."""
    with pgledger_connect() as conn:
        create = (
            "SELECT count(*) FROM generate_series(0, %s - 1) n,"
            " pgledger_create_account(%s || n, %s, %s, true)"
        )
        conn.execute("SELECT pgledger_create_account('funder', %s, true, true)", [CURRENCY])
        conn.execute("SELECT pgledger_create_account('platform:fees', %s, false, true)", [CURRENCY])
        for prefix, count in (("poster", POSTERS), ("payee", PAYEES), ("creator", CREATORS)):
            conn.execute(create, [count, f"{prefix}-", CURRENCY, False])
        conn.execute(create, [total, "escrow-", CURRENCY, False])
        accounts = dict(conn.execute("SELECT name, id FROM pgledger_accounts").fetchall())
        funder = accounts["funder"]
        escrows = [accounts[f"escrow-{number}"] for number in range(total)]
        for start in range(0, total, 2_000):
            conn.execute(
                "SELECT count(*) FROM pgledger_create_transfers(transfer_requests =>"
                " ARRAY(SELECT (%s, e, %s)::transfer_request FROM unnest(%s::text[]) e))",
                [funder, ESCROW, escrows[start : start + 2_000]],
            )
    return {"accounts": accounts, "escrows": escrows}


def pgledger_preload(pairs: int, batch: int) -> float:
    """``2 * pairs`` transfers between two new accounts, A to B and back, written straight into
    pgledger's tables with what its function would have written (balances -1/+1 and back to 0,
    each account's version the transfer's number); seconds."""
    started = time.perf_counter()
    with pgledger_connect() as conn:
        first = conn.execute(
            "SELECT id FROM pgledger_create_account('preload-a', %s)", [CURRENCY]
        ).fetchone()[0]
        second = conn.execute(
            "SELECT id FROM pgledger_create_account('preload-b', %s)", [CURRENCY]
        ).fetchone()[0]
        # Column lists are pgledger's tables' (no model of ours describes them). Odd numbers go
        # A to B (both from 0), even numbers back (B from 1, A from -1).
        sql = """
            WITH s AS (
                SELECT g, pgledger_generate_id('pglt') AS id,
                       CASE WHEN g %% 2 = 1 THEN %(a)s ELSE %(b)s END AS source,
                       CASE WHEN g %% 2 = 1 THEN %(b)s ELSE %(a)s END AS target,
                       CASE WHEN g %% 2 = 1 THEN 0 ELSE 1 END AS source_before,
                       CASE WHEN g %% 2 = 1 THEN 0 ELSE -1 END AS target_before
                FROM generate_series(%(first)s, %(last)s) g
            ), t AS (
                INSERT INTO pgledger_transfers
                    (id, from_account_id, to_account_id, amount, created_at, event_at)
                SELECT id, source, target, 1, now(), now() FROM s
            )
            INSERT INTO pgledger_entries (account_id, transfer_id, amount,
                account_previous_balance, account_current_balance, account_version, created_at)
            SELECT source, id, -1, source_before, source_before - 1, g, now() FROM s
            UNION ALL
            SELECT target, id, 1, target_before, target_before + 1, g, now() FROM s
        """
        count = 2 * pairs
        for start in range(1, count + 1, batch):
            with conn.transaction():
                conn.execute(
                    sql, {"a": first, "b": second, "first": start,
                          "last": min(count, start + batch - 1)},
                )  # fmt: skip
        conn.execute(
            "UPDATE pgledger_accounts SET version = %s, updated_at = now() WHERE id IN (%s, %s)",
            [count, first, second],
        )
    return time.perf_counter() - started


def vacuum() -> None:
    """What a database does after a bulk load anyway, so no side measures the load's aftermath."""
    from django.db import connection

    from ledger.models import JournalEntry, Transfer

    with connection.cursor() as cursor:
        for model in (JournalEntry, Transfer):
            cursor.execute(f"VACUUM (ANALYZE) {connection.ops.quote_name(model._meta.db_table)}")
    with pgledger_connect() as conn:
        for table in ("pgledger_accounts", "pgledger_transfers", "pgledger_entries"):
            conn.execute(f"VACUUM (ANALYZE) {table}")
        conn.execute("CHECKPOINT")


def _pgledger_worker(args: tuple) -> tuple[list[float], float, float]:
    """One client: pgledger's settlements one after the other; the draws are _settle_worker's."""
    escrows, mix, seed, start_at, accounts = args
    from ledger import services

    chooser = random.Random(seed)
    latencies = []
    with pgledger_connect() as conn:
        while time.time() < start_at:
            time.sleep(0.001)
        began = time.perf_counter()
        for escrow in escrows:
            poster = accounts[f"poster-{chooser.randrange(POSTERS)}"]
            payee = accounts[f"payee-{chooser.randrange(PAYEES)}"]
            if mix == "uniform":
                third = accounts[f"creator-{chooser.randrange(CREATORS)}"]
            else:
                third = accounts["platform:fees"]
            plan = services.settlement_plan(
                escrow=ESCROW,
                payout=PAYOUT,
                fee_basis_points=FEE_BP if mix == "hot" else 0,
                royalties=[("participant:creator", ROYALTY_BP)] if mix == "uniform" else [],
                royalty_cap_basis_points=1_000,
            )
            third_amount = plan.fee if mix == "hot" else plan.royalty_total
            legs = [escrow, payee, plan.assignee, escrow, third, third_amount,
                    escrow, poster, plan.refund]  # fmt: skip
            started = time.perf_counter()
            conn.execute(SETTLE_SQL, legs).fetchone()
            latencies.append(time.perf_counter() - started)
        ended = time.perf_counter()
    return latencies, began, ended


def pgledger_check() -> dict[str, Any]:
    """pgledger's books: balances sum to zero per currency, each account agrees with its entries,
    each transfer has two entries that cancel."""
    with pgledger_connect() as conn:
        sums = dict(
            conn.execute(
                "SELECT currency, sum(balance) FROM pgledger_accounts GROUP BY currency"
            ).fetchall()
        )
        accounts_off = conn.execute(
            "SELECT count(*) FROM pgledger_accounts a LEFT JOIN (SELECT account_id,"
            " sum(amount) AS total, count(*) AS entries, max(account_version) AS version"
            " FROM pgledger_entries GROUP BY account_id) e ON e.account_id = a.id"
            " WHERE a.balance <> coalesce(e.total, 0) OR a.version <> coalesce(e.entries, 0)"
            " OR a.version <> coalesce(e.version, 0)"
        ).fetchone()[0]
        transfers, transfers_off = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE entries <> 2 OR total <> 0) FROM"
            " (SELECT t.id, count(e.id) AS entries, coalesce(sum(e.amount), 0) AS total"
            " FROM pgledger_transfers t LEFT JOIN pgledger_entries e ON e.transfer_id = t.id"
            " GROUP BY t.id) s"
        ).fetchone()
    return {
        "balance_sums": {currency: int(total) for currency, total in sums.items()},
        "transfers": transfers,
        "accounts_disagreeing_with_entries": accounts_off,
        "transfers_unbalanced": transfers_off,
        "balanced": all(total == 0 for total in sums.values())
        and accounts_off == 0
        and transfers_off == 0,
    }


def same_movements(theirs: dict[str, Any]) -> int:
    """Accounts (posters, payees, creators, the fee total) whose balance differs between the two
    ledgers: both sides drew the same accounts, so there must be none."""
    from ledger import services
    from ledger.models import Account

    ours = dict(Account.objects.values_list("address", "balance"))
    with pgledger_connect() as conn:
        balances = dict(conn.execute("SELECT name, balance FROM pgledger_accounts").fetchall())
    pairs = [
        (services.wallet_address(f"participant:{prefix}-{number}"), f"{prefix}-{number}")
        for prefix, count in (("poster", POSTERS), ("payee", PAYEES), ("creator", CREATORS))
        for number in range(count)
    ]
    differing = sum(ours.get(address, 0) != balances[name] for address, name in pairs)
    fees = sum(ours.get(address, 0) for address in services.fee_addresses())
    return differing + (fees != balances["platform:fees"])


def main() -> None:
    # Production settings (no query log kept per connection), as a deployment would run.
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-" + "x" * 40)
    args = parse_args(__doc__.splitlines()[0], extra_arguments)
    quick = args.quick
    rounds = args.rounds or (2 if quick else 5)
    per_round = args.settlements or (200 if quick else 2_000)
    clients = args.clients
    setup_django("bench_pgledger")

    from bench.growth import grow_ledger
    from bench.ledger import _prepare, _run, _settle_worker, _split
    from ledger.services import promo_grant, wallet_open

    pgledger_load(args.pgledger_sql)
    total = per_round * len(MIXES) * rounds * (2 if args.busy else 1)
    started = time.perf_counter()
    wallet_open(owner_ref="participant:funder")
    promo_grant(owner_ref="participant:funder", amount=ESCROW * total, idempotency_key="bench")
    ours_escrows = _prepare(total, "p")
    theirs = pgledger_prepare(total)
    print(f"prepared {total} escrows per side in {time.perf_counter() - started:.1f} s", flush=True)
    preload: dict[str, Any] = {"transfers": 2 * (args.preload // 2)}
    if args.preload:
        preload["ours_seconds"] = round(grow_ledger(args.preload // 2, 250_000), 1)
        preload["pgledger_seconds"] = round(pgledger_preload(args.preload // 2, 250_000), 1)
        started = time.perf_counter()
        vacuum()
        preload["vacuum_seconds"] = round(time.perf_counter() - started, 1)
        print(f"preloaded: {preload}", flush=True)

    def _round(side: str, parts: list[list[int]], seeds: list[str], mix: str) -> dict[str, Any]:
        start_at = time.time() + 0.5
        if side == "ours":
            work = [
                ([ours_escrows[i] for i in part], mix, seed, start_at)
                for part, seed in zip(parts, seeds, strict=True)
            ]
            return _run(work, _settle_worker)
        work = [
            ([theirs["escrows"][i] for i in part], mix, seed, start_at, theirs["accounts"])
            for part, seed in zip(parts, seeds, strict=True)
        ]
        return _run(work, _pgledger_worker)

    conditions = ("quiet", "one_core_taken") if args.busy else ("quiet",)
    results: dict[str, dict[str, dict[str, list[dict]]]] = {
        condition: {mix: {"ours": [], "pgledger": []} for mix in MIXES} for condition in conditions
    }
    next_escrow = 0
    for round_number, condition in itertools.product(range(rounds), conditions):
        for mix in MIXES:
            chunk = list(range(next_escrow, next_escrow + per_round))
            next_escrow += per_round
            parts = _split(chunk, clients)
            seeds = [f"{mix}-{round_number}-{n}" for n in range(len(parts))]
            # Alternate which side goes first, so neither always meets the other's aftermath.
            sides = ["ours", "pgledger"] if round_number % 2 == 0 else ["pgledger", "ours"]
            for side in sides:
                with one_core_taken(condition != "quiet"):
                    measured = _round(side, parts, seeds, mix)
                results[condition][mix][side].append(measured)
            ours, pgledger = (results[condition][mix][side][-1] for side in ("ours", "pgledger"))
            print(
                f"round {round_number + 1} {condition} {mix:>7}: ours"
                f" {ours['settlements_per_s']:>7}/s p50 {ours['p50_ms']:>6} ms p95"
                f" {ours['p95_ms']:>6} ms | pgledger {pgledger['settlements_per_s']:>7}/s p50"
                f" {pgledger['p50_ms']:>6} ms p95 {pgledger['p95_ms']:>6} ms",
                flush=True,
            )

    figures: dict[str, Any] = {
        "rounds": rounds,
        "clients": clients,
        "settlements_per_round": per_round,
        "preload": preload,
    }
    for condition, mix in itertools.product(conditions, MIXES):
        measured = results[condition][mix]
        row: dict[str, Any] = {}
        for side in ("ours", "pgledger"):
            for metric in ("settlements_per_s", "p50_ms", "p95_ms"):
                row[f"{side}_{metric}"] = round(median(m[metric] for m in measured[side]), 3)
        row["ratio_throughput"] = ratio(
            row["ours_settlements_per_s"], row["pgledger_settlements_per_s"]
        )
        figures[mix if condition == "quiet" else f"{mix}_{condition}"] = row
    report, figures["reconciliation"] = reconciled()
    figures["pgledger_check"] = pgledger_check()
    figures["accounts_moved_differently"] = same_movements(theirs)
    print("\n".join(report.lines()), flush=True)
    print(f"pgledger: {figures['pgledger_check']}", flush=True)
    print(f"accounts moved differently: {figures['accounts_moved_differently']}", flush=True)
    emit("pgledger", figures, quick=quick)
    if (
        not report.is_clean
        or not figures["pgledger_check"]["balanced"]
        or figures["accounts_moved_differently"]
    ):
        sys.exit(1)


if __name__ == "__main__":
    main()
