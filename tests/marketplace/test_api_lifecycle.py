"""The whole lifecycle through the REST API, as a human poster and two agents would use it:
post, bid, award, start, delegate a subtask, claim it, deliver, verify, accept, and every wallet
moves by exactly what the settlement says."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from marketplace import services
from marketplace.models import Delivery, Task
from tests.conftest import make_human, participant_of
from tests.marketplace.conftest import available, escrow, make_agent


def test_full_lifecycle_through_the_api(alice: User, bob: User) -> None:
    carol = make_human("carol")
    poster = participant_of(alice)
    human = APIClient()
    human.force_login(alice)
    writer = make_agent(bob, "Writer")
    helper = make_agent(carol, "Fact checker")
    writer_api, helper_api = writer.client(), helper.client()
    start = {p: available(p) for p in (poster, writer.participant, helper.participant)}

    posted = human.post(
        "/api/v1/tasks/",
        {
            "title": "Summarise the quarterly report",
            "description": "Three bullet points and a one-line verdict.",
            "bounty": 1000,
            "checks": {"required_fields": ["summary"], "regex": "verdict"},
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY="post-1",
    )
    assert posted.status_code == 201, posted.json()
    task_id = posted.json()["id"]
    assert posted.json()["status"] == "open"
    assert available(poster) == start[poster] - 1000
    replay = human.post(
        "/api/v1/tasks/",
        {
            "title": "Summarise the quarterly report",
            "description": "Three bullet points and a one-line verdict.",
            "bounty": 1000,
            "checks": {"required_fields": ["summary"], "regex": "verdict"},
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY="post-1",
    )
    assert replay.status_code == 201
    assert replay.json()["id"] == task_id
    assert replay["Idempotent-Replayed"] == "true"
    assert Task.objects.filter(poster=poster).count() == 1
    assert available(poster) == start[poster] - 1000

    listed = writer_api.get("/api/v1/tasks/?q=quarterly")
    assert [row["id"] for row in listed.json()["results"]] == [task_id]

    bid = writer_api.post(
        f"/api/v1/tasks/{task_id}/bids/",
        {"price": 800, "eta_hours": 3, "plan": "Read, outline, summarise, check facts."},
        format="json",
    )
    assert bid.status_code == 201, bid.json()
    too_high = helper_api.post(
        f"/api/v1/tasks/{task_id}/bids/",
        {"price": 1001, "eta_hours": 1, "plan": "Fast."},
        format="json",
    )
    assert too_high.status_code == 400
    assert "bounty" in too_high.json()["error"]["message"]

    bids = human.get(f"/api/v1/tasks/{task_id}/bids/").json()["results"]
    assert [(row["price"], row["status"]) for row in bids] == [(800, "active")]
    awarded = human.post(f"/api/v1/bids/{bid.json()['id']}/award/")
    assert awarded.status_code == 200, awarded.json()
    assert awarded.json()["status"] == "awarded"
    assert awarded.json()["assignee"]["id"] == writer.participant.pk

    assert writer_api.post(f"/api/v1/tasks/{task_id}/start/").json()["status"] == "in_progress"

    subtask = writer_api.post(
        f"/api/v1/tasks/{task_id}/subtasks/",
        {
            "title": "Check three figures",
            "description": "Verify revenue, cost, margin.",
            "bounty": 200,
        },
        format="json",
    )
    assert subtask.status_code == 201, subtask.json()
    subtask_id = subtask.json()["id"]
    assert subtask.json()["parent_id"] == task_id
    assert escrow(Task.objects.get(pk=task_id)) == 800
    early = writer_api.post(
        f"/api/v1/tasks/{task_id}/deliveries/", {"text": "early"}, format="json"
    )
    assert early.status_code == 409
    assert early.json()["error"]["code"] == "subtasks_open"
    assert not Delivery.objects.filter(task_id=task_id).exists()

    assert helper_api.post(f"/api/v1/tasks/{subtask_id}/claim/").json()["status"] == "awarded"
    helper_api.post(f"/api/v1/tasks/{subtask_id}/start/")
    sub_delivery = helper_api.post(
        f"/api/v1/tasks/{subtask_id}/deliveries/",
        {"text": "All three figures match the filing."},
        format="json",
        HTTP_IDEMPOTENCY_KEY="sub-deliver-1",
    )
    assert sub_delivery.status_code == 201, sub_delivery.json()
    accepted_sub = writer_api.post(f"/api/v1/deliveries/{sub_delivery.json()['id']}/accept/")
    assert accepted_sub.json()["status"] == "accepted"
    assert available(helper.participant) == start[helper.participant] + 190  # 200 less the 5% fee

    upload = SimpleUploadedFile("notes.md", b"# Notes\n- revenue up", content_type="text/markdown")
    delivered = writer_api.post(
        f"/api/v1/tasks/{task_id}/deliveries/",
        {
            "text": "Summary: revenue up, costs flat. verdict: healthy",
            "data": '{"summary": "healthy quarter"}',
            "files": [upload],
        },
        format="multipart",
        HTTP_IDEMPOTENCY_KEY="deliver-1",
    )
    assert delivered.status_code == 201, delivered.json()
    delivery_id = delivered.json()["id"]
    assert delivered.json()["check_status"] == "pending"
    assert [f["name"] for f in delivered.json()["files"]] == ["notes.md"]
    services.delivery_verify_run(delivery_id=delivery_id)  # what the worker runs on commit
    checked = human.get(f"/api/v1/deliveries/{delivery_id}/").json()
    assert checked["check_status"] == "passed"
    assert [(r["check"], r["passed"]) for r in checked["check_results"]] == [
        ("regex", True),
        ("required_fields", True),
    ]
    download = human.get(
        checked["files"][0]
        and f"/api/v1/deliveries/{delivery_id}/files/{checked['files'][0]['id']}/"
    )
    assert download.status_code == 200
    assert download["Content-Disposition"].startswith("attachment")
    assert b"".join(download.streaming_content) == b"# Notes\n- revenue up"

    accepted = human.post(f"/api/v1/deliveries/{delivery_id}/accept/")
    assert accepted.status_code == 200, accepted.json()
    assert accepted.json()["status"] == "accepted"
    # Escrow 800 (1000 less the subtask's 200); payout 800 - (1000 - 800) = 600, fee 30.
    assert available(writer.participant) == start[writer.participant] + 570
    assert available(poster) == start[poster] - 800
    assert escrow(Task.objects.get(pk=task_id)) == 0
    assert Delivery.objects.get(pk=delivery_id).status == "accepted"
    again = human.post(f"/api/v1/deliveries/{delivery_id}/accept/")
    assert again.status_code == 409
    assert available(writer.participant) == start[writer.participant] + 570

    events = [e["kind"] for e in human.get(f"/api/v1/tasks/{task_id}/events/").json()["results"]]
    assert events == [
        "posted",
        "bid_placed",
        "awarded",
        "started",
        "subtask_posted",
        "delivered",
        "checks_passed",
        "accepted",
    ]
    mine = writer_api.get("/api/v1/bids/").json()["results"]
    assert [(row["task_id"], row["status"]) for row in mine] == [(task_id, "awarded")]
