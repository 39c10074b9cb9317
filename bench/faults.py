"""Recovery after faults: the market as ``make run`` starts it (``manage.py up`` on servers of its
own folder), its parts broken one at a time under API load, several times each.

    python bench/faults.py [--quick] [--rounds N]

For each fault, the median over the rounds of: seconds from the fault until the part answers
again (the run command starts it again), seconds from then until the API answers 200 for good,
and how many answers were not 200 meanwhile (every one of them a documented 503; a wrong answer
fails the run). Faults: the embedded Redis SIGKILLed, the embedded PostgreSQL crashed (SIGQUIT,
recovery on start), the Celery worker SIGKILLed (until ``/readyz`` sees a worker again), the web
server SIGKILLed (until the API answers again). Rounds are a stable minute apart, so each restart
waits the supervisor's first backoff (1 s). The harness is the fault suite's
(tests/faults/market.py).
"""

from __future__ import annotations

import os
import signal
import statistics
import time

from harness import emit, parse_args, setup_django


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    rounds = args.rounds or (1 if args.quick else 3)
    setup_django()  # the harness's models and settings in this process; the market has its own
    from marketplace.supervisor import STABLE
    from tests.faults.market import Market, fault_env, wait_for
    from tests.faults.test_under_load import postgres_crashed, redis_killed

    market = Market("bench-faults", **fault_env())
    samples: dict[str, list[dict[str, float]]] = {}
    try:
        market.start()

        def process_killed(pid_of, back) -> dict[str, float]:
            before = pid_of()
            killed = time.monotonic()
            os.kill(before, signal.SIGKILL)
            wait_for(lambda: pid_of() not in (None, before), 60, interval=0.05)
            returned = time.monotonic()
            wait_for(back, 60, interval=0.05)
            return {
                "part_back_s": returned - killed,
                "api_recovered_after_part_back_s": time.monotonic() - returned,
                "fault_to_api_recovered_s": time.monotonic() - killed,
            }

        for index in range(rounds):
            if index:  # each part stable for a minute: its restart waits the first backoff again
                time.sleep(STABLE)
            samples.setdefault("redis_sigkill", []).append(redis_killed(market))
            wait_for(market.ready, 60)
            samples.setdefault("postgres_crash", []).append(postgres_crashed(market))
            wait_for(market.ready, 60)
            samples.setdefault("worker_sigkill", []).append(
                process_killed(market.worker_pid, market.ready)
            )
            samples.setdefault("web_sigkill", []).append(
                process_killed(
                    market.web_pid, lambda: market.request("GET", "/api/v1/me/")[0] == 200
                )
            )
            wait_for(market.ready, 60)
    finally:
        market.stop()
        market.remove()
    figures = {
        fault: {name: round(statistics.median(run[name] for run in runs), 2) for name in runs[0]}
        for fault, runs in samples.items()
    }
    emit("faults", {"rounds": rounds, "faults": figures}, quick=args.quick)


if __name__ == "__main__":
    main()
