"""No page is wider than the window, on a desktop (1280 px) or a phone (390 px): measured in the
browser over every main page of ``make run``, with the content that used to widen them (a hosted
agent's JSON data, a line of text with no spaces, a markdown table)."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.browser.conftest import (
    DEMO_PASSWORD,
    RunningMarketplace,
    browser_run_test,
    log_in,
    new_page,
    page_overflow,
)

pytestmark = browser_run_test

# Run in the run's own shell: a task delivered by a human with text that used to overflow, and
# one claimed by the built-in text statistics agent (its execution delivers JSON data).
SEED = """
import json
from django.contrib.auth.models import User
from agents_registry.models import Agent
from agents_registry.services import participant_for_user
from marketplace import services
alice = participant_for_user(user=User.objects.get(username="alice"))
bob = participant_for_user(user=User.objects.get(username="bob"))
tag = {tag!r}
task = services.task_post(poster=alice, title="Wide delivery " + tag,
    description="A deliverable with long lines. " * 20, bounty=1234)
services.task_claim(task=task, claimant=bob)
services.delivery_submit(task=task, actor=bob, start=True,
    text="# Report\\n\\n" + "x" * 600 + "\\n\\n| column " * 12 + "|\\n" + "| - " * 12 + "|\\n"
    + "| a long cell value " * 12 + "|\\n",
    data={{"rows": [{{"key": "k" * 300, "value": list(range(80))}}]}})
hosted = services.task_post(poster=alice, title="Keywords " + tag,
    description="Count the words and sentences of this text, and list its keywords. " * 8,
    bounty=50)
agent = Agent.objects.get(slug="builtin-text-stats")
services.task_claim(task=hosted, claimant=agent.participant)
print(json.dumps({{"human": task.pk, "hosted": hosted.pk}}))
"""

LOGGED_IN_PAGES = [
    "/",
    "/?q=keywords",
    "/tasks/new/",
    "/tasks/{human}/",
    "/tasks/{hosted}/",
    "/executions/{execution}/",
    "/dashboard/",
    "/wallet/",
    "/wallet/statement/",
    "/agents/",
    "/agents/builtin-text-stats/",
    "/agents/bobs-research-desk/",
    "/agents/new/",
    "/agents/match-preview/",
    "/agents/match-preview/?text=Convert+a+CSV+export+of+orders+to+JSON+records&budget=100",
    "/skills/",
]
LOGGED_OUT_PAGES = ["/", "/accounts/login/", "/accounts/signup/", "/agents/", "/skills/"]


@pytest.fixture(scope="module")
def wide_tasks(marketplace_run: RunningMarketplace) -> dict[str, int]:
    ids = json.loads(marketplace_run.python(SEED.format(tag=uuid.uuid4().hex[:6])).splitlines()[-1])
    hosted_ref = ids["hosted"]
    execution = marketplace_run.python(
        "import time\nfrom workers.models import Execution\n"
        "for _ in range(300):\n"
        f"    found = Execution.objects.filter(task_ref={hosted_ref}, status='succeeded').first()\n"
        "    if found: break\n"
        "    time.sleep(0.1)\n"
        "print(found.pk)"
    )
    return {**ids, "execution": int(execution.splitlines()[-1])}


@pytest.mark.parametrize("width", [1280, 390])
def test_no_page_is_wider_than_the_window(
    browser, run: RunningMarketplace, wide_tasks: dict[str, int], width: int
) -> None:
    wide: dict[str, int] = {}
    page = new_page(browser, width=width, height=800)
    for path in LOGGED_OUT_PAGES:
        page.goto(f"{run.base_url}{path}")
        if page_overflow(page) > 0:
            wide[f"(logged out) {path}"] = page_overflow(page)
    page.close()
    page = log_in(browser, run, "alice", DEMO_PASSWORD)
    page.set_viewport_size({"width": width, "height": 800})
    for template in LOGGED_IN_PAGES:
        path = template.format(**wide_tasks)
        response = page.goto(f"{run.base_url}{path}")
        assert response is not None and response.status == 200, path
        if page_overflow(page) > 0:
            wide[path] = page_overflow(page)
    # The hosted delivery's data is there, formatted, on the page measured above.
    page.goto(f"{run.base_url}/tasks/{wide_tasks['hosted']}/")
    assert '\n  "' in page.inner_text(".delivery pre.json")
    assert wide == {}, f"wider than {width} px by: {wide}"
    # "Post a task" is reachable on a phone: inside the window, not cut off.
    box = page.locator("nav >> text=Post a task").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
