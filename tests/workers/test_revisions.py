"""A revision request to a hosted agent runs it again with the poster's message: a new execution
with its own attempt and trace, which delivers again. Failed checks send it back the same way at
the end of the review window. The runs are linked from the task page, the agent's profile and
"My work", a failed run with its reason."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from agents_registry.models import Participant
from marketplace import services as market_services
from marketplace.models import Delivery, Task
from tests.workers.conftest import hosted_agent, post_task
from workers import services
from workers.models import Execution
from workers.runtimes import http
from workers.runtimes.base import Revision, RunContext, TaskBrief

pytestmark = pytest.mark.django_db

REPORT = (
    "```\nSolar output rose in spring. Wind output fell in the same months. Storage costs "
    "dropped by a third. Grid operators added two new lines. Demand stayed flat overall.\n```"
)


def _delivered_by_summariser(poster: Participant, owner: User) -> tuple[Task, Execution]:
    agent = hosted_agent(owner, "Summariser", builtin="summarizer")
    task = post_task(
        poster, bounty=200, title="Summarise the report in 3 sentences", description=REPORT
    )
    market_services.task_claim(task=task, claimant=agent.participant)
    first = Execution.objects.get(task_ref=task.pk)
    assert services.execution_run(execution_id=first.pk, at_once=True) == "succeeded"
    return Task.objects.get(pk=task.pk), first


def test_a_revision_runs_the_hosted_agent_again_with_the_posters_message(
    poster: Participant, bob: User
) -> None:
    task, first = _delivered_by_summariser(poster, bob)
    delivered = Delivery.objects.get(task=task)
    assert delivered.data["sentences_out"] == 3

    market_services.revision_request(
        delivery=delivered, actor=poster, message="Too long: give it in 1 sentence."
    )
    second = Execution.objects.exclude(pk=first.pk).get(task_ref=task.pk)
    assert (second.status, second.agent_id, second.attempts) == ("queued", first.agent_id, 0)
    assert services.execution_run(execution_id=second.pk, at_once=True) == "succeeded"

    task.refresh_from_db()
    revised = Delivery.objects.filter(task=task).order_by("-pk").first()
    assert task.state == "delivered" and revised.pk != delivered.pk
    assert revised.data["sentences_out"] == 1  # the agent read the message
    second.refresh_from_db()
    assert second.delivery_ref == revised.pk
    page = _page(poster.user, f"/tasks/{task.pk}/")
    assert f"revision of delivery #{delivered.pk}" in page
    events = list(second.events.values_list("kind", "name", "inputs"))
    assert events[1] == (
        "message",
        "revision requested",
        {"delivery": delivered.pk, "message": "Too long: give it in 1 sentence."},
    )
    kinds = list(task.events.values_list("kind", flat=True))
    assert kinds[-3:] == ["revision_requested", "started", "delivered"]


def test_failed_checks_send_a_hosted_delivery_back_and_the_agent_runs_again(
    poster: Participant, bob: User
) -> None:
    agent = hosted_agent(bob, "Stats", builtin="text-stats")
    task = post_task(poster, checks={"regex": "never in the answer"})
    market_services.task_claim(task=task, claimant=agent.participant)
    first = Execution.objects.get(task_ref=task.pk)
    services.execution_run(execution_id=first.pk, at_once=True)
    delivery = Delivery.objects.get(task=task)
    market_services.delivery_verify_run(delivery_id=delivery.pk)
    Delivery.objects.filter(pk=delivery.pk).update(review_deadline=timezone.now())

    assert market_services.deliveries_review_due() == 1
    assert Task.objects.get(pk=task.pk).state == "revision_requested"
    rerun = Execution.objects.exclude(pk=first.pk).get(task_ref=task.pk)
    assert rerun.status == "queued"
    assert services.execution_run(execution_id=rerun.pk, at_once=True) == "succeeded"
    assert Task.objects.get(pk=task.pk).state == "delivered"
    assert "regex" in rerun.events.get(name="revision requested").inputs["message"]


def test_a_waiting_run_that_delivered_through_the_api_gives_way_to_the_revision(
    poster: Participant, bob: User
) -> None:
    agent = hosted_agent(bob, "Remote", runtime="http", endpoint="https://agent.example/run")
    task = post_task(poster)
    market_services.task_claim(task=task, claimant=agent.participant)
    waiting = Execution.objects.get(task_ref=task.pk)
    Execution.objects.filter(pk=waiting.pk).update(
        status="waiting", lease_expires_at=timezone.now() + timedelta(hours=1)
    )
    market_services.task_start(task=task, actor=agent.participant)
    delivery = market_services.delivery_submit(task=task, actor=agent.participant, text="Later.")

    market_services.revision_request(delivery=delivery, actor=poster, message="Shorter.")
    waiting.refresh_from_db()
    assert (waiting.status, waiting.delivery_ref) == ("succeeded", delivery.pk)
    assert Execution.objects.filter(task_ref=task.pk, status="queued").count() == 1


def test_the_revision_travels_to_http_agents() -> None:
    brief = TaskBrief(
        task_id=7,
        title="t",
        description="d",
        revision=Revision(delivery_id=3, message="Shorter, please.", previous_text="Long."),
    )
    context = RunContext(execution_id=1, attempt=1, task=brief, agent_config={}, record=print)
    assert http.request_body(context)["revision"] == {
        "delivery_id": 3,
        "message": "Shorter, please.",
    }


def _page(user: User, path: str) -> str:
    client = Client()
    client.force_login(user)
    return client.get(path).content.decode()


def test_runs_are_linked_from_the_task_page_the_profile_and_my_work_with_a_failure_reason(
    poster: Participant, alice: User, bob: User, mallory: User
) -> None:
    task, run = _delivered_by_summariser(poster, bob)
    link = f'href="/executions/{run.pk}/"'
    assert link in _page(alice, f"/tasks/{task.pk}/")
    assert link in _page(alice, "/dashboard/")
    assert link in _page(bob, "/dashboard/")
    assert link in _page(bob, f"/agents/{run.agent.slug}/")
    assert link in _page(alice, f"/agents/{run.agent.slug}/")  # she posted the task
    for outsider_page in (f"/tasks/{task.pk}/", f"/agents/{run.agent.slug}/", "/dashboard/"):
        assert link not in _page(mallory, outsider_page)

    failing = hosted_agent(bob, "Broken", builtin="summarizer")
    short = post_task(poster, description="One sentence only.")
    market_services.task_claim(task=short, claimant=failing.participant)
    broken = Execution.objects.get(task_ref=short.pk)
    assert services.execution_run(execution_id=broken.pk, at_once=True) == "failed"
    page = _page(alice, f"/tasks/{short.pk}/")
    assert f'href="/executions/{broken.pk}/"' in page
    assert "Summarising needs a text of at least two sentences." in page


def test_a_fence_is_found_in_text_a_browser_sent() -> None:
    """A textarea's lines end in CR LF: the material is still the fenced block."""
    brief = TaskBrief(task_id=1, title="t", description="Read this:\r\n```\r\nA. B.\r\n```\r\n")
    assert brief.material == "A. B."
