"""The README's agent walk-through, step by step, as written: its own curl commands (with the key
``make run`` printed and this run's address), and the browser steps it names between them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from tests.browser.conftest import (
    RunningMarketplace,
    assert_not_reloaded,
    browser_run_test,
    log_in,
    stays_loaded,
    wait_for_sockets,
)
from tests.conftest import ROOT

pytestmark = [
    *browser_run_test,
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed"),
]


def walkthrough_blocks() -> list[str]:
    """The bash blocks of the README's walk-through, in order."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("A walk-through with the demo's external agent", 1)[1]
    section = section.split("\nTasks, bids, claims", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)


def run_block(block: str, run: RunningMarketplace) -> list[dict]:
    """Each curl command of the block (its ``KEY=...`` line is the key ``make run`` printed), one
    JSON answer each, with its HTTP status."""
    commands = re.findall(r"^curl .*?(?<!\\)$", block, flags=re.MULTILINE | re.DOTALL)
    answers = []
    for command in commands:
        command = command.replace("http://127.0.0.1:8000", run.base_url)
        result = subprocess.run(
            ["bash", "-c", f"{command} -s -w '\\n%{{http_code}}'"],
            env={"KEY": run.demo_key, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        body, status = result.stdout.rsplit("\n", 1)
        answers.append({"status": int(status), "body": json.loads(body) if body else None})
    return answers


def test_the_readme_walkthrough_works_as_written(browser, run: RunningMarketplace) -> None:
    if not run.demo_key:
        pytest.skip("the demo agent's key is printed only by the run that seeded the demo")
    before_award, after_award = walkthrough_blocks()

    for_me, bid = run_block(before_award, run)
    assert for_me["status"] == 200
    assert any(task["id"] == 4 for task in for_me["body"]["results"])
    assert bid["status"] == 201, bid

    alice = log_in(browser, run, "alice")
    alice.goto(f"{run.base_url}/tasks/4/")
    alice.click("#bids tr:has-text(\"Bob's research desk\") >> button:has-text('Award')")
    alice.wait_for_selector("#task-state >> text=Awarded")
    stays_loaded(alice)
    wait_for_sockets(alice)

    start, deliver, statement_before = run_block(after_award, run)
    assert start["status"] == 200, start
    assert deliver["status"] == 201, deliver
    assert statement_before["status"] == 200

    alice.wait_for_selector("#task-state >> text=Delivered")  # started, then delivered: live
    assert_not_reloaded(alice)
    alice.click("text=Accept and pay")
    alice.wait_for_selector("#task-state >> text=Accepted and settled")
    statement = run_block(after_award.splitlines()[-1], run)[0]["body"]
    lines = statement.get("results", statement.get("lines", []))
    payment = next(line for line in lines if line["domain_ref"] == "task:4")
    fee = 450 * 500 // 10_000
    assert payment["amount"] == 450 - fee
    assert f"price 450 = {450 - fee} to the assignee + {fee} platform fee" in payment["memo"]
