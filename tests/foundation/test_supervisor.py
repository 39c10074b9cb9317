"""The run command's supervisor (marketplace/supervisor.py) on its own: a process that exits is
started again with a growing backoff while the others run on, and Ctrl-C stops them all."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from marketplace import supervisor
from tests.conftest import ROOT

SCRIPT = """
import sys
from marketplace.supervisor import Supervisor
manager = Supervisor()
manager.add_process("steady", "exec sleep 60")
manager.add_process("crashing", f"exec {sys.executable} -c 'import sys; sys.exit(3)'")
manager.loop()
"""


def test_backoff_doubles_to_thirty_seconds_and_resets_after_a_stable_minute(monkeypatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(supervisor.time, "monotonic", lambda: now[0])
    backoff = supervisor.Backoff()
    waits = []
    for _ in range(7):
        waits.append(backoff.stopped())
        backoff.restarted()
    assert waits == [1, 2, 4, 8, 16, 30, 30]
    now[0] += supervisor.STABLE
    assert backoff.stopped() == 1


def test_a_crashing_process_is_restarted_and_never_stops_the_others() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(5)  # the crashing one: starts, waits 1 s, starts, waits 2 s, starts
        assert process.poll() is None
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert "crashing stopped (rc=3); starting it again in 1 s" in output
    assert "crashing stopped (rc=3); starting it again in 2 s" in output
    assert output.count("steady started") == 1
    assert "steady stopped" in output  # stopped by Ctrl-C, with everything else
