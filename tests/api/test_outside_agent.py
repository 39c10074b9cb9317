"""An outside agent's whole journey against a live server, written from the OpenAPI schema
alone: no project import here, only HTTP. People sign up and make their API tokens on the web
pages (as a person does, in a browser); everything else is the API.

Alice posts work and reviews it with her personal token; Bob registers an agent, gives it a
key, and the agent finds the task, bids, is awarded, delegates a part to Bob's second agent
(funded by Bob) as internal work, delivers twice with one Idempotency-Key, is paid, and reads
its statement."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

PASSWORD = "a-long-journey-password-42"


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def person_with_token(base: str, username: str, scopes: list[str]) -> str:
    """Sign up on the site and create a personal API token on the tokens page."""
    with httpx.Client(base_url=base, follow_redirects=True, timeout=30) as browser:
        signup = browser.get("/accounts/signup/")
        browser.post(
            "/accounts/signup/",
            data={
                "csrfmiddlewaretoken": _csrf(signup),
                "username": username,
                "email": f"{username}@example.com",
                "password1": PASSWORD,
                "password2": PASSWORD,
            },
            headers={"Referer": f"{base}/accounts/signup/"},
        )
        tokens = browser.get("/settings/tokens/")
        assert tokens.status_code == 200, tokens.text[:300]
        created = browser.post(
            "/settings/tokens/",
            data={
                "csrfmiddlewaretoken": _csrf(tokens),
                "name": "journey",
                "scopes": scopes,
                "expires_in_days": "30",
            },
            headers={"Referer": f"{base}/settings/tokens/"},
        )
        secret = re.search(r'<pre id="issued-token">([^<]+)</pre>', created.text)
        assert secret, created.text[:800]
        return secret.group(1)


class Api:
    """An HTTP client that speaks the schema's conventions: ``Api-Key`` auth, JSON bodies, the
    one error shape."""

    def __init__(self, base: str, secret: str) -> None:
        self.http = httpx.Client(
            base_url=f"{base}/api/v1", headers={"Authorization": f"Api-Key {secret}"}, timeout=30
        )

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        assert response.status_code == 200, (path, response.text)
        return response.json()

    def post(self, path: str, body: Any = None, *, expect: int = 200, key: str = "") -> Any:
        headers = {"Idempotency-Key": key} if key else {}
        response = self.http.post(path, json=body or {}, headers=headers)
        assert response.status_code == expect, (path, response.status_code, response.text)
        if expect >= 400:
            assert set(response.json()["error"]) == {"code", "message", "fields"}
        return response.json() | {"_replayed": response.headers.get("Idempotent-Replayed")}


@pytest.fixture(scope="module")
def base(live_market: Any) -> str:
    return live_market.url


def test_an_outside_agent_finds_work_delegates_and_is_paid(base: str) -> None:
    run = uuid.uuid4().hex[:6]
    alice = Api(base, person_with_token(base, f"alice{run}", ["tasks:read", "tasks:write"]))
    bob = Api(
        base,
        person_with_token(
            base,
            f"bob{run}",
            # A token grants an agent's key only scopes it has itself.
            [
                "agents:write",
                "wallet:read",
                "wallet:write",
                "tasks:read",
                "tasks:write",
                "bids:write",
                "deliveries:write",
            ],
        ),
    )
    assert alice.get("/me/")["kind"] == "human"

    # Bob registers an agent and gives it a key of its own.
    profile = {
        "description": "Summarises quarterly reports into three short bullet points.",
        "price_per_task": 300,
        "expected_latency_seconds": 600,
    }
    agent = bob.post("/agents/", {"name": f"Summariser {run}", "profile": profile}, expect=201)
    issued = bob.post(
        f"/agents/{agent['slug']}/keys/",
        {
            "name": "prod",
            "scopes": [
                "tasks:read",
                "tasks:write",
                "bids:write",
                "deliveries:write",
                "wallet:read",
            ],
        },
        expect=201,
    )
    worker = Api(base, issued["key"])
    assert worker.get("/me/")["agent_slug"] == agent["slug"]

    # Alice posts; the agent finds it and bids; Alice awards through her token.
    task = alice.post(
        "/tasks/",
        {
            "title": f"Summarise the Q3 report {run}",
            "description": "Three bullet points from the quarterly report.",
            "bounty": 1000,
        },
        expect=201,
        key=f"post-{run}",
    )
    assert task["status"] == "open" and task["price"] is None
    found = worker.get("/tasks/", q=run)
    assert [t["id"] for t in found["results"]] == [task["id"]]
    bid = worker.post(
        f"/tasks/{task['id']}/bids/",
        {"price": 800, "eta_hours": 4, "plan": "Read it, then write three bullets."},
        expect=201,
    )
    assert [b["id"] for b in alice.get(f"/tasks/{task['id']}/bids/")["results"]] == [bid["id"]]
    awarded = alice.post(f"/bids/{bid['id']}/award/")
    assert awarded["status"] == "awarded" and awarded["price"] == 800
    assert any(t["id"] == task["id"] for t in worker.get("/work/")["results"])
    assert worker.get("/notifications/", unread="true")["count"] >= 1
    worker.post("/tasks/{}/start/".format(task["id"]))

    # Bob funds a second agent; the first delegates part of the work to it as internal work.
    second = bob.post(
        "/agents/",
        {
            "name": f"Checker {run}",
            "profile": {
                **profile,
                "description": "Checks bullet point summaries against their source report.",
            },
        },
        expect=201,
    )
    second_key = bob.post(
        f"/agents/{second['slug']}/keys/",
        {
            "name": "prod",
            "scopes": [
                "tasks:read",
                "tasks:write",
                "bids:write",
                "deliveries:write",
                "wallet:read",
            ],
        },
        expect=201,
    )["key"]
    checker = Api(base, second_key)
    funded = bob.post(
        "/wallet/transfers/",
        {"agent": second["slug"], "amount": 300, "direction": "to_agent"},
        expect=201,
        key=f"fund-{run}",
    )
    assert funded["agent_available"] == 300
    assert (
        bob.post(
            "/wallet/transfers/",
            {"agent": second["slug"], "amount": 300, "direction": "to_agent"},
            expect=201,
            key=f"fund-{run}",
        )["_replayed"]
        == "true"
    )
    assert checker.get("/wallet/")["available"] == 300
    # Work for one's own agents must be internal.
    public_sub = worker.post(
        f"/tasks/{task['id']}/subtasks/",
        {"title": "Check the bullets", "description": "Against the report.", "bounty": 150},
        expect=201,
    )
    checker.post(f"/tasks/{public_sub['id']}/claim/", expect=403)
    worker.post(f"/tasks/{public_sub['id']}/cancel/")
    sub = worker.post(
        f"/tasks/{task['id']}/subtasks/",
        {
            "title": "Check the bullets",
            "description": "Against the report.",
            "bounty": 150,
            "internal": True,
        },
        expect=201,
    )
    assert sub["internal"] is True and sub["visibility"] == "private"
    claimed = checker.post(f"/tasks/{sub['id']}/claim/")
    assert claimed["price"] == 150  # a claim takes the bounty as its price
    checker.post(f"/tasks/{sub['id']}/start/")
    checked = checker.post(
        f"/tasks/{sub['id']}/deliveries/", {"text": "All three hold."}, expect=201
    )
    worker.post(f"/deliveries/{checked['id']}/accept/")
    # The funded checker posts work of its own with the credits Bob gave it.
    own = checker.post(
        "/tasks/",
        {"title": f"Proofread {run}", "description": "One page.", "bounty": 250},
        expect=201,
    )
    assert own["status"] == "open"
    checker_wallet = checker.get("/wallet/")
    assert 0 < checker_wallet["available"] < 300

    # The agent delivers twice with one key: one delivery, the second answer a replay.
    body = {"text": "- Revenue up 4%\n- Costs flat\n- Outlook raised", "data": {"bullets": 3}}
    first = worker.post(f"/tasks/{task['id']}/deliveries/", body, expect=201, key=f"d-{run}")
    again = worker.post(f"/tasks/{task['id']}/deliveries/", body, expect=201, key=f"d-{run}")
    assert again["id"] == first["id"] and again["_replayed"] == "true"
    assert [d["id"] for d in alice.get(f"/tasks/{task['id']}/deliveries/")["results"]] == [
        first["id"]
    ]

    # Alice accepts through her token; the agent is paid and reads its statement.
    accepted = alice.post(f"/deliveries/{first['id']}/accept/")
    assert accepted["status"] == "accepted"
    paid = worker.get("/wallet/")
    statement = worker.get("/wallet/statement/")
    settled = [line for line in statement["results"] if line["reason"] == "escrow_settle"]
    assert settled and settled[0]["amount"] > 0
    assert paid["available"] == statement["results"][0]["balance_after"]
    events = alice.get(f"/tasks/{task['id']}/events/")
    assert [e["kind"] for e in events["results"]][-1] == "accepted"


# Marked for the database (it needs none) so pytest-django sets the test database up when this
# module runs alone: it prepares only the databases that marked tests ask for.
@pytest.mark.django_db
def test_the_schema_is_served_to_outsiders(client: Any) -> None:
    response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
