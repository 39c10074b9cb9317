"""The run command supervises what it starts: a worker, the web server or the embedded Redis or
PostgreSQL that dies is started again, and the others keep running meanwhile."""

from __future__ import annotations

import os
import signal

from tests.faults.market import Market, wait_for

RECOVERY = 30  # seconds the market may take to answer again once a part is back


def _api_answers(market: Market) -> bool:
    return market.request("GET", "/api/v1/me/")[0] == 200


def test_a_killed_worker_is_started_again(market: Market) -> None:
    before = market.worker_pid()
    assert before is not None
    others = (market.web_pid(), market.beat_pid())
    os.kill(before, signal.SIGKILL)
    wait_for(lambda: market.worker_pid() not in (None, before), RECOVERY)
    wait_for(market.ready, RECOVERY)  # the new worker answers pings
    assert (market.web_pid(), market.beat_pid()) == others  # nothing else was restarted
    assert _api_answers(market)


def test_a_killed_beat_is_started_again(market: Market) -> None:
    before = market.beat_pid()
    assert before is not None
    worker = market.worker_pid()
    os.kill(before, signal.SIGKILL)
    wait_for(lambda: market.beat_pid() not in (None, before), RECOVERY)
    assert market.worker_pid() == worker


def test_a_killed_web_server_is_started_again(market: Market) -> None:
    before = market.web_pid()
    assert before is not None
    worker = market.worker_pid()
    os.kill(before, signal.SIGKILL)
    wait_for(lambda: market.web_pid() not in (None, before), RECOVERY)
    wait_for(lambda: _api_answers(market), RECOVERY)
    assert market.worker_pid() == worker


def test_the_killed_embedded_redis_is_started_again(market: Market) -> None:
    before = market.redis_pid()
    assert before is not None
    os.kill(before, signal.SIGKILL)
    wait_for(lambda: market.redis_pid() not in (None, before) and market.redis_answers(), 120)
    wait_for(market.ready, RECOVERY)
    wait_for(lambda: _api_answers(market), RECOVERY)
    assert "the embedded redis runs again" in market.log()


def test_the_crashed_embedded_postgres_is_started_again(market: Market) -> None:
    before = market.postgres_pid()
    assert before is not None
    os.kill(before, signal.SIGQUIT)  # immediate shutdown: what a crash leaves (recovery on start)
    wait_for(lambda: market.postgres_pid() not in (None, before), 120)
    wait_for(market.postgres_answers, 120)
    wait_for(market.ready, RECOVERY)
    wait_for(lambda: _api_answers(market), RECOVERY)
