"""Executions in process: award -> execution -> delivery, retries, the attempt limit, the reaper.

The queue is not involved here (no on-commit callbacks run in these transactions); the real
worker process is exercised in test_worker_process.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from agents_registry.models import Participant
from marketplace import services as market_services
from marketplace.models import Delivery, Task, TaskEvent
from tests.workers.conftest import hosted_agent, post_task
from workers import services
from workers.exceptions import TransientRuntimeError
from workers.models import Execution, OutboxMessage, TraceEvent
from workers.runtimes import builtin
from workers.services import executions as executions_module

pytestmark = pytest.mark.django_db


def claimed_by(poster: Participant, agent: object, **fields: object) -> Task:
    task = post_task(poster, **fields)
    return market_services.task_claim(task=task, claimant=agent.participant)


def test_an_award_to_a_builtin_agent_creates_one_queued_execution(
    poster: Participant, bob: User
) -> None:
    agent = hosted_agent(bob, "Stats", builtin="text-stats")
    task = claimed_by(poster, agent, bounty=120)
    execution = Execution.objects.get(task_ref=task.pk)
    assert (execution.agent_id, execution.status, execution.attempts) == (agent.pk, "queued", 0)
    assert execution.budget == 120
    assert execution.max_attempts == 3
    assert execution.lease_expires_at > timezone.now() + timedelta(seconds=50)


def test_the_claim_loads_the_execution_as_the_orm_does(poster: Participant, bob: User) -> None:
    """``execution_with_agent`` (a prepared statement) builds what
    ``select_related("agent__participant")`` builds."""
    from workers.selectors import execution_with_agent

    def values(instance: object) -> dict:
        return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}

    agent = hosted_agent(bob, "Stats", builtin="text-stats", max_attempts=2)
    execution = Execution.objects.get(task_ref=claimed_by(poster, agent).pk)
    expected = Execution.objects.select_related("agent__participant").get(pk=execution.pk)
    loaded = execution_with_agent(execution.pk)
    assert values(loaded) == values(expected)
    assert values(loaded.agent) == values(expected.agent)
    assert loaded.agent.runtime_config == {"builtin": "text-stats", "max_attempts": 2}
    assert values(loaded.agent.participant) == values(expected.agent.participant)
    assert execution_with_agent(10**9) is None


def test_an_award_to_an_external_agent_or_a_human_creates_none(
    poster: Participant, bob: User
) -> None:
    external = hosted_agent(bob, "External", runtime="external")
    claimed_by(poster, external)
    from tests.conftest import participant_of

    market_services.task_claim(task=post_task(poster), claimant=participant_of(bob))
    assert Execution.objects.count() == 0


def test_running_delivers_once_and_a_second_message_changes_nothing(
    poster: Participant, bob: User
) -> None:
    agent = hosted_agent(bob, "Stats", builtin="text-stats")
    task = claimed_by(poster, agent)
    execution = Execution.objects.get(task_ref=task.pk)

    assert services.execution_run(execution_id=execution.pk, worker="w1") == "succeeded"
    assert services.execution_run(execution_id=execution.pk, worker="w2") == "skipped"

    execution.refresh_from_db()
    delivery = Delivery.objects.get(task_id=task.pk)
    assert (execution.status, execution.attempts, execution.delivery_ref) == (
        "succeeded",
        1,
        delivery.pk,
    )
    assert execution.worker == "w1"
    assert delivery.data["words"] == 12
    assert delivery.idempotency_key == f"execution-{execution.pk}"
    assert Task.objects.get(pk=task.pk).state == "delivered"
    kinds = list(execution.events.values_list("sequence", "kind", "name"))
    assert kinds == [
        (1, "decision", "attempt started"),
        (2, "tool_call", "builtin:text-stats"),
        (3, "message", "result"),
        (4, "message", "delivered"),
    ]
    assert execution.trace_length == 4


class WorkerDied(BaseException):
    """The worker's death as seen from inside the attempt: nothing of ours catches it, and the
    transaction it was in rolls back (as PostgreSQL does when the connection dies)."""


def _message(execution: Execution, *, redelivered: bool) -> str:
    """The Celery task as the worker runs the award's message (``at_once``), first delivered or
    back after its worker died (kombu marks it redelivered)."""
    from workers.tasks import execution_run_task

    execution_run_task.push_request(delivery_info={"redelivered": redelivered})
    try:
        return execution_run_task.run(execution_id=execution.pk, at_once=True)
    finally:
        execution_run_task.pop_request()


def test_the_awards_message_runs_a_builtin_agent_at_once(
    poster: Participant, bob: User, django_capture_on_commit_callbacks: object
) -> None:
    """Only a built-in agent's award sends ``at_once``; the attempt claims, starts and delivers
    in one transaction, and the timeline still shows both steps."""
    from workers.celery import app as celery_app

    builtin_agent = hosted_agent(bob, "Stats", builtin="text-stats")
    http_agent = hosted_agent(bob, "Remote", runtime="http", endpoint="https://agent.example/run")
    sent: list[dict] = []
    original = celery_app.send_task
    celery_app.send_task = lambda name, **kwargs: sent.append((name, kwargs["kwargs"]))
    try:
        with django_capture_on_commit_callbacks(execute=True):
            task = claimed_by(poster, builtin_agent)
            remote = claimed_by(poster, http_agent)
    finally:
        celery_app.send_task = original
    execution = Execution.objects.get(task_ref=task.pk)
    assert [kwargs for name, kwargs in sent if name == "workers.execution_run"] == [
        {"execution_id": execution.pk, "at_once": True},
        {"execution_id": Execution.objects.get(task_ref=remote.pk).pk},
    ]

    assert _message(execution, redelivered=False) == "succeeded"
    assert _message(execution, redelivered=False) == "skipped"
    execution.refresh_from_db()
    delivery = Delivery.objects.get(task_id=task.pk)
    assert (execution.status, execution.attempts, execution.delivery_ref) == (
        "succeeded",
        1,
        delivery.pk,
    )
    assert execution.started_at <= execution.finished_at
    assert Task.objects.get(pk=task.pk).state == "delivered"
    timeline = TaskEvent.objects.filter(task_id=task.pk).order_by("pk")
    assert list(timeline.values_list("kind", flat=True))[-2:] == ["started", "delivered"]
    assert list(execution.events.values_list("sequence", "name")) == [
        (1, "attempt started"),
        (2, "builtin:text-stats"),
        (3, "result"),
        (4, "delivered"),
    ]


def test_a_worker_dying_at_once_leaves_nothing_and_deaths_after_are_the_platforms_bounded(
    poster: Participant, bob: User, monkeypatch: pytest.MonkeyPatch, settings
) -> None:
    """At once, the claim commits with the delivery or not at all, so a death in the middle
    leaves the execution as it was. The message comes back redelivered and runs the two
    transactions way: the claim commits before the agent runs. A worker that dies then stops
    its heartbeat, so the reaper sees the platform's failure: the attempt is given back to the
    agent, up to ``WORKERS_MAX_PLATFORM_FAILURES`` (never a loop); then the task goes back to
    the market with no outcome against the agent and no bar, and the timeline says why."""
    from agents_registry.models import Outcome

    settings.WORKERS_MAX_PLATFORM_FAILURES = 1
    agent = hosted_agent(bob, "Stats", builtin="text-stats", max_attempts=1)
    task = claimed_by(poster, agent)
    execution = Execution.objects.get(task_ref=task.pk)

    def dies(context: object) -> None:
        raise WorkerDied

    monkeypatch.setattr(builtin, "run", dies)
    with pytest.raises(WorkerDied):
        _message(execution, redelivered=False)
    execution.refresh_from_db()
    assert (execution.status, execution.attempts, execution.trace_length) == ("queued", 0, 0)
    assert Task.objects.get(pk=task.pk).state == "awarded"

    later = timezone.now()
    for platform_failures, outcome in [(1, "requeued"), (1, "failed")]:
        with pytest.raises(WorkerDied):
            _message(execution, redelivered=True)
        execution.refresh_from_db()
        assert (execution.status, execution.attempts) == ("running", 1)
        assert Task.objects.get(pk=task.pk).state == "in_progress"
        later += timedelta(seconds=settings.WORKERS_HEARTBEAT_LEASE_SECONDS + 1)
        assert services.executions_reap(now=later) == {outcome: 1}
        execution.refresh_from_db()
        assert (execution.error_code, execution.platform_failures) == (
            "platform_failure",
            platform_failures,
        )
    assert (execution.status, execution.attempts) == ("failed", 1)
    task = Task.objects.get(pk=task.pk)
    assert (task.state, task.barred) == ("open", [])
    assert not Outcome.objects.filter(agent=agent).exists()
    abandoned = TaskEvent.objects.get(task_id=task.pk, kind="abandoned")
    assert (abandoned.actor_id, abandoned.data["by_platform"]) == (None, True)
    assert "not the agent's" in abandoned.data["reason"]
    from marketplace.templatetags.market import event_sentence

    assert event_sentence(abandoned).startswith(
        "Returned to the market by the platform, not the agent's failure: The platform gave up"
    )
    assert Delivery.objects.filter(task_id=task.pk).count() == 0


def test_the_end_of_an_attempt_at_once_writes_its_claim(
    poster: Participant, bob: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At once the claim writes nothing: the statement that ends the attempt writes what of the
    claim lasts (the attempt's count, the worker, the times), leaves the token nobody saw
    unwritten, and gives an attempt lost to the platform back over the claim's count."""
    from django.db import OperationalError

    agent = hosted_agent(bob, "Stats", builtin="text-stats")
    execution = Execution.objects.get(task_ref=claimed_by(poster, agent).pk)
    before = timezone.now()
    assert services.execution_run(execution_id=execution.pk, worker="w1", at_once=True) == (
        "succeeded"
    )
    execution.refresh_from_db()
    assert (execution.attempts, execution.worker, execution.claim_token) == (1, "w1", None)
    assert before <= execution.started_at == execution.last_attempt_at <= execution.finished_at

    def database_gone(context: object) -> None:
        raise OperationalError("the server closed the connection")

    monkeypatch.setattr(builtin, "run", database_gone)
    lost = Execution.objects.get(task_ref=claimed_by(poster, agent).pk)
    assert services.execution_run(execution_id=lost.pk, worker="w2", at_once=True) == "retrying"
    lost.refresh_from_db()
    assert (lost.status, lost.attempts, lost.platform_failures) == ("queued", 0, 1)
    assert (lost.worker, lost.claim_token, lost.error_code) == ("w2", None, "platform_failure")
    assert before <= lost.started_at == lost.last_attempt_at


@pytest.mark.parametrize(
    ("error", "outcome", "task_state"),
    [
        (TransientRuntimeError("the endpoint is down"), "retrying", "awarded"),
        (builtin.RuntimeFailure("bad input"), "failed", "open"),
    ],
)
def test_a_failure_at_once_is_an_attempt_like_any_other(
    poster: Participant,
    bob: User,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    outcome: str,
    task_state: str,
) -> None:
    agent = hosted_agent(bob, "Stats", builtin="text-stats", max_attempts=2)
    task = claimed_by(poster, agent)
    execution = Execution.objects.get(task_ref=task.pk)

    def fails(context: object) -> None:
        raise error

    monkeypatch.setattr(builtin, "run", fails)
    assert services.execution_run(execution_id=execution.pk, at_once=True) == outcome
    execution.refresh_from_db()
    assert (execution.status, execution.attempts) == (
        "queued" if outcome == "retrying" else "failed",
        1,
    )
    assert execution.error_message == str(error)
    assert list(execution.events.values_list("kind", flat=True)) == ["decision", "error"]
    assert Task.objects.get(pk=task.pk).state == task_state


def test_a_market_refusal_at_once_fails_the_execution_and_leaves_the_task(
    poster: Participant, bob: User
) -> None:
    agent = hosted_agent(bob, "Stats", builtin="text-stats")
    task = claimed_by(poster, agent)
    execution = Execution.objects.get(task_ref=task.pk)
    market_services.task_cancel(task=task, actor=poster)
    assert services.execution_run(execution_id=execution.pk, at_once=True) == "failed"
    execution.refresh_from_db()
    assert (execution.status, execution.attempts) == ("failed", 1)
    assert execution.error_message.startswith("The market refused the delivery")
    assert Task.objects.get(pk=task.pk).state == "cancelled"
    assert Delivery.objects.filter(task_id=task.pk).count() == 0


def test_a_stale_worker_cannot_deliver_after_the_reaper_took_its_attempt(
    poster: Participant, bob: User
) -> None:
    agent = hosted_agent(bob, "Stats", builtin="text-stats")
    task = claimed_by(poster, agent)
    execution = services.execution_claim(
        execution_id=Execution.objects.get(task_ref=task.pk).pk, worker="slow"
    )
    Execution.objects.filter(pk=execution.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert services.executions_reap() == {"requeued": 1}

    result = builtin.RunResult(text="late")
    context = builtin.RunContext(
        execution_id=execution.pk, attempt=1, task=None, agent_config={}, record=print
    )
    outcome = services.execution_complete(
        execution_id=execution.pk, token=execution.claim_token, result=result, context=context
    )
    assert outcome == "stale"
    assert Delivery.objects.filter(task_id=task.pk).count() == 0

    assert services.execution_run(execution_id=execution.pk, worker="fresh") == "succeeded"
    execution.refresh_from_db()
    # The slow worker's heartbeat had stopped: the platform's failure, the attempt given back.
    assert (execution.attempts, execution.platform_failures, execution.status) == (
        1,
        1,
        "succeeded",
    )
    assert Delivery.objects.filter(task_id=task.pk).count() == 1
    errors = execution.events.filter(kind="error").values_list("name", "attempt")
    assert list(errors) == [("platform_failure", 1)]


def test_a_transient_failure_is_retried_then_fails_at_the_limit_and_returns_the_task(
    poster: Participant, bob: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def flaky(context: object) -> None:
        calls.append(context.attempt)
        raise TransientRuntimeError("the endpoint is down")

    agent = hosted_agent(bob, "Flaky", builtin="no-op", max_attempts=2)
    task = claimed_by(poster, agent)
    execution = Execution.objects.get(task_ref=task.pk)
    monkeypatch.setattr(builtin, "run", flaky)

    assert services.execution_run(execution_id=execution.pk) == "retrying"
    execution.refresh_from_db()
    assert (execution.status, execution.attempts, execution.error_code) == (
        "queued",
        1,
        "runtime_unavailable",
    )
    assert execution.claim_token is None
    assert services.execution_run(execution_id=execution.pk) == "failed"
    assert services.execution_run(execution_id=execution.pk) == "skipped"
    assert calls == [1, 2]

    execution.refresh_from_db()
    assert (execution.status, execution.attempts) == ("failed", 2)
    assert execution.error_message == "the endpoint is down"
    task.refresh_from_db()
    assert (task.state, task.assignee_id) == ("open", None)
    assert agent.participant.pk in task.barred
    assert Delivery.objects.filter(task_id=task.pk).count() == 0
    assert agent.outcomes.get().outcome == "abandoned"


def test_a_permanent_failure_fails_at_once(poster: Participant, bob: User) -> None:
    agent = hosted_agent(bob, "Summary", builtin="summarizer")
    task = claimed_by(poster, agent, description="Just one sentence.")
    execution = Execution.objects.get(task_ref=task.pk)
    assert services.execution_run(execution_id=execution.pk) == "failed"
    execution.refresh_from_db()
    assert (execution.status, execution.attempts, execution.error_code) == (
        "failed",
        1,
        "runtime_failed",
    )
    assert Task.objects.get(pk=task.pk).state == "open"


def test_a_run_over_budget_stops_and_says_why(poster: Participant, bob: User) -> None:
    agent = hosted_agent(bob, "Pricey", builtin="text-stats", price_per_run=500)
    task = claimed_by(poster, agent, bounty=100)
    execution = Execution.objects.get(task_ref=task.pk)
    assert services.execution_run(execution_id=execution.pk) == "failed"
    execution.refresh_from_db()
    assert execution.error_code == "budget_exceeded"
    assert "would cost 500 credits, over the task's budget of 100" in execution.error_message
    assert execution.cost == 0


def test_the_reaper_resends_a_queued_execution_whose_message_was_lost(
    poster: Participant, bob: User, django_capture_on_commit_callbacks: object
) -> None:
    agent = hosted_agent(bob, "Stats", builtin="text-stats")
    task = claimed_by(poster, agent)
    execution = Execution.objects.get(task_ref=task.pk)
    assert services.executions_reap() == {}
    later = timezone.now() + timedelta(seconds=301)
    # Still in the outbox (the broker was down): the relay sends it, the reaper adds none.
    assert services.executions_reap(now=later) == {"in_outbox": 1}
    assert OutboxMessage.objects.filter(kwargs__execution_id=execution.pk).count() == 1
    # Sent, then lost with a dead worker's prefetch: the reaper sends it again.
    OutboxMessage.objects.update(sent_at=timezone.now())
    later += timedelta(seconds=301)
    sent: list[dict] = []
    from workers.celery import app as celery_app

    original = celery_app.send_task
    celery_app.send_task = lambda name, **kwargs: sent.append({"name": name, **kwargs})
    try:
        with django_capture_on_commit_callbacks(execute=True):
            assert services.executions_reap(now=later) == {"resent": 1}
    finally:
        celery_app.send_task = original
    assert sent == [
        {
            "name": "workers.execution_run",
            "kwargs": {"execution_id": execution.pk},
            "countdown": None,
            "soft_time_limit": 120,
            "time_limit": 150,
            "retry_policy": {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        }
    ]


def test_an_attempt_that_runs_to_its_time_limit_is_the_agents_failure(
    poster: Participant, bob: User
) -> None:
    """A heartbeat that kept the lease until the attempt's limit means the worker lived and the
    agent hung: that attempt counts, and at the limit the task goes back with the agent barred."""
    agent = hosted_agent(bob, "Stats", builtin="text-stats", max_attempts=1)
    task = claimed_by(poster, agent)
    execution = services.execution_claim(
        execution_id=Execution.objects.get(task_ref=task.pk).pk, worker="hung"
    )
    assert execution.lease_expires_at < execution.last_attempt_at + services.lease_for(agent)
    limit = execution.last_attempt_at + services.lease_for(agent)
    Execution.objects.filter(pk=execution.pk).update(lease_expires_at=limit)  # beats to the end
    assert services.executions_reap() == {}  # the lease still runs
    assert services.executions_reap(now=limit + timedelta(seconds=1)) == {"failed": 1}
    execution.refresh_from_db()
    assert (execution.status, execution.error_code, execution.platform_failures) == (
        "failed",
        "lease_expired",
        0,
    )
    task = Task.objects.get(pk=task.pk)
    assert (task.state, task.barred) == ("open", [agent.participant.pk])


def test_a_heartbeat_renews_the_lease_of_its_own_claim_only(
    poster: Participant, bob: User, settings
) -> None:
    agent = hosted_agent(bob, "Stats", builtin="text-stats")
    task = claimed_by(poster, agent)
    execution = services.execution_claim(
        execution_id=Execution.objects.get(task_ref=task.pk).pk, worker="alive"
    )
    settings.WORKERS_HEARTBEAT_LEASE_SECONDS = 100
    heartbeat = executions_module._Heartbeat(execution)
    assert heartbeat.beat() is True
    renewed = Execution.objects.get(pk=execution.pk).lease_expires_at
    assert renewed > timezone.now() + timedelta(seconds=90)
    settings.WORKERS_HEARTBEAT_LEASE_SECONDS = 10_000  # never past the attempt's limit
    assert heartbeat.beat() is True
    assert Execution.objects.get(pk=execution.pk).lease_expires_at == (
        execution.last_attempt_at + services.lease_for(agent)
    )
    Execution.objects.filter(pk=execution.pk).update(claim_token=None)  # the reaper took it
    assert heartbeat.beat() is False


def test_time_limits_come_from_the_agent_within_the_caps(bob: User) -> None:
    agent = hosted_agent(bob, "Quick", soft_time_limit_seconds=5, hard_time_limit_seconds=7)
    assert services.time_limits_for(agent) == (5, 7)
    assert services.lease_for(agent) == timedelta(seconds=37)
    greedy = hosted_agent(bob, "Greedy", soft_time_limit_seconds=99999, hard_time_limit_seconds=1)
    assert services.time_limits_for(greedy) == (1799, 1800)


def test_backoff_grows_with_jitter(settings: object) -> None:
    settings.WORKERS_RETRY_BACKOFF_SECONDS = 2.0
    settings.WORKERS_RETRY_BACKOFF_MAX_SECONDS = 10.0
    for attempt, (low, high) in {1: (1, 2), 2: (2, 4), 3: (4, 8), 6: (5, 10)}.items():
        delays = {services.retry_delay_seconds(attempt) for _ in range(50)}
        assert all(low <= delay <= high for delay in delays)
        assert len(delays) > 1


def test_trace_events_are_numbered_in_order_and_closed_when_final(
    poster: Participant, bob: User
) -> None:
    agent = hosted_agent(bob, "Stats", builtin="text-stats")
    task = claimed_by(poster, agent)
    execution = Execution.objects.get(task_ref=task.pk)
    event = services.trace_event_append(
        execution_id=execution.pk, kind="message", name="hello", source="agent", require_active=True
    )
    assert (event.sequence, event.attempt) == (1, 0)
    services.execution_run(execution_id=execution.pk)
    from workers.exceptions import ExecutionFinished, WorkersError

    with pytest.raises(ExecutionFinished, match="is succeeded: its trace is closed"):
        services.trace_event_append(execution_id=execution.pk, kind="message", require_active=True)
    with pytest.raises(WorkersError, match="Unknown event kind 'thought'"):
        services.trace_event_append(execution_id=execution.pk, kind="thought")
    with pytest.raises(WorkersError, match="cost must be a non-negative integer"):
        services.trace_event_append(execution_id=execution.pk, kind="message", cost=-1)
    assert TraceEvent.objects.filter(execution=execution).count() == 5


def test_builtin_agents_are_registered_once_with_honest_profiles(bob: User) -> None:
    from tests.conftest import participant_of

    owner = participant_of(bob)
    first = services.builtin_agents_ensure(owner=owner)
    again = services.builtin_agents_ensure(owner=owner)
    assert [agent.pk for agent in first] == [agent.pk for agent in again]
    assert [agent.slug for agent in first] == [
        "builtin-text-stats",
        "builtin-json-csv",
        "builtin-summarizer",
        "builtin-verifier",
    ]
    profile = first[2].profiles.get(is_current=True)
    assert profile.description.startswith("Summarises reports, articles, meeting notes")
    assert profile.limitations.startswith("Extractive: it never rephrases")
    assert first[0].runtime_config["builtin"] == "text-stats"


def test_the_admin_lists_executions_read_only(
    poster: Participant, bob: User, client_for: object, staff: User
) -> None:
    agent = hosted_agent(bob, "Stats", builtin="text-stats")
    task = claimed_by(poster, agent)
    execution = Execution.objects.get(task_ref=task.pk)
    services.execution_run(execution_id=execution.pk)
    client = client_for(staff)
    staff.is_superuser = True
    staff.save()
    listing = client.get("/admin/workers/execution/")
    assert listing.status_code == 200
    assert f"/executions/{execution.pk}/" in listing.content.decode()
    detail = client.get(f"/admin/workers/execution/{execution.pk}/change/")
    assert detail.status_code == 200
    assert "builtin:text-stats" in detail.content.decode()


def test_the_soft_time_limit_is_a_transient_failure(
    poster: Participant, bob: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    def too_slow(context: object) -> None:
        raise SoftTimeLimitExceeded()

    agent = hosted_agent(bob, "Slow", builtin="no-op", soft_time_limit_seconds=4)
    task = claimed_by(poster, agent)
    execution = Execution.objects.get(task_ref=task.pk)
    monkeypatch.setattr(builtin, "run", too_slow)
    assert services.execution_run(execution_id=execution.pk) == "retrying"
    execution.refresh_from_db()
    assert execution.error_message == "The attempt passed its soft time limit of 4 s."


def test_a_bug_in_a_runtime_fails_visibly_without_retrying(
    poster: Participant, bob: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(context: object) -> None:
        raise KeyError("oops")

    agent = hosted_agent(bob, "Broken", builtin="no-op")
    task = claimed_by(poster, agent)
    execution = Execution.objects.get(task_ref=task.pk)
    monkeypatch.setattr(builtin, "run", broken)
    assert services.execution_run(execution_id=execution.pk) == "failed"
    execution.refresh_from_db()
    assert (execution.error_code, execution.error_message, execution.attempts) == (
        "internal_error",
        "KeyError: 'oops'",
        1,
    )


def test_an_http_agent_that_accepts_delivers_later_and_the_reaper_closes_the_execution(
    poster: Participant, bob: User, settings: object, httpserver: object
) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = [f"127.0.0.1:{httpserver.port}"]
    httpserver.expect_request("/accept").respond_with_data("", status=202)
    agent = hosted_agent(bob, "Async", runtime="http", endpoint=httpserver.url_for("/accept"))
    services.webhook_secret_rotate(agent=agent)
    task = claimed_by(poster, agent)
    execution = Execution.objects.get(task_ref=task.pk)
    assert services.execution_run(execution_id=execution.pk) == "waiting"
    assert services.executions_reap() == {"waiting": 1}

    delivery = market_services.delivery_submit(
        task=Task.objects.get(pk=task.pk), actor=agent.participant, text="later"
    )
    assert services.executions_reap() == {"succeeded": 1}
    execution.refresh_from_db()
    assert (execution.status, execution.delivery_ref) == ("succeeded", delivery.pk)
    assert services.executions_reap() == {}
