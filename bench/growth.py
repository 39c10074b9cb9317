"""Costs as data grows: settlements per second, the API's task reads and a full match, measured
at today's sizes and again after the tables grew (ledger transfers, tasks, outcomes).

    python bench/growth.py [--quick] [--transfers N] [--tasks N] [--outcomes N]
        [--outcomes-small N] [--clients N]

The large data is made by set-based SQL on the server (``INSERT ... SELECT ... FROM
generate_series``), each table's column list taken from its model: every row is a copy of a row
the real services wrote (a template), with the columns that must differ (keys, references,
states, times) given as expressions of the series number. A model that gains a column is copied
with it; nothing is hand-typed. Ledger transfers go in pairs (A to B, then B to A, one entry
each pair), so balances stay true and the reconciliation at the end must find no difference.

Settlements: ``escrow_settle`` through the real service from ``--clients`` processes, three
legs (bench/ledger.py's "uniform" mix); escrows for both phases are opened before the growth, so
both phases settle the same kind of escrow. API reads: an agent's ``GET /api/v1/tasks/`` (first
page) and ``GET /api/v1/tasks/<id>/`` through Django's test client, the read cache off. A full
match: ``match_agents`` over 1,000 agents and their outcomes (``--outcomes-small`` of them at
today's size), every outcome with its task's vector as the market records it, so the match's
neighbourhood search and each candidate's evidence read them. Ratios are large/small: 1.0 is
flat; throughput below 1 and latency above 1 are costs that grew.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import emit, median, parse_args, ratio, reconciled, setup_django

AGENTS = 1_000


def extra_arguments(parser) -> None:
    parser.add_argument("--transfers", type=int, default=None, help="ledger transfers to add")
    parser.add_argument("--tasks", type=int, default=None, help="tasks to add")
    parser.add_argument("--outcomes", type=int, default=None, help="outcomes to add")
    parser.add_argument(
        "--outcomes-small", type=int, default=None, help="outcomes at today's size (10,000)"
    )
    parser.add_argument("--clients", type=int, default=4, help="settling processes")
    parser.add_argument("--settlements", type=int, default=None, help="per phase")
    parser.add_argument("--database", default="bench_growth", help="created afresh")


def copy_rows(model, template_pk: int, count: int, overrides: dict[str, str], batch: int) -> float:
    """``count`` copies of one row of ``model`` in batches, each column from the template unless
    ``overrides`` (column -> SQL over ``t``, the template, and ``g``, the series) says; seconds."""
    from django.db import connection, transaction

    quote = connection.ops.quote_name
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    unknown = set(overrides) - {field.column for field in fields}
    if unknown:
        raise ValueError(f"{model.__name__} has no columns {sorted(unknown)}")
    columns = ", ".join(quote(field.column) for field in fields)
    values = ", ".join(overrides.get(field.column, f"t.{quote(field.column)}") for field in fields)
    table, pk = quote(model._meta.db_table), quote(model._meta.pk.column)
    sql = (
        f"INSERT INTO {table} ({columns}) SELECT {values} FROM {table} t"
        f" CROSS JOIN generate_series(%s, %s) g WHERE t.{pk} = %s"
    )
    started = time.perf_counter()
    for first in range(1, count + 1, batch):
        last = min(count, first + batch - 1)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [first, last, template_pk])
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {table}")
    return time.perf_counter() - started


def grow_ledger(pairs: int, batch: int) -> float:
    """``2 * pairs`` transfers: one entry per pair, A to B and back (the balances do not move, so
    the trigger that moves them is skipped, as ledger_post skips it; reconciliation checks)."""
    from django.db import connection, transaction

    from ledger import services
    from ledger.models import JournalEntry, Transfer

    services.promo_grant(owner_ref="participant:grow-a", amount=1, idempotency_key="grow-seed")
    services.wallet_open(owner_ref="participant:grow-b")
    template = services.transfer_post(
        legs=[services.TransferLeg("participant:grow-a", "participant:grow-b", 1)],
        idempotency_key="grow-template",
    )
    services.transfer_post(
        legs=[services.TransferLeg("participant:grow-b", "participant:grow-a", 1)],
        idempotency_key="grow-template-back",
    )
    forward = Transfer.objects.get(entry=template)
    quote = connection.ops.quote_name
    entry_fields = [f for f in JournalEntry._meta.concrete_fields if not f.primary_key]
    transfer_fields = [f for f in Transfer._meta.concrete_fields if not f.primary_key]
    entry_overrides = {
        "idempotency_key": "'grow-' || g",
        "created_at": "now()",
        "occurred_at": "now()",
        "reverses_id": "NULL",
    }
    entries = JournalEntry._meta.db_table
    transfers = Transfer._meta.db_table
    entry_columns = ", ".join(quote(f.column) for f in entry_fields)
    entry_values = ", ".join(
        entry_overrides.get(f.column, f"t.{quote(f.column)}") for f in entry_fields
    )
    transfer_overrides = {
        "entry_id": "e.id",
        "debit_account_id": "CASE s WHEN 0 THEN t.debit_account_id ELSE t.credit_account_id END",
        "credit_account_id": "CASE s WHEN 0 THEN t.credit_account_id ELSE t.debit_account_id END",
    }
    transfer_columns = ", ".join(quote(f.column) for f in transfer_fields)
    transfer_values = ", ".join(
        transfer_overrides.get(f.column, f"t.{quote(f.column)}") for f in transfer_fields
    )
    started = time.perf_counter()
    with connection.cursor() as cursor:
        # The entries' completeness check at commit looks up each new entry's transfers, planned
        # from the statistics: a ledger of a few entries that funded many escrows looks as if
        # every entry had thousands of transfers, so a scan would seem to find one at once, and
        # it scans the table for each of the batch's entries. Told first what the grown ledger
        # will hold (two transfers an entry), as its statistics would say after the load.
        entry = quote(Transfer._meta.get_field("entry").column)
        cursor.execute(f"ALTER TABLE {quote(transfers)} ALTER {entry} SET (n_distinct = -0.5)")
        cursor.execute(f"ANALYZE {quote(transfers)}")
    for first in range(1, pairs + 1, batch):
        last = min(pairs, first + batch - 1)
        with transaction.atomic(), connection.cursor() as cursor:
            # Balances do not move (each pair nets to zero): the balance trigger is skipped as
            # ledger_post skips it; the entries' completeness check still runs at commit.
            cursor.execute("SET LOCAL ledger.posting = 'on'")
            cursor.execute(
                f"WITH e AS (INSERT INTO {quote(entries)} ({entry_columns})"
                f" SELECT {entry_values} FROM {quote(entries)} t"
                f" CROSS JOIN generate_series(%s, %s) g WHERE t.id = %s RETURNING id)"
                f" INSERT INTO {quote(transfers)} ({transfer_columns})"
                f" SELECT {transfer_values} FROM e CROSS JOIN {quote(transfers)} t"
                f" CROSS JOIN (VALUES (0), (1)) v(s) WHERE t.id = %s",
                [first, last, template.pk, forward.pk],
            )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {quote(entries)}")
        cursor.execute(f"ANALYZE {quote(transfers)}")
    return time.perf_counter() - started


def seed_market() -> dict[str, Any]:
    """A poster, an agent with an API key, 1,000 matchable agents, a few hundred open tasks."""
    from django.conf import settings
    from django.contrib.auth.models import User

    from agents_registry import embeddings
    from agents_registry.models import Agent
    from agents_registry.services import agent_register, api_key_issue, participant_create_human
    from agents_registry.services_outcomes import outcome_record
    from bench import _capability_corpus as corpus
    from bench.matching import load_agents
    from ledger import services as ledger_services
    from marketplace import services

    settings.EMBEDDING_BACKEND = "hashing"
    settings.MARKET_READ_CACHE = False
    settings.MARKET_POST_HANDLER = ""
    texts = corpus.capability_texts(AGENTS)
    load_agents(AGENTS, embeddings.embed_texts(texts), texts, embeddings.embedding_model_id())
    poster = participant_create_human(user=User.objects.create_user(username="growth-poster"))
    ledger_services.promo_grant(
        owner_ref=poster.ledger_ref, amount=10**9, idempotency_key="growth-poster"
    )
    owner = participant_create_human(user=User.objects.create_user(username="growth-owner"))
    reader = agent_register(owner=owner, name="Growth reader")
    _key, secret = api_key_issue(participant=reader.participant, name="bench", scopes=None)
    tasks = [
        services.task_post(
            poster=poster,
            bounty=100 + n,
            title=f"Summarise report {n}",
            description="Three bullet points about the quarterly numbers.",
        )
        for n in range(300)
    ]
    agent = Agent.objects.exclude(pk=reader.pk).order_by("pk").first()
    assert agent is not None
    # As the market records one: with its task's vector (copies take other vectors, below).
    outcome = outcome_record(
        agent_id=agent.pk,
        profile_id=None,
        task_ref="task:template",
        outcome="accepted",
        cost=100,
        latency_seconds=60.0,
        embedding=embeddings.embed_texts([tasks[0].description])[0],
        embedding_model=embeddings.embedding_model_id(),
    )
    return {"secret": secret, "tasks": tasks, "outcome": outcome, "poster": poster}


def grow_outcomes(template_pk: int, count: int, already: int) -> float:
    """``count`` outcomes more, spread over the agents, each with the vector of a past task like
    one agent's profile (the profiles' vectors in turn: a thousand kinds of task), the HNSW index
    over them dropped for the load and built again from the model's own definition, as a bulk
    backfill would; seconds."""
    from django.db import connection

    from agents_registry.models import Agent, CapabilityProfile, Outcome

    agents = Agent.objects.count()
    first_agent = Agent.objects.order_by("pk").values_list("pk", flat=True).first()
    profiles = connection.ops.quote_name(CapabilityProfile._meta.db_table)
    ids = list(
        CapabilityProfile.objects.filter(embedding__isnull=False)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if ids != list(range(ids[0], ids[0] + len(ids))):
        raise SystemExit("the profiles' ids are not contiguous: the vectors' expression needs it")
    (index,) = [index for index in Outcome._meta.indexes if index.name == "outcome_embedding_hnsw"]
    started = time.perf_counter()
    with connection.schema_editor() as editor:
        editor.remove_index(Outcome, index)
    copy_rows(
        Outcome,
        template_pk,
        count,
        {
            "agent_id": f"{first_agent} + (g + {already}) %% {agents}",
            "task_ref": f"'task:grown-' || (g + {already})",
            "outcome": "CASE WHEN g %% 7 = 0 THEN 'rejected' ELSE 'accepted' END",
            "created_at": f"now() - (g + {already}) * interval '1 second'",
            "embedding": f"(SELECT p.embedding FROM {profiles} p"
            f" WHERE p.id = {ids[0]} + (g::bigint * 7919) %% {len(ids)})",
        },
        200_000,
    )
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '4GB'")
        cursor.execute("SET max_parallel_maintenance_workers = 1")
    with connection.schema_editor() as editor:
        editor.add_index(Outcome, index)
    with connection.cursor() as cursor:
        cursor.execute("RESET maintenance_work_mem")
        cursor.execute("RESET max_parallel_maintenance_workers")
    return time.perf_counter() - started


def api_reads(secret: str, task_id: int, calls: int) -> dict[str, float]:
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    found = {}
    for name, path in (("list", "/api/v1/tasks/"), ("detail", f"/api/v1/tasks/{task_id}/")):
        for _ in range(20):
            assert client.get(path).status_code == 200
        samples = []
        for _ in range(calls):
            started = time.perf_counter()
            response = client.get(path)
            samples.append(time.perf_counter() - started)
            assert response.status_code == 200
        found[f"{name}_p50_ms"] = round(median(samples) * 1000, 3)
    return found


def full_match(calls: int) -> float:
    from agents_registry.matching import match_agents

    text = "Summarise a quarterly financial report in three bullet points"
    for _ in range(5):
        match_agents(text=text, budget=2_000, limit=10)
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        match_agents(text=text, budget=2_000, limit=10)
        samples.append(time.perf_counter() - started)
    return round(median(samples) * 1000, 3)


def settle(escrows: list[str], clients: int) -> dict[str, Any]:
    from bench.ledger import _run, _settle_worker, _split

    start_at = time.time() + 0.5
    arguments = [(part, "uniform", n, start_at) for n, part in enumerate(_split(escrows, clients))]
    return _run(arguments, _settle_worker)


def measure(market: dict, escrows: list[str], clients: int, calls: int) -> dict[str, Any]:
    result = settle(escrows, clients)
    return {
        "settlements_per_s": result["settlements_per_s"],
        "settle_p50_ms": result["p50_ms"],
        **api_reads(market["secret"], market["tasks"][0].pk, calls),
        "match_p50_ms": full_match(calls),
    }


def main() -> None:
    import os

    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-" + "x" * 40)
    args = parse_args(__doc__.splitlines()[0], extra_arguments)
    quick = args.quick
    transfers = args.transfers if args.transfers is not None else (20_000 if quick else 10_000_000)
    tasks = args.tasks if args.tasks is not None else (5_000 if quick else 1_000_000)
    outcomes = args.outcomes if args.outcomes is not None else (5_000 if quick else 1_000_000)
    outcomes_small = args.outcomes_small if args.outcomes_small is not None else 10_000
    per_phase = args.settlements or (300 if quick else 2_000)
    calls = 50 if quick else 200
    setup_django(args.database)

    from django.conf import settings
    from django.db import connection

    from agents_registry.models import Outcome
    from bench.ledger import _prepare
    from ledger.models import JournalEntry, Transfer
    from ledger.services import promo_grant, wallet_open
    from marketplace.models import Task

    market = seed_market()
    wallet_open(owner_ref="participant:funder")
    promo_grant(
        owner_ref="participant:funder", amount=1_000 * 2 * per_phase, idempotency_key="bench"
    )
    escrows = _prepare(2 * per_phase, "g")
    grow_outcomes(market["outcome"].pk, outcomes_small, 0)
    small = measure(market, escrows[:per_phase], args.clients, calls)
    print(f"small: {small}", flush=True)

    grown: dict[str, Any] = {}
    grown["ledger_seconds"] = round(grow_ledger(transfers // 2, 250_000), 1)
    print(f"{transfers} transfers in {grown['ledger_seconds']} s", flush=True)
    template = market["tasks"][-1]
    grown["tasks_seconds"] = round(
        copy_rows(
            Task,
            template.pk,
            tasks,
            {
                "title": "t.title || ' #' || g",
                "idempotency_key": "NULL",
                "embedding": "NULL",
                # History, as most of a market's tasks are (closed without an escrow, so the
                # reconciliation's expected escrows stay true).
                "state": "CASE WHEN g %% 2 = 0 THEN 'cancelled' ELSE 'expired' END",
                "created_at": "now() - g * interval '1 minute'",
                "updated_at": "now() - g * interval '1 minute'",
            },
            200_000,
        ),
        1,
    )
    print(f"{tasks} tasks in {grown['tasks_seconds']} s", flush=True)
    grown["outcomes_seconds"] = round(
        grow_outcomes(market["outcome"].pk, outcomes, outcomes_small), 1
    )
    print(f"{outcomes} outcomes in {grown['outcomes_seconds']} s", flush=True)
    # What a database does after a bulk load anyway (visibility map, statistics, dirty pages
    # written), so the large phase does not measure the load's aftermath.
    started = time.perf_counter()
    with connection.cursor() as cursor:
        for model in (JournalEntry, Transfer, Task, Outcome):
            cursor.execute(f"VACUUM (ANALYZE) {connection.ops.quote_name(model._meta.db_table)}")
        cursor.execute("CHECKPOINT")
    grown["vacuum_seconds"] = round(time.perf_counter() - started, 1)
    large = measure(market, escrows[per_phase:], args.clients, calls)
    print(f"large: {large}", flush=True)

    report, reconciliation = reconciled()
    figures = {
        "sizes": {
            "transfers": transfers,
            "tasks": tasks,
            "outcomes": outcomes,
            "outcomes_small": outcomes_small,
        },
        "clients": args.clients,
        "settlements_per_phase": per_phase,
        "small": small,
        "large": large,
        "ratios": {
            "settlements_per_s": ratio(large["settlements_per_s"], small["settlements_per_s"]),
            "settle_p50": ratio(large["settle_p50_ms"], small["settle_p50_ms"]),
            "api_list_p50": ratio(large["list_p50_ms"], small["list_p50_ms"]),
            "api_detail_p50": ratio(large["detail_p50_ms"], small["detail_p50_ms"]),
            "match_p50": ratio(large["match_p50_ms"], small["match_p50_ms"]),
        },
        "growth_seconds": grown,
        "reconciliation": reconciliation,
        "database_pooler": settings.DATABASE_POOLER,
    }
    if report.differences:
        raise SystemExit(f"reconciliation found differences: {report.lines()[:5]}")
    emit("growth", figures, quick=quick)


if __name__ == "__main__":
    main()
