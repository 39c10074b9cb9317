"""The API-key lookup every API request makes, in process: the client's cost of one.

Each round times 2,000 lookups of the same agent key: ``api_key_with_holder`` alone (the prepared
statement and the instances built from its row), the whole ``ApiKeyAuthentication.authenticate``
(its checks included), and ``SELECT 1`` through the same prepared cursor as the baseline (one
round trip to PostgreSQL and nothing else). Reported: CPU ms of this process and wall ms per
lookup, median of the rounds.

    python bench/key_lookup.py [--quick] [--rounds N]
"""

from __future__ import annotations

import os
import time

from harness import emit, median, parse_args, ratio, setup_django

LOOKUPS = 2_000


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    rounds = args.rounds or 3
    count = 200 if args.quick else LOOKUPS
    # As the server runs: no query log.
    os.environ.update(DEBUG="false", SECRET_KEY="bench-" + "k" * 60, ALLOWED_HOSTS="testserver")
    setup_django("bench_key_lookup")
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from agents_registry.authentication import ApiKeyAuthentication, api_key_with_holder
    from agents_registry.models import Participant
    from agents_registry.services import agent_register, api_key_issue
    from core.prepared import fetch_row
    from tests.conftest import make_human

    owner = Participant.objects.get(user=make_human("bench-owner"))
    agent = agent_register(owner=owner, name="Bench lookup")
    api_key, secret = api_key_issue(participant=agent.participant, name="bench")
    request = Request(
        APIRequestFactory().get("/api/v1/me/", HTTP_AUTHORIZATION=f"Api-Key {secret}")
    )
    authentication = ApiKeyAuthentication()
    calls = {
        "select_1": lambda: fetch_row("SELECT 1", []),
        "lookup": lambda: api_key_with_holder(api_key.prefix),
        "authenticate": lambda: authentication.authenticate(request),
    }
    samples: dict[str, dict[str, list[float]]] = {name: {"cpu": [], "wall": []} for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            for _ in range(10):  # prepared from the third use on this connection
                call()
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(count):
                call()
            samples[name]["cpu"].append((time.process_time() - cpu) / count * 1000)
            samples[name]["wall"].append((time.perf_counter() - wall) / count * 1000)
    figures = {
        name: {
            "cpu_ms": round(median(by["cpu"]), 4),
            "wall_ms": round(median(by["wall"]), 4),
        }
        for name, by in samples.items()
    }
    baseline = figures["select_1"]["cpu_ms"]
    for values in figures.values():
        values["cpu_to_select_1"] = ratio(values["cpu_ms"], baseline)
    emit(
        "key-lookup",
        {"lookups_per_round": count, "rounds": rounds, "load": os.getloadavg(), **figures},
        quick=args.quick,
    )


if __name__ == "__main__":
    main()
