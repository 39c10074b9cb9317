"""The benchmark harness: percentiles, and one JSON object on the last line."""

from __future__ import annotations

import json

from bench.harness import Timings, emit, percentile, ratio


def test_percentiles_and_ratio() -> None:
    values = [i / 1000 for i in range(1, 101)]
    assert percentile(values, 0.5) == 0.051 or percentile(values, 0.5) == 0.05
    timings = Timings(values)
    summary = timings.summary()
    assert summary["count"] == 100
    assert summary["p99_ms"] == 99.0
    assert ratio(50, 100) == 0.5


def test_emit_prints_one_json_object_last(capsys: object) -> None:
    emit("harness-selftest", {"figure": 1}, quick=True)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    body = json.loads(last)
    assert body["benchmark"] == "harness-selftest"
    assert body["figure"] == 1
    assert body["machine"]["cores"] >= 1
