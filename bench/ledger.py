"""Ledger throughput: settlements per second and latency, against a bare SQL baseline.

    python bench/ledger.py [--quick] [--rounds N]

Each client is a separate process with its own database connection. A *settlement* is
``escrow_settle`` through the real service (idempotency key, locks in a fixed order, funds and
escrow checks, the entry, three transfers, the balance trigger, the escrow's resolution), with
three legs: the assignee's payout, a third leg, and the remainder back to the poster. Two mixes:

* ``uniform``: the third leg is a royalty to one of 1,000 creators (no account is shared);
* ``hot``: the third leg is the platform fee, so every settlement credits ``platform:fees`` (kept
  by the ledger as 8 sub-accounts, see ``ledger/services.py``; the baseline credits one row).

The baseline moves the same amounts between the same kind of rows with plain SQL: one INSERT of
the entry, three INSERTs of transfers and four UPDATEs of balances in a transaction, with no
constraint, trigger, idempotency or escrow check. A full reconciliation runs at the end and must
report no difference. The last line of output is one JSON object (see bench/harness.py).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Timings, emit, median, parse_args, ratio, reconciled, setup_django

POSTERS, PAYEES, CREATORS = 1_000, 1_000, 1_000
ESCROW = 1_000
PAYOUT = 900  # 100 back to the poster
FEE_BP = 500
ROYALTY_BP = 300


def _prepare(total: int, tag: str) -> list[str]:
    """Open ``total`` funded escrows (bulk SQL for the rows, ledger entries for the money)."""
    from django.db import connection

    from ledger import services

    tasks = [f"task:{tag}-{number}" for number in range(total)]
    services._accounts_open(
        [
            services.wallet_address(f"participant:{prefix}-{number}")
            for prefix, count in (("poster", POSTERS), ("payee", PAYEES), ("creator", CREATORS))
            for number in range(count)
        ]
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ledger_account (address, kind, owner_ref, may_go_negative, balance,"
            " created_at) SELECT 'escrow:' || t, 'escrow', t, false, 0, now()"
            " FROM unnest(%s::text[]) t",
            [tasks],
        )
        cursor.execute(
            "INSERT INTO ledger_escrow (task_ref, account_id, funder_ref, status, created_at)"
            " SELECT a.owner_ref, a.id, 'participant:funder', 'open', now() FROM ledger_account a"
            " WHERE a.address = ANY(%s)",
            [[f"escrow:{t}" for t in tasks]],
        )
    for start in range(0, total, 2_000):
        batch = tasks[start : start + 2_000]
        services.transfer_post(
            legs=[services.TransferLeg("participant:funder", task, ESCROW) for task in batch],
            idempotency_key=f"bench-fund:{tag}:{start}",
        )
    return tasks


def _settle_worker(args: tuple) -> tuple[list[float], float, float]:
    """One client: settle its escrows one after the other; return latencies and its window."""
    tasks, mix, seed, start_at = args
    from django.db import connection

    from ledger import services

    chooser = random.Random(seed)
    connection.ensure_connection()
    latencies = []
    while time.time() < start_at:
        time.sleep(0.001)
    began = time.perf_counter()
    for task in tasks:
        poster = f"participant:poster-{chooser.randrange(POSTERS)}"
        payee = f"participant:payee-{chooser.randrange(PAYEES)}"
        royalties = (
            [(f"participant:creator-{chooser.randrange(CREATORS)}", ROYALTY_BP)]
            if mix == "uniform"
            else []
        )
        plan = services.settlement_plan(
            escrow=ESCROW,
            payout=PAYOUT,
            fee_basis_points=FEE_BP if mix == "hot" else 0,
            royalties=royalties,
            royalty_cap_basis_points=1_000,
        )
        started = time.perf_counter()
        services.escrow_settle(
            task_ref=task, payee_ref=payee, refund_to=poster, plan=plan,
            idempotency_key=f"bench-settle:{task}",
        )  # fmt: skip
        latencies.append(time.perf_counter() - started)
    ended = time.perf_counter()
    connection.close()
    return latencies, began, ended


BASELINE_SCHEMA = """
DROP TABLE IF EXISTS bench_transfer, bench_entry, bench_account;
CREATE TABLE bench_account (id bigserial PRIMARY KEY, address text, balance bigint NOT NULL);
CREATE TABLE bench_entry (id bigserial PRIMARY KEY, key text, created_at timestamptz);
CREATE TABLE bench_transfer (id bigserial PRIMARY KEY, entry_id bigint, debit bigint,
                             credit bigint, amount bigint);
"""


def _baseline_prepare(total: int) -> dict[str, Any]:
    import psycopg
    from django.conf import settings

    with psycopg.connect(settings.DATABASE_URL, autocommit=True) as conn:
        conn.execute(BASELINE_SCHEMA)
        for prefix, count in (("poster", POSTERS), ("payee", PAYEES), ("creator", CREATORS)):
            conn.execute(
                "INSERT INTO bench_account (address, balance) SELECT %s || n, 0"
                " FROM generate_series(0, %s - 1) n",
                [f"wallet:participant:{prefix}-", count],
            )
        conn.execute("INSERT INTO bench_account (address, balance) VALUES ('platform:fees', 0)")
        first_escrow = conn.execute(
            "INSERT INTO bench_account (address, balance) SELECT 'escrow:' || n, %s"
            " FROM generate_series(0, %s - 1) n RETURNING id",
            [ESCROW, total],
        ).fetchall()[0][0]
        ids = dict(
            conn.execute(
                "SELECT address, id FROM bench_account WHERE address NOT LIKE 'escrow:%'"
            ).fetchall()
        )
    return {"first_escrow": first_escrow, "ids": ids}


def _baseline_worker(args: tuple) -> tuple[list[float], float, float]:
    escrow_numbers, mix, seed, start_at, layout = args
    import psycopg
    from django.conf import settings

    chooser = random.Random(seed)
    ids = layout["ids"]
    latencies = []
    with psycopg.connect(settings.DATABASE_URL) as conn:
        while time.time() < start_at:
            time.sleep(0.001)
        began = time.perf_counter()
        for number in escrow_numbers:
            escrow = layout["first_escrow"] + number
            poster = ids[f"wallet:participant:poster-{chooser.randrange(POSTERS)}"]
            payee = ids[f"wallet:participant:payee-{chooser.randrange(PAYEES)}"]
            if mix == "hot":
                third, third_amount = ids["platform:fees"], PAYOUT * FEE_BP // 10_000
            else:
                creator = ids[f"wallet:participant:creator-{chooser.randrange(CREATORS)}"]
                third, third_amount = creator, PAYOUT * ROYALTY_BP // 10_000
            legs = [(escrow, payee, PAYOUT - third_amount), (escrow, third, third_amount),
                    (escrow, poster, ESCROW - PAYOUT)]  # fmt: skip
            started = time.perf_counter()
            with conn.transaction():
                entry = conn.execute(
                    "INSERT INTO bench_entry (key, created_at) VALUES (%s, now()) RETURNING id",
                    [f"settle:{number}"],
                ).fetchone()[0]
                for debit, credit, amount in legs:
                    conn.execute(
                        "INSERT INTO bench_transfer (entry_id, debit, credit, amount)"
                        " VALUES (%s, %s, %s, %s)",
                        [entry, debit, credit, amount],
                    )
                deltas: dict[int, int] = {}
                for debit, credit, amount in legs:
                    deltas[debit] = deltas.get(debit, 0) - amount
                    deltas[credit] = deltas.get(credit, 0) + amount
                for account in sorted(deltas):  # the same fixed order, or it would deadlock
                    conn.execute(
                        "UPDATE bench_account SET balance = balance + %s WHERE id = %s",
                        [deltas[account], account],
                    )
            latencies.append(time.perf_counter() - started)
        ended = time.perf_counter()
    return latencies, began, ended


def _run(pool_args: list[tuple], worker: Any) -> dict[str, Any]:
    from django.db import connections

    connections.close_all()  # children must not share the parent's socket
    context = multiprocessing.get_context("fork")
    with context.Pool(len(pool_args)) as pool:
        results = pool.map(worker, pool_args)
    timings = Timings()
    for latencies, _, _ in results:
        timings.samples.extend(latencies)
    wall = max(end for _, _, end in results) - min(begin for _, begin, _ in results)
    summary = timings.summary()
    return {
        "settlements_per_s": round(len(timings.samples) / wall, 1),
        "transfers_per_s": round(3 * len(timings.samples) / wall, 1),
        "p50_ms": summary["p50_ms"],
        "p95_ms": summary["p95_ms"],
        "p99_ms": summary["p99_ms"],
        "count": summary["count"],
    }


def _split(items: list, parts: int) -> list[list]:
    return [items[index::parts] for index in range(parts)]


def main() -> None:
    # Production settings (no query log kept per connection), as a deployment would run.
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-" + "x" * 40)
    args = parse_args(__doc__.splitlines()[0])
    quick = args.quick
    rounds = args.rounds or (1 if quick else 3)
    clients_list = [1, 4, 8, 16]
    per_case = 600 if quick else 4_000
    setup_django("bench_ledger")

    from ledger.services import promo_grant, wallet_open

    wallet_open(owner_ref="participant:funder")
    cases = [(mix, clients) for mix in ("uniform", "hot") for clients in clients_list]
    total = per_case * len(cases) * rounds
    promo_grant(owner_ref="participant:funder", amount=ESCROW * total, idempotency_key="bench")
    started = time.perf_counter()
    escrows = _prepare(total, "r")
    layout = _baseline_prepare(total)
    print(f"prepared {total} escrows in {time.perf_counter() - started:.1f} s", flush=True)

    results: dict[str, dict[str, list[dict]]] = {}
    next_escrow = 0
    for round_number in range(rounds):
        for mix, clients in cases:
            name = f"{mix}_{clients}"
            chunk = list(range(next_escrow, next_escrow + per_case))
            next_escrow += per_case
            start_at = time.time() + 0.5
            ledger_args = [
                ([escrows[i] for i in part], mix, hash((name, n, round_number)), start_at)
                for n, part in enumerate(_split(chunk, clients))
            ]
            ledger = _run(ledger_args, _settle_worker)
            start_at = time.time() + 0.5
            baseline_args = [
                (part, mix, hash((name, n, round_number)), start_at, layout)
                for n, part in enumerate(_split(chunk, clients))
            ]
            baseline = _run(baseline_args, _baseline_worker)
            results.setdefault(name, {"ledger": [], "baseline": []})
            results[name]["ledger"].append(ledger)
            results[name]["baseline"].append(baseline)
            print(
                f"round {round_number + 1} {name:>10}: ledger {ledger['settlements_per_s']:>7}/s"
                f" p50 {ledger['p50_ms']:>6} ms p99 {ledger['p99_ms']:>6} ms | baseline"
                f" {baseline['settlements_per_s']:>7}/s p99 {baseline['p99_ms']:>6} ms",
                flush=True,
            )

    figures: dict[str, Any] = {"rounds": rounds, "settlements_per_case": per_case}
    for name, measured in results.items():
        row: dict[str, Any] = {}
        for side in ("ledger", "baseline"):
            for metric in ("settlements_per_s", "transfers_per_s", "p50_ms", "p99_ms"):
                row[f"{side}_{metric}"] = median(m[metric] for m in measured[side])
        row["ratio_throughput"] = ratio(
            row["ledger_settlements_per_s"], row["baseline_settlements_per_s"]
        )
        figures[name] = row
    for clients in clients_list:
        figures[f"hot_vs_uniform_{clients}"] = ratio(
            figures[f"hot_{clients}"]["ledger_settlements_per_s"],
            figures[f"uniform_{clients}"]["ledger_settlements_per_s"],
        )
    report, figures["reconciliation"] = reconciled()
    eight_hot, eight_uniform = figures["hot_8"], figures["uniform_8"]
    figures["targets"] = {
        "settlements_per_s_8_clients_at_least_1000": min(
            eight_hot["ledger_settlements_per_s"], eight_uniform["ledger_settlements_per_s"]
        )
        >= 1000,
        "p99_under_50_ms_8_clients": max(eight_hot["ledger_p99_ms"], eight_uniform["ledger_p99_ms"])
        < 50,
        "hot_at_least_half_of_uniform": all(
            figures[f"hot_vs_uniform_{c}"] >= 0.5 for c in clients_list
        ),
        "reconciliation_clean": report.is_clean,
    }
    print("\n".join(report.lines()), flush=True)
    emit("ledger", figures, quick=quick)
    if not report.is_clean:
        sys.exit(1)


if __name__ == "__main__":
    main()
