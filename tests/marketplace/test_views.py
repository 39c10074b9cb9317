"""The web pages: feed, posting (wallet check), the task page's actions, sanitised deliverables,
file downloads as attachments, and the websocket consumer's access check."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client

from marketplace.models import Task
from marketplace.sanitize import sanitize_text
from tests.conftest import participant_of
from tests.marketplace.conftest import available, escrow, post, walk_to


def login(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_feed_lists_open_public_tasks_and_filters(alice: User, mallory: User) -> None:
    poster = participant_of(alice)
    post(poster, bounty=100, title="Translate a menu")
    post(poster, bounty=900, title="Scrape prices")
    post(poster, bounty=50, title="Secret family errand", visibility="private")
    page = Client().get("/").content.decode()
    assert "Translate a menu" in page and "Scrape prices" in page
    assert "Secret family errand" not in page
    filtered = Client().get("/?min=500").content.decode()
    assert "Scrape prices" in filtered and "Translate a menu" not in filtered
    partial = Client().get("/?q=menu", HTTP_HX_REQUEST="true").content.decode()
    assert "Translate a menu" in partial and "<html" not in partial


def test_posting_checks_the_wallet_and_creates_nothing_when_short(alice: User) -> None:
    client = login(alice)
    poster = participant_of(alice)
    before = available(poster)
    response = client.post(
        "/tasks/new/",
        {"title": "Too big", "description": "More than I have", "bounty": before + 1},
    )
    assert response.status_code == 400
    assert "available" in response.content.decode()
    assert not Task.objects.exists()
    assert available(poster) == before
    ok = client.post(
        "/tasks/new/",
        {"title": "Fits", "description": "Within budget", "bounty": 300, "form_key": "k1"},
    )
    task = Task.objects.get()
    assert ok.status_code == 302 and ok["Location"] == f"/tasks/{task.pk}/"
    assert available(poster) == before - 300


def test_task_page_actions_walk_the_lifecycle(alice: User, bob: User) -> None:
    poster, worker = participant_of(alice), participant_of(bob)
    task = post(poster, bounty=400)
    as_bob, as_alice = login(bob), login(alice)
    as_bob.post(f"/tasks/{task.pk}/bid/", {"price": 300, "eta_hours": 2, "plan": "Careful."})
    bid = task.bids.get()
    as_alice.post(f"/tasks/{task.pk}/award/", {"bid": bid.pk})
    as_bob.post(f"/tasks/{task.pk}/start/")
    as_bob.post(
        f"/tasks/{task.pk}/deliver/",
        {"text": '<p onclick="x()" hx-get="/steal">ok</p><script>alert(1)</script>'},
    )
    page = as_alice.get(f"/tasks/{task.pk}/").content.decode()
    assert "<script>alert(1)</script>" not in page
    assert 'hx-get="/steal"' not in page and "onclick" not in page
    delivery = task.deliveries.get()
    worker_before = available(worker)
    response = as_alice.post(f"/tasks/{task.pk}/accept/", {"delivery": delivery.pk})
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.state == "accepted"
    assert available(worker) == worker_before + 285
    refused = as_alice.post(f"/tasks/{task.pk}/accept/", {"delivery": delivery.pk}, follow=True)
    assert (
        "no longer in review" in refused.content.decode() or "accepted" in refused.content.decode()
    )
    assert available(worker) == worker_before + 285


def test_sanitiser_drops_scripts_handlers_and_htmx_attributes() -> None:
    cleaned = sanitize_text(
        '<a href="javascript:x" hx-post="/x">l</a><img src=x onerror=y><b>b</b>'
    )
    assert "javascript" not in cleaned and "hx-post" not in cleaned and "onerror" not in cleaned
    assert "<b>b</b>" in cleaned
    assert sanitize_text("a & b\nc") == "<p>a &amp; b<br>\nc</p>\n"
    rendered = sanitize_text("# Result\n\n| a | b |\n| - | - |\n| 1 | **2** |\n\n[x](javascript:y)")
    assert "<h1>Result</h1>" in rendered and "<td><strong>2</strong></td>" in rendered
    assert 'href="javascript' not in rendered  # an unsafe link stays text


def test_private_task_page_is_not_found_for_outsiders(alice: User, mallory: User) -> None:
    task = post(participant_of(alice), visibility="private", title="Hidden")
    response = login(mallory).get(f"/tasks/{task.pk}/")
    assert response.status_code == 404
    assert "Hidden" not in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_task_socket_admits_only_those_who_may_see_the_task(alice: User, mallory: User) -> None:
    from marketplace.consumers import TaskConsumer

    task = post(participant_of(alice), visibility="private")

    async def connect(user: User) -> bool:
        communicator = WebsocketCommunicator(TaskConsumer.as_asgi(), f"/ws/tasks/{task.pk}/")
        communicator.scope["user"] = user
        communicator.scope["url_route"] = {"kwargs": {"task_id": task.pk}}
        connected, _ = await communicator.connect()
        try:
            if connected:
                from channels.layers import get_channel_layer

                await get_channel_layer().group_send(
                    f"task.{task.pk}", {"type": "task.changed", "kind": "bid_placed"}
                )
                message = await communicator.receive_from(timeout=5)
                assert 'hx-swap-oob="true"' in message and 'data-kind="bid_placed"' in message
        finally:
            # A refused consumer runs until its disconnect too: left to the event loop's
            # shutdown, its cancelled channel-layer receive once hung the suite.
            await communicator.disconnect()
        return connected

    assert async_to_sync(connect)(alice) is True
    assert async_to_sync(connect)(mallory) is False


def test_walk_helper_reaches_disputed(alice: User, bob: User) -> None:
    task = walk_to("disputed", poster=participant_of(alice), worker=participant_of(bob))
    page = login(alice).get(f"/tasks/{task.pk}/").content.decode()
    assert "Dispute" in page and "Not what I asked." in page


def test_the_assignee_delegates_from_the_task_page(alice: User, bob: User) -> None:
    poster, worker = participant_of(alice), participant_of(bob)
    task = post(poster, bounty=1_000)
    as_bob, as_alice = login(bob), login(alice)
    as_bob.post(f"/tasks/{task.pk}/bid/", {"price": 900, "eta_hours": 2, "plan": "Split it."})
    as_alice.post(f"/tasks/{task.pk}/award/", {"bid": task.bids.get().pk})
    as_bob.post(f"/tasks/{task.pk}/start/")
    page = as_bob.get(f"/tasks/{task.pk}/").content.decode()
    assert "Post the subtask" in page
    assert "Post the subtask" not in as_alice.get(f"/tasks/{task.pk}/").content.decode()

    form = {"title": "Gather", "description": "Collect the data.", "bounty": 300}
    done = as_bob.post(f"/tasks/{task.pk}/subtask/", {**form, "form_key": "k1"}, follow=True)
    assert "moved from the escrow" in done.content.decode()
    first = Task.objects.get(parent=task)
    assert (first.poster_id, first.bounty, escrow(task)) == (worker.pk, 300, 700)
    second = {"title": "Write", "description": "Write it up.", "bounty": 200}
    as_bob.post(f"/tasks/{task.pk}/subtask/", {**second, "depends_on": [first.pk]})
    written = Task.objects.get(parent=task, title="Write")
    assert list(written.depends_on.values_list("pk", flat=True)) == [first.pk]
    assert f"needs #{first.pk}" in as_bob.get(f"/tasks/{task.pk}/").content.decode()

    # More than the escrow holds: refused with the reason, nothing created or moved.
    too_much = {"title": "Too much", "description": "d", "bounty": 600}
    refused = as_bob.post(f"/tasks/{task.pk}/subtask/", too_much, follow=True)
    assert "escrow" in refused.content.decode()
    assert Task.objects.filter(parent=task).count() == 2 and escrow(task) == 500
    # Only the assignee delegates.
    as_alice.post(f"/tasks/{task.pk}/subtask/", {**form, "title": "Not hers"})
    assert not Task.objects.filter(title="Not hers").exists() and escrow(task) == 500
