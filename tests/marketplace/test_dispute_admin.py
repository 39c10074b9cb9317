"""Resolving a dispute is a staff page with its context beside it: the escrow, the price, the
most the assignee may get, the delivery and both sides. A bad share is an error that changes
nothing (never "changed successfully" beside it), an empty form is refused, a resolved dispute
cannot be resolved again, and no dispute can be edited or deleted."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.test import Client

from agents_registry.models import Participant
from marketplace.models import Dispute, StaffAction
from tests.marketplace.conftest import available, escrow, walk_to


def staff_client(staff: User) -> Client:
    client = Client()
    client.force_login(staff)
    return client


def _money(poster: Participant, worker: Participant, task) -> tuple[int, int, int]:
    return available(poster), available(worker), escrow(task)


def test_the_resolve_page_shows_the_context_and_refuses_bad_shares(
    poster: Participant, worker: Participant, staff: User
) -> None:
    task = walk_to("disputed", poster=poster, worker=worker)
    dispute = Dispute.objects.get(task=task)
    client = staff_client(staff)
    url = f"/admin/marketplace/dispute/{dispute.pk}/resolve/"
    page = client.get(url).content.decode()
    for shown in (
        'id="dispute-escrow"><strong>1000',
        'id="dispute-most"><strong>800',
        "Price",
        "Done: three bullets.",
        "Not what I asked.",
    ):
        assert shown in page, shown
    before = _money(poster, worker, task)

    for form, error in (
        ({"assignee_share": 801, "note": "too much"}, "less than or equal to 800"),
        ({"assignee_share": -1, "note": "negative"}, "greater than or equal to 0"),
        ({"assignee_share": "", "note": ""}, "This field is required"),
    ):
        response = client.post(url, form)
        body = response.content.decode()
        assert response.status_code == 400 and error in body, form
        assert "resolved:" not in body and "successfully" not in body
        assert _money(poster, worker, task) == before
        assert Dispute.objects.get(pk=dispute.pk).status == "open"

    done = client.post(url, {"assignee_share": 300, "note": "Half done."}, follow=True)
    body = done.content.decode()
    assert "resolved: 300 credits to the assignee, 700 refunded" in body
    assert "successfully" not in body
    assert _money(poster, worker, task) == (before[0] + 700, before[1] + 300, 0)
    assert StaffAction.objects.get(action="dispute_resolve").staff_user == staff

    again = client.post(url, {"assignee_share": 0, "note": "again"}, follow=True)
    assert "resolved already" in again.content.decode()
    assert _money(poster, worker, task) == (before[0] + 700, before[1] + 300, 0)


def test_disputes_can_be_neither_edited_nor_deleted(
    poster: Participant, worker: Participant, staff: User
) -> None:
    staff.is_superuser = True
    staff.save()
    task = walk_to("disputed", poster=poster, worker=worker)
    dispute = Dispute.objects.get(task=task)
    client = staff_client(staff)
    listing = client.get("/admin/marketplace/dispute/").content.decode()
    assert f"/admin/marketplace/dispute/{dispute.pk}/resolve/" in listing
    change = client.get(f"/admin/marketplace/dispute/{dispute.pk}/change/").content.decode()
    assert "Resolve this dispute" in change
    assert "deletelink" not in change and 'name="_save"' not in change
    assert (
        client.post(f"/admin/marketplace/dispute/{dispute.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    edit = client.post(f"/admin/marketplace/dispute/{dispute.pk}/change/", {"status": "resolved"})
    assert edit.status_code == 403
    assert Dispute.objects.get(pk=dispute.pk).status == "open"
    assert client.get(f"/admin/marketplace/task/{task.pk}/change/").status_code == 200


def test_the_task_page_links_staff_to_the_resolve_page(
    poster: Participant, worker: Participant, staff: User, mallory: User
) -> None:
    task = walk_to("disputed", poster=poster, worker=worker)
    dispute = Dispute.objects.get(task=task)
    link = f'href="/admin/marketplace/dispute/{dispute.pk}/resolve/"'
    assert link in staff_client(staff).get(f"/tasks/{task.pk}/").content.decode()
    assert link not in staff_client(mallory).get(f"/tasks/{task.pk}/").content.decode()
    outsider = staff_client(mallory).get(f"/admin/marketplace/dispute/{dispute.pk}/resolve/")
    assert outsider.status_code == 302 and "/admin/login/" in outsider["Location"]
