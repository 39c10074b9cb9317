"""Matching at scale: ``python bench/matching.py [--quick] [--agents N] [--vectors V]``.

Loads N agents with current capability profiles (synthetic but varied texts from
``_capability_corpus``) into a fresh ``bench_matching`` database, then measures:

- HNSW index build time (cosine, m=16, ef_construction=64, as the migration builds it);
- top-10 index query p50/p99 at ef_search 40 and 100, against the exact scan over the same rows
  (the baseline: ratio) and recall@10 of the index against that exact scan;
- the full ``match_agents`` selector (over-fetch in a MATERIALIZED CTE, hard filters, re-ranking)
  p50/p95/p99 with a budget that only a third of the agents fit, excluding the task's embedding;
- the embedding time of a typical task text;
- all of it at two sizes (N/10 and N) to show how the p50 grows.

Vectors: ``minilm`` uses real MiniLM vectors of the texts, computed once and cached under
``.data/bench/`` (about 20 minutes for 100,000 texts on an idle 2-core machine, 50 on a busy
one; resumable); ``hashing`` uses the hashing vectoriser of the same texts (seconds). ``--quick``
uses MiniLM vectors when the cache already holds 10,000, else hashing, to stay under a minute.
Random vectors are never used: they make HNSW recall meaningless (DESIGN.md section 11).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
from harness import Timings, emit, parse_args, ratio, setup_django


def extra_arguments(parser) -> None:
    parser.add_argument("--agents", type=int, default=None, help="agents at the largest size")
    parser.add_argument(
        "--outcomes", type=int, default=None, help="outcomes loaded at the largest size"
    )
    parser.add_argument(
        "--legacy",
        default="integ",
        help="git revision whose agents_registry/matching.py is the baseline (today's matcher)",
    )
    parser.add_argument("--vectors", choices=("minilm", "hashing"), default=None)
    parser.add_argument("--queries", type=int, default=None)


def load_agents(count: int, vectors, texts: list[str], model_id: str) -> None:
    """Participants, agents and current profiles by COPY (the ORM would take minutes)."""
    from django.db import connection
    from django.utils import timezone

    from agents_registry.models import Agent, Participant

    generator = random.Random(11)
    now = timezone.now()
    owner = Participant.objects.create(kind="agent", display_name="bench owner")
    participants = Participant.objects.bulk_create(
        [Participant(kind="agent", display_name=f"bench agent {i}") for i in range(count)],
        batch_size=5000,
    )
    statuses = ["active"] * 18 + ["paused", "suspended"]
    agents = Agent.objects.bulk_create(
        [
            Agent(
                participant=participant,
                owner=owner,
                name=f"Bench agent {i}",
                slug=f"bench-agent-{i}",
                status=generator.choice(statuses),
                concurrency_limit=4,
                active_tasks=generator.choice([0, 0, 0, 1, 2, 4]),
                outcomes_total=(total := generator.choice([0, 0, 3, 10, 40])),
                outcomes_accepted=generator.randint(0, total),
            )
            for i, participant in enumerate(participants)
        ],
        batch_size=5000,
    )
    flags = [[], [], [], ["no_personal_data"], ["no_health_data"], ["no_web_access"]]
    columns = (
        "agent_id, version, is_current, description, tags, input_formats, output_formats,"
        " price_per_task, unit_name, expected_latency_seconds, limitations, policy_flags,"
        " embedding, embedding_model, embedded_at, created_at"
    )
    with connection.cursor() as cursor:
        with cursor.copy(f"COPY agents_registry_capabilityprofile ({columns}) FROM STDIN") as copy:
            for index, agent in enumerate(agents):
                vector = "[" + ",".join(f"{value:.6g}" for value in vectors[index]) + "]"
                copy.write_row(
                    (
                        agent.pk,
                        1,
                        "t",
                        texts[index],
                        "{}",
                        "{}",
                        "{}",
                        generator.randint(5, 1500),
                        "",
                        generator.choice([30, 120, 600, 3600, 14400]),
                        "",
                        "{" + ",".join(generator.choice(flags)) + "}",
                        vector,
                        model_id,
                        now,
                        now,
                    )
                )
        cursor.execute("ANALYZE agents_registry_capabilityprofile")
        cursor.execute("ANALYZE agents_registry_agent")


def measure(size: int, vectors, texts, model_id: str, queries, rounds: int) -> dict:
    from django.db import connection

    from agents_registry.matching import match_agents

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE agents_registry_capabilityprofile, agents_registry_agent CASCADE")
        cursor.execute("DELETE FROM agents_registry_participant")
        cursor.execute("DROP INDEX IF EXISTS profile_embedding_hnsw")
    started = time.perf_counter()
    load_agents(size, vectors, texts, model_id)
    load_seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '512MB'")
        started = time.perf_counter()
        cursor.execute(
            "CREATE INDEX profile_embedding_hnsw ON agents_registry_capabilityprofile"
            " USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
            " WHERE is_current"
        )
        build_seconds = time.perf_counter() - started
        cursor.execute("SELECT pg_relation_size('profile_embedding_hnsw')")
        index_megabytes = cursor.fetchone()[0] / 1024 / 1024

    top10 = (
        "SELECT id FROM agents_registry_capabilityprofile WHERE is_current"
        " ORDER BY embedding <=> %s::vector LIMIT 10"
    )
    literals = ["[" + ",".join(f"{v:.6g}" for v in q) + "]" for q in queries]

    def run(literal: str, *, exact: bool, ef_search: int = 40) -> list[int]:
        with connection.cursor() as cursor:
            cursor.execute("BEGIN")
            if exact:
                cursor.execute("SET LOCAL enable_indexscan = off")
            cursor.execute(f"SET LOCAL hnsw.ef_search = {ef_search}")
            cursor.execute(top10, [literal])
            rows = [row[0] for row in cursor.fetchall()]
            cursor.execute("COMMIT")
            return rows

    exact_timings = Timings()
    truth = []
    for literal in literals:
        begin = time.perf_counter()
        truth.append(run(literal, exact=True))
        exact_timings.add(time.perf_counter() - begin)
    figures: dict = {
        "agents": size,
        "load_seconds": round(load_seconds, 1),
        "index_build_seconds": round(build_seconds, 2),
        "index_megabytes": round(index_megabytes, 1),
        "exact_scan": exact_timings.summary(),
    }
    for ef_search in (40, 100):
        timings = Timings()
        recalls = []
        for _ in range(rounds):
            for literal, expected in zip(literals, truth, strict=True):
                begin = time.perf_counter()
                found = run(literal, exact=False, ef_search=ef_search)
                timings.add(time.perf_counter() - begin)
                recalls.append(len(set(found) & set(expected)) / 10)
        summary = timings.summary()
        figures[f"hnsw_ef{ef_search}"] = {
            **summary,
            "recall_at_10": round(sum(recalls) / len(recalls), 4),
            "p50_ratio_to_exact": ratio(summary["p50_ms"], figures["exact_scan"]["p50_ms"]),
        }

    match_timings = Timings()
    returned = []
    for round_index in range(rounds):
        for index, query in enumerate(queries):
            begin = time.perf_counter()
            result = match_agents(embedding=query, budget=500, limit=10, seed=round_index + index)
            match_timings.add(time.perf_counter() - begin)
            returned.append(len(result.candidates))
    figures["full_match"] = {
        **match_timings.summary(),
        "budget_keeps_share": round(495 / 1496, 2),
        "mean_candidates_returned": round(sum(returned) / len(returned), 2),
    }
    return figures


def legacy_matcher(revision: str):
    """``match_agents`` as it was at ``revision`` (the matcher before outcome-grounded
    estimates), loaded from git into a module of its own, with the settings it read."""
    import subprocess
    import sys
    import types

    from django.conf import settings

    source = subprocess.run(
        ["git", "show", f"{revision}:agents_registry/matching.py"],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout
    for name, value in {
        "SIMILARITY": 1.0,
        "PRICE": 0.35,
        "REPUTATION": 0.3,
        "LOAD": 0.1,
        "LATENCY": 0.1,
        "EXPLORATION": 0.15,
    }.items():
        setattr(settings, f"MATCH_WEIGHT_{name}", value)
    module = types.ModuleType("legacy_matching")
    sys.modules["legacy_matching"] = module  # dataclasses look their module up
    exec(compile(source, f"{revision}:agents_registry/matching.py", "exec"), module.__dict__)
    return module.match_agents


def load_outcomes(count: int, vectors, model_id: str) -> dict:
    """``count`` outcomes with task vectors (other texts' vectors), spread over the agents with
    a long tail (a few agents hold many), by COPY; then the indexes the migrations declare: the
    recent-outcomes btree (each candidate's evidence) and the HNSW index (the task's
    neighbourhood radius). Returns the seconds of the load and of each index build."""
    from django.db import connection
    from django.utils import timezone

    generator = np.random.default_rng(5)
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM agents_registry_agent ORDER BY id")
        agent_ids = np.array([row[0] for row in cursor.fetchall()])
        cursor.execute("DROP INDEX IF EXISTS outcome_embedding_hnsw")
        cursor.execute("DROP INDEX IF EXISTS outcome_agent_recent")
    weights = 1.0 / np.arange(1, len(agent_ids) + 1) ** 0.5
    chosen = generator.choice(agent_ids, size=count, p=weights / weights.sum())
    kinds = generator.choice(
        ["accepted", "rejected", "timed_out", "revised"], size=count, p=[0.6, 0.25, 0.05, 0.1]
    )
    literals = ["[" + ",".join(f"{value:.5g}" for value in vector) + "]" for vector in vectors]
    now = timezone.now()
    columns = "agent_id, task_ref, outcome, cost, embedding, embedding_model, created_at"
    started = time.perf_counter()
    with connection.cursor() as cursor:
        with cursor.copy(f"COPY agents_registry_outcome ({columns}) FROM STDIN") as copy:
            for index in range(count):
                copy.write_row(
                    (
                        int(chosen[index]),
                        f"task:{index}",
                        kinds[index],
                        100,
                        literals[index % len(literals)],
                        model_id,
                        now,
                    )
                )
        copied = time.perf_counter()
        cursor.execute(
            "CREATE INDEX outcome_agent_recent ON agents_registry_outcome"
            " (agent_id, created_at DESC, id DESC)"
        )
        btree = time.perf_counter()
        cursor.execute("SET maintenance_work_mem = '1GB'")
        cursor.execute(
            "CREATE INDEX outcome_embedding_hnsw ON agents_registry_outcome"
            " USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
        )
        hnsw = time.perf_counter()
        cursor.execute("ANALYZE agents_registry_outcome")
    return {
        "copy_seconds": round(copied - started, 1),
        "btree_seconds": round(btree - copied, 1),
        "hnsw_seconds": round(hnsw - btree, 1),
    }


def measure_with_outcomes(
    queries, rounds: int, outcomes: int, vectors, model_id: str, revision: str
) -> dict:
    """At the largest size: today's matcher (``revision``), the new one with no outcomes, and
    the new one with ``outcomes`` loaded, alternating per round so load drifts hit all alike."""
    from agents_registry.matching import match_agents

    legacy = legacy_matcher(revision)

    def timings(match) -> dict:
        collected = Timings()
        for round_index in range(rounds):
            for index, query in enumerate(queries):
                begin = time.perf_counter()
                match(embedding=query, budget=500, limit=10, seed=round_index + index)
                collected.add(time.perf_counter() - begin)
        return collected.summary()

    figures = {"legacy": timings(legacy), "new_without_outcomes": timings(match_agents)}
    figures["outcomes"] = outcomes
    figures["outcome_load"] = load_outcomes(outcomes, vectors, model_id)
    print(f"outcomes loaded: {figures['outcome_load']}", flush=True)
    figures["legacy_again"] = timings(legacy)
    figures["new_with_outcomes"] = timings(match_agents)
    baseline = max(figures["legacy"]["p95_ms"], figures["legacy_again"]["p95_ms"])
    figures["p95_ratio_to_legacy"] = ratio(figures["new_with_outcomes"]["p95_ms"], baseline)
    return figures


def main() -> None:
    args = parse_args("HNSW matching at scale", extra_arguments)
    setup_django("bench_matching")
    import _capability_corpus as corpus
    import numpy as np
    from django.conf import settings

    from agents_registry import embeddings

    largest = args.agents or (10_000 if args.quick else 100_000)
    if args.vectors is None:
        settings.EMBEDDING_BACKEND = "minilm"
        enough = corpus.cached_count() >= largest
        args.vectors = "minilm" if enough or not args.quick else "hashing"
    query_count = args.queries or (20 if args.quick else 100)
    rounds = args.rounds or (2 if args.quick else 3)
    settings.EMBEDDING_BACKEND = args.vectors
    model_id = embeddings.embedding_model_id()
    texts = corpus.capability_texts(largest)
    started = time.perf_counter()
    if args.vectors == "minilm":
        vectors = corpus.cached_embeddings(largest)
    else:
        vectors = embeddings.embed_texts(texts)
    vector_seconds = time.perf_counter() - started

    # Queries: task-like texts and held-out capability texts (another seed), never in the table.
    query_texts = (corpus.TASK_QUERIES + corpus.capability_texts(query_count, seed=99))[
        :query_count
    ]
    query_vectors = embeddings.embed_texts(query_texts)

    settings.EMBEDDING_BACKEND = "minilm"
    embed_timings = Timings()
    embeddings.embed_text("warm up")
    for text in corpus.TASK_QUERIES:
        begin = time.perf_counter()
        embeddings.embed_text(text)
        embed_timings.add(time.perf_counter() - begin)
    settings.EMBEDDING_BACKEND = args.vectors

    sizes = [largest // 10, largest]
    results = {}
    for size in sizes:
        results[str(size)] = measure(
            size, vectors[:size], texts[:size], model_id, query_vectors, rounds
        )
        print(f"measured {size}: {results[str(size)]}", flush=True)
    outcome_count = (
        args.outcomes if args.outcomes is not None else (100_000 if args.quick else 1_000_000)
    )
    with_outcomes = None
    if outcome_count:
        with_outcomes = measure_with_outcomes(
            query_vectors, rounds, outcome_count, vectors, model_id, args.legacy
        )
        print(f"with outcomes: {with_outcomes}", flush=True)
    small, large = results[str(sizes[0])], results[str(sizes[1])]
    top = large["hnsw_ef40"]
    figures = {
        "vectors": args.vectors,
        "model_id": model_id,
        "vector_seconds": round(vector_seconds, 1),
        "queries": query_count,
        "rounds": rounds,
        "sizes": results,
        "task_text_embedding": embed_timings.summary(),
        "full_match_with_outcomes": with_outcomes,
        "p50_growth_10x_agents": {
            "hnsw_ef40": ratio(top["p50_ms"], small["hnsw_ef40"]["p50_ms"]),
            "full_match": ratio(large["full_match"]["p50_ms"], small["full_match"]["p50_ms"]),
            "exact_scan": ratio(large["exact_scan"]["p50_ms"], small["exact_scan"]["p50_ms"]),
        },
        "targets": {
            "recall_at_10_ge_0.95": max(
                large["hnsw_ef40"]["recall_at_10"], large["hnsw_ef100"]["recall_at_10"]
            )
            >= 0.95,
            "index_p50_lt_10ms": top["p50_ms"] < 10,
            "full_match_p95_lt_50ms": large["full_match"]["p95_ms"] < 50,
            "task_embedding_p50_lt_20ms": embed_timings.summary()["p50_ms"] < 20,
            "full_match_p95_with_outcomes_le_2x_legacy": (
                with_outcomes is None or with_outcomes["p95_ratio_to_legacy"] <= 2.0
            ),
        },
        "vector_norms_ok": bool(np.allclose(np.linalg.norm(vectors[:100], axis=1), 1, atol=1e-4)),
    }
    emit("matching", figures, quick=args.quick)


if __name__ == "__main__":
    main()
