"""Writes of executions: create on award, claim, run, complete, retry, fail, reap.

The exactly-once argument (see ``workers/models.py``): a claim is a conditional UPDATE that only
one worker wins (or, at once, a row lock held to the end); the effects (the delivery with its
idempotency key, the cost, the final state) are written in one transaction that holds the
execution row's lock and checks the claim token.
Locks are taken execution first, then the market's task row (inside the market's services),
everywhere, so the worker and the reaper cannot deadlock.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    connection,
    connections,
    transaction,
)
from django.db.models import Q
from django.utils import timezone

from agents_registry.models import Agent, Participant, SkillVersion
from agents_registry.sweeps import sweep
from core.prepared import derived_from_models, fetch_row, model_field, update_row
from marketplace import selectors as market_selectors
from marketplace import services as market_services
from marketplace.exceptions import MarketError, NotFound
from marketplace.models import Task
from workers.exceptions import (
    BudgetExceeded,
    DeliveryTimedOut,
    InternalError,
    LeaseExpired,
    PlatformFailure,
    RuntimeFailure,
    TransientRuntimeError,
)
from workers.live import execution_changed_on_commit
from workers.models import Execution, TraceEvent
from workers.runtimes import a2a, builtin, http, openai
from workers.runtimes.base import Revision, RunContext, RunResult, TaskBrief
from workers.selectors import execution_with_agent
from workers.services.outbox import outbox_send_on_commit, outbox_unsent
from workers.services.secrets import api_key_stored, webhook_secrets_valid
from workers.services.traces import (
    BufferedTrace,
    trace_event_append,
    trace_event_rows,
    trace_recorder,
)

logger = logging.getLogger(__name__)

HOSTED_RUNTIMES = (
    Agent.Runtime.HTTP,
    Agent.Runtime.OPENAI,
    Agent.Runtime.BUILTIN,
    Agent.Runtime.A2A,
)
EXECUTION_RUN_TASK = "workers.execution_run"


def _skill_texts(agent: Agent) -> list[str]:
    """The prompt texts of the skill versions an openai agent declares (``"skills": [ids]``)."""
    wanted = [pk for pk in (agent.runtime_config or {}).get("skills", []) if isinstance(pk, int)]
    if not wanted:
        return []
    versions = SkillVersion.objects.filter(pk__in=wanted).select_related("skill").order_by("pk")
    return [
        f"{version.skill.title} (v{version.version}): "
        + str((version.body or {}).get("text") or version.summary)
        for version in versions
    ]


def _runtime_for(agent: Agent) -> Callable[[RunContext], RunResult]:
    if agent.runtime == Agent.Runtime.OPENAI:
        return partial(openai.run, skills=_skill_texts(agent))
    runners: dict[str, Callable[[RunContext], RunResult]] = {
        Agent.Runtime.BUILTIN: builtin.run,
        Agent.Runtime.HTTP: http.run,
        Agent.Runtime.A2A: a2a.run,
    }
    return runners[agent.runtime]


def time_limits_for(agent: Agent) -> tuple[int, int]:
    """(soft, hard) seconds for one attempt of ``agent``: its own limits, capped by the settings."""
    config = agent.runtime_config or {}
    cap = settings.WORKERS_MAX_TIME_LIMIT_SECONDS
    soft = int(config.get("soft_time_limit_seconds", settings.WORKERS_SOFT_TIME_LIMIT_SECONDS))
    hard = int(config.get("hard_time_limit_seconds", settings.WORKERS_HARD_TIME_LIMIT_SECONDS))
    soft = max(1, min(soft, cap - 1))
    hard = max(soft + 1, min(hard, cap))
    return soft, hard


def lease_for(agent: Agent) -> timedelta:
    """The longest an attempt of ``agent`` may hold its execution: its hard limit plus a margin."""
    return timedelta(seconds=time_limits_for(agent)[1] + settings.WORKERS_LEASE_MARGIN_SECONDS)


def _running_lease(agent: Agent, *, attempt_started: Any, now: Any) -> Any:
    """A running attempt's lease: a heartbeat lease from ``now``, never past its time limit."""
    beat = now + timedelta(seconds=settings.WORKERS_HEARTBEAT_LEASE_SECONDS)
    return min(beat, attempt_started + lease_for(agent))


class _Heartbeat:
    """Renews a running attempt's lease from a thread of its own (with its own database
    connection) while the agent runs, so that when the worker dies the lease ends a heartbeat
    lease later, not a time limit later. A beat never waits for the row: when it is locked (the
    attempt is being closed, or the reaper has it) the beat is skipped."""

    def __init__(self, execution: Execution) -> None:
        self.execution = execution
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"heartbeat-{execution.pk}")

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopped.set()
        self.thread.join()

    def _run(self) -> None:
        try:
            while not self.stopped.wait(settings.WORKERS_HEARTBEAT_INTERVAL_SECONDS):
                try:
                    self.beat()
                except DatabaseError as error:  # the next beat tries again
                    logger.warning("heartbeat of execution %s: %s", self.execution.pk, error)
        finally:
            connections.close_all()  # this thread's connections only

    def beat(self) -> bool:
        execution = self.execution
        with transaction.atomic():
            held = (
                Execution.objects.select_for_update(skip_locked=True)
                .filter(
                    pk=execution.pk,
                    status=Execution.Status.RUNNING,
                    claim_token=execution.claim_token,
                )
                .values_list("pk", flat=True)
            )
            if not held:
                return False
            lease = _running_lease(
                execution.agent, attempt_started=execution.last_attempt_at, now=timezone.now()
            )
            return bool(Execution.objects.filter(pk=execution.pk).update(lease_expires_at=lease))


def retry_delay_seconds(attempt: int) -> float:
    """Exponential backoff with full jitter: spreads retries of many executions that failed
    together (an endpoint that went down) instead of stampeding it again in lockstep."""
    ceiling = min(
        settings.WORKERS_RETRY_BACKOFF_MAX_SECONDS,
        settings.WORKERS_RETRY_BACKOFF_SECONDS * (2 ** max(0, attempt - 1)),
    )
    return random.uniform(ceiling / 2, ceiling)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --- queueing ---------------------------------------------------------------------------------


def execution_enqueue(
    *, execution_id: int, agent: Agent, countdown: float = 0, at_once: bool = False
) -> None:
    """Queue the message that runs the execution, in the current transaction (the outbox): it
    leaves after the commit, or as soon as the broker answers again. By task name, so this
    module need not import the Celery entry points that call it. ``at_once``: see
    :func:`execution_run`."""
    soft, hard = time_limits_for(agent)
    kwargs: dict[str, Any] = {"execution_id": execution_id}
    if at_once:
        kwargs["at_once"] = True
    outbox_send_on_commit(
        EXECUTION_RUN_TASK,
        kwargs=kwargs,
        countdown=countdown,
        soft_time_limit=soft,
        time_limit=hard,
    )


def _enqueue_on_commit(
    execution: Execution, *, countdown: float = 0, at_once: bool = False
) -> None:
    execution_enqueue(
        execution_id=execution.pk, agent=execution.agent, countdown=countdown, at_once=at_once
    )


def execution_create_for_award(*, task: Any, assignee: Participant) -> Execution | None:
    """The market's award hook: start an execution when the assignee is a hosted agent.

    Runs inside the award's transaction, so the execution exists if and only if the award
    committed; the message is sent on commit.
    """
    if assignee.kind != Participant.Kind.AGENT:
        return None
    agent = assignee.agent
    if agent.runtime not in HOSTED_RUNTIMES:
        return None
    now = timezone.now()
    config = agent.runtime_config or {}
    execution = Execution.objects.create(
        task_ref=task.pk,
        agent=agent,
        budget=task.price or 0,
        max_attempts=max(1, int(config.get("max_attempts", settings.WORKERS_MAX_ATTEMPTS))),
        queued_at=now,
        lease_expires_at=now + timedelta(seconds=settings.WORKERS_QUEUE_LEASE_SECONDS),
    )
    # Only the award's own message may run a built-in agent at once (see execution_run).
    _enqueue_on_commit(execution, at_once=agent.runtime == Agent.Runtime.BUILTIN)
    execution_changed_on_commit(execution_id=execution.pk, kind="queued", urgent=True)
    return execution


def execution_create_for_revision(*, task: Any, delivery_id: int, message: str) -> Execution | None:
    """The market's revision hook: a hosted assignee runs again, as a new execution of its own
    (its own attempts and trace), whose brief carries the poster's message (read from the
    revised delivery when the run starts). Inside the revision request's transaction, like the
    award's hook, so the run exists if and only if the request committed."""
    assignee = task.assignee
    if assignee is None or assignee.kind != Participant.Kind.AGENT:
        return None
    # An agent that accepted the task and delivered through the API leaves its execution
    # waiting until the reaper sees the delivery: close it now (one live execution per task).
    # SKIP LOCKED: the reaper locks executions before tasks, this request holds the task.
    for waiting in Execution.objects.select_for_update(skip_locked=True).filter(
        task_ref=task.pk, status=Execution.Status.WAITING
    ):
        waiting.agent = assignee.agent
        _reap_waiting(waiting, timezone.now())
    if Execution.objects.filter(task_ref=task.pk, status__in=Execution.ACTIVE_STATUSES).exists():
        logger.warning(
            "task %s: a run is still live, so the revision of delivery %s starts none",
            task.pk,
            delivery_id,
        )
        return None
    return execution_create_for_award(task=task, assignee=assignee)


# --- running -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """What taking an execution for one attempt writes to its row (the fields are the model's):
    the conditional UPDATE's values; at once (see :func:`execution_claim`) nothing is written
    then, and the statement that ends the attempt writes what of the claim lasts past it."""

    status: str
    attempts: int
    claim_token: uuid.UUID
    lease_expires_at: datetime
    worker: str
    started_at: datetime
    last_attempt_at: datetime

    def values(self) -> dict[str, Any]:
        """The claim by field name: what its UPDATE sets, and what the claimed instance gets."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


def execution_claim(*, execution_id: int, worker: str, at_once: bool = False) -> Execution | None:
    """Take the execution for one attempt, or None when another worker has it or it is over.

    The conditional UPDATE is the whole mutual exclusion: of two deliveries of the same message,
    one changes the row and the other changes nothing and stops. It matches ``attempts`` as read
    just before, so the execution returned (that read, with its agent, given the claim's values)
    is the row exactly as claimed, without reading it again.

    ``at_once`` (see :func:`execution_run`): the read locks the row instead (``FOR UPDATE``: a
    second delivery waits, then finds the attempt over) and nothing is written now; the
    statement that ends the attempt, in the same transaction, writes the claim's values too.
    """
    claimed = _execution_claim(execution_id=execution_id, worker=worker, at_once=at_once)
    return None if claimed is None else claimed[0]


def _execution_claim(
    *, execution_id: int, worker: str, at_once: bool
) -> tuple[Execution, Claim] | None:
    """:func:`execution_claim`, with the claim itself: at once, the end of the attempt writes it."""
    execution = execution_with_agent(execution_id, for_update=at_once)
    if (
        execution is None
        or execution.status != Execution.Status.QUEUED
        or execution.attempts >= execution.max_attempts
    ):
        return None  # a duplicate message, or nothing left to do: no write at all
    now = timezone.now()
    claim = Claim(
        status=Execution.Status.RUNNING,
        attempts=execution.attempts + 1,
        claim_token=uuid.uuid4(),
        lease_expires_at=_running_lease(execution.agent, attempt_started=now, now=now),
        worker=worker[:200],
        started_at=execution.started_at or now,
        last_attempt_at=now,
    )
    values = claim.values()
    if not at_once:
        where = {"status": Execution.Status.QUEUED, "attempts": execution.attempts}
        if not update_row(Execution, execution_id, values, where=where):
            return None
    for name, value in values.items():
        setattr(execution, name, value)
    if not at_once:  # at once, the attempt ends before anyone can see it running
        execution_changed_on_commit(execution_id=execution_id, kind="running")
    return execution, claim


def _task_reference(execution: Execution) -> Task:
    """The market's task by its key: the market's services lock and re-read the row themselves."""
    return Task(pk=execution.task_ref)


def _task_read(execution: Execution) -> Task:
    """The task as it is, for the run's brief (the market's services lock and re-read it)."""
    task = market_selectors.task_alone(execution.task_ref)
    if task is None:
        raise NotFound(f"Task {execution.task_ref} does not exist.")
    return task


def _task_started(execution: Execution) -> Task | None:
    """In the claim's transaction: move the awarded task to in progress through the market and
    return it as the market locked it. The claim commits with the start or not at all, so only a
    first attempt finds the task awarded (or an attempt after one claimed by an older worker,
    hence the read). None when the market refused (the poster cancelled meanwhile): the attempt
    then reads the task as it is, and the market refuses the delivery, as before."""
    try:
        if execution.attempts > 1:
            task = _task_read(execution)
            if task.state != Task.State.AWARDED:
                return task
        return market_services.task_start(
            task=_task_reference(execution), actor=execution.agent.participant
        )
    except MarketError as refusal:
        logger.info("execution %s did not start its task: %s", execution.pk, refusal)
        return None


def _task_brief(execution: Execution, task: Task) -> TaskBrief:
    revision = None
    # A task just awarded has no delivery to revise (the common first run asks nothing more).
    if task.state != Task.State.AWARDED:
        asked = market_selectors.revision_asked(task_id=task.pk)
        if asked is not None:
            revision = Revision(
                delivery_id=asked.pk, message=asked.review_message, previous_text=asked.text
            )
    return TaskBrief(
        task_id=task.pk,
        title=task.title,
        description=task.description,
        acceptance_criteria=task.acceptance_criteria,
        checks=task.checks or {},
        budget=execution.budget,
        revision=revision,
    )


def _callback_urls(execution: Execution) -> dict[str, str]:
    base = settings.SITE_URL.rstrip("/")
    return {
        "deliver": f"{base}/api/v1/tasks/{execution.task_ref}/deliveries/",
        "trace_events": f"{base}/api/v1/executions/{execution.pk}/trace/events/",
    }


def _context_for(execution: Execution, brief: TaskBrief) -> RunContext:
    agent = execution.agent
    config = dict(agent.runtime_config or {})
    api_key = ""
    if agent.runtime == Agent.Runtime.OPENAI:
        api_key = (
            os.environ.get(str(config.get("api_key_env", "")), "")
            if config.get("api_key_env")
            else ""
        )
        api_key = api_key or api_key_stored(agent=agent)
    record = trace_recorder(execution.pk)
    take_held_events: Callable[[], list[dict[str, Any]]] = list
    if agent.runtime == Agent.Runtime.BUILTIN:
        buffered = BufferedTrace(execution.pk)
        record, take_held_events = buffered.record, buffered.take
    return RunContext(
        execution_id=execution.pk,
        attempt=execution.attempts,
        task=brief,
        agent_config=config,
        record=record,
        take_held_events=take_held_events,
        time_limit_seconds=float(time_limits_for(agent)[0]),
        webhook_secrets=tuple(webhook_secrets_valid(agent=agent))
        if agent.runtime == Agent.Runtime.HTTP
        else (),
        api_key=api_key,
        callback_urls=_callback_urls(execution),
    )


def execution_run(*, execution_id: int, worker: str = "", at_once: bool = False) -> str:
    """One attempt: claim it and start the task (one transaction), run the agent's runtime
    outside any transaction, then complete or fail (a second one). Idempotent: a second delivery
    of the same message returns ``"skipped"`` and changes nothing.

    ``at_once`` (only the award's message for a built-in agent, on its first delivery): the
    agent runs inside the claim's transaction, which also delivers and closes the execution, so
    an attempt costs one transaction instead of two, and the task goes from awarded to delivered
    in one step (``delivery_submit(start=True)``). A built-in agent runs in this process, needs
    no network and takes milliseconds, so holding the claim's row lock meanwhile is cheap. If
    the worker dies in the middle, the claim rolls back with the rest: the attempt is not
    counted, and the message comes back marked as redelivered (Celery's late acknowledgement),
    so that delivery runs as above, where the claim commits first and the attempt limit holds.
    """
    with transaction.atomic():
        claimed = _execution_claim(
            execution_id=execution_id, worker=worker or worker_name(), at_once=at_once
        )
        if claimed is None:
            return "skipped"
        execution, claim = claimed
        if at_once:
            return _attempt_run_to_outcome(execution, task=None, claim_at_once=claim)
        task = _task_started(execution)
    return _attempt_run_to_outcome(execution, task=task)


def _attempt_run_to_outcome(
    execution: Execution, *, task: Task | None, claim_at_once: Claim | None = None
) -> str:
    """Run the claimed attempt, then complete or fail it: in a transaction of its own, or at
    once in the claim's (``claim_at_once``, not written yet: see :func:`execution_run`), where
    the claim needs no check."""
    if claim_at_once is not None:  # milliseconds, and nothing committed yet: no lease to renew
        context, outcome, elapsed_ms = _runtime_result_or_failure(execution, task)
    else:
        with _Heartbeat(execution):
            context, outcome, elapsed_ms = _runtime_result_or_failure(execution, task)
    if isinstance(outcome, RuntimeFailure):
        return execution_attempt_failed(
            execution_id=execution.pk,
            token=execution.claim_token,
            error=outcome,
            context=context,
            claimed=execution,
            claim_at_once=claim_at_once,
        )
    assert context is not None  # a result comes from a run, which had its context
    return execution_complete(
        execution_id=execution.pk,
        token=execution.claim_token,
        result=outcome,
        context=context,
        elapsed_ms=elapsed_ms,
        task=task,
        claimed=execution,
        claim_at_once=claim_at_once,
    )


def _runtime_result_or_failure(
    execution: Execution, task: Task | None
) -> tuple[RunContext | None, RunResult | RuntimeFailure, int]:
    """Run the agent's runtime on ``task`` (None: read it): (its context, its result or the
    failure, the milliseconds it took). Every exception becomes a failure: a transient one is
    retried."""
    started = time.monotonic()
    context: RunContext | None = None
    failure: RuntimeFailure
    try:
        task = task or _task_read(execution)
        context = _context_for(execution, _task_brief(execution, task))
        context.record(
            kind=TraceEvent.Kind.DECISION,
            name="attempt started",
            inputs={"attempt": execution.attempts, "worker": execution.worker},
        )
        revision = context.task.revision
        if revision is not None:
            context.record(
                kind=TraceEvent.Kind.MESSAGE,
                name="revision requested",
                inputs={"delivery": revision.delivery_id, "message": revision.message},
            )
        result = _runtime_for(execution.agent)(context)
    except SoftTimeLimitExceeded:
        soft = time_limits_for(execution.agent)[0]
        failure = TransientRuntimeError(f"The attempt passed its soft time limit of {soft} s.")
    except RuntimeFailure as runtime_error:
        failure = runtime_error
    except (OperationalError, InterfaceError) as database_error:
        # The database went away (a restart): worth another attempt, not a verdict on the agent.
        failure = PlatformFailure(f"Database unavailable: {database_error}")
    except MarketError as market_error:
        failure = RuntimeFailure(f"The market refused: {market_error}")
    except Exception as unexpected:  # a bug of ours: fail visibly, never retry blindly
        logger.exception("execution %s attempt %s crashed", execution.pk, execution.attempts)
        failure = InternalError(f"{type(unexpected).__name__}: {unexpected}")
    else:
        return context, result, int((time.monotonic() - started) * 1000)
    return context, failure, int((time.monotonic() - started) * 1000)


@derived_from_models
def _claim_state_statement() -> str:
    """The read of :func:`_execution_lock_if_claim_holds`: status, claim token and trace length,
    in that order, of the execution whose key is the parameter, under FOR UPDATE."""
    quote = connection.ops.quote_name
    columns = ", ".join(
        quote(model_field(Execution, name).column)
        for name in ("status", "claim_token", "trace_length")
    )
    return (
        f"SELECT {columns} FROM {quote(Execution._meta.db_table)}"  # noqa: S608
        f" WHERE {quote(Execution._meta.pk.column)} = %s FOR UPDATE"
    )


def _execution_lock_if_claim_holds(
    execution_id: int, token: uuid.UUID | None, claimed: Execution | None = None
) -> Execution | None:
    """The execution under FOR UPDATE when ``token`` still holds the claim, else None (the reaper
    gave the attempt to someone else: this worker's result is stale and must have no effect).

    With ``claimed`` (the execution as this worker's claim returned it), only what can have
    changed since is read under the lock: the status, the claim and the trace's length (the agent
    may have appended events through the API). While the claim holds, nothing else moves but the
    lease (the heartbeat's), which every end of an attempt sets."""
    if claimed is None:
        execution = execution_with_agent(execution_id, for_update=True)
        if execution is None:
            raise Execution.DoesNotExist(f"Execution {execution_id} does not exist.")
    else:
        execution = claimed
        row = fetch_row(_claim_state_statement(), [execution_id])
        if row is None:
            raise Execution.DoesNotExist(f"Execution {execution_id} does not exist.")
        execution.status, execution.claim_token, execution.trace_length = row
    if execution.status != Execution.Status.RUNNING or execution.claim_token != token:
        return None
    return execution


@dataclass(frozen=True)
class FinishedAttempt:
    """What a worker's attempt adds to the statement that ends it: its usage (``context``), the
    trace ``events`` it held (and those its outcome adds, until the statement runs), and at
    once the claim that was not written (see :func:`execution_claim`). The reaper ends a dead
    attempt without one."""

    context: RunContext | None = None
    events: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    claim_at_once: Claim | None = None


def _attempt_end_write(
    execution: Execution,
    *,
    status: str,
    lease_expires_at: datetime | None,
    finished_at: datetime | None = None,
    delivery_ref: int | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
    claim_released: bool = False,
    given_back_to_agent: bool = False,
    cost: int | None = None,
    attempt: FinishedAttempt | None = None,
) -> None:
    """The one statement that ends an attempt, under the caller's lock of the execution's row:
    its outcome, with what the worker's ``attempt`` adds (its trace events are inserted by the
    same statement). A column whose argument is None is left as it is; ``claim_released``
    clears the claim's token; ``given_back_to_agent``: the attempt was lost to the platform, so
    it does not count (bounded by ``platform_failures``); ``cost``: what the run is charged
    instead of what it spent."""
    attempt = attempt or FinishedAttempt()
    rows = trace_event_rows(execution=execution, events=attempt.events)
    values: dict[str, Any] = {}
    claim = attempt.claim_at_once
    if claim is not None:
        # The claim's own statement is this one. Its status and lease give way to the end's,
        # and its token, which nobody saw, is left unwritten.
        values.update(
            attempts=claim.attempts,
            worker=claim.worker,
            started_at=claim.started_at,
            last_attempt_at=claim.last_attempt_at,
        )
    if rows:
        values["trace_length"] = execution.trace_length + len(rows)
    if attempt.context is not None:
        values.update(
            cost=attempt.context.spent,
            input_tokens=attempt.context.input_tokens,
            output_tokens=attempt.context.output_tokens,
        )
    values.update(status=status, lease_expires_at=lease_expires_at)
    if finished_at is not None:
        values["finished_at"] = finished_at
    if delivery_ref is not None:
        values["delivery_ref"] = delivery_ref
    if error_code is not None:
        values["error_code"] = error_code
    if error_message is not None:
        values["error_message"] = error_message
    if claim_released:
        values["claim_token"] = None
    if given_back_to_agent:
        values.update(
            attempts=max(0, execution.attempts - 1),
            platform_failures=execution.platform_failures + 1,
        )
    if cost is not None:
        values["cost"] = cost
    update_row(Execution, execution.pk, values, inserting=rows)


def execution_complete(
    *,
    execution_id: int,
    token: uuid.UUID | None,
    result: RunResult,
    context: RunContext,
    elapsed_ms: int = 0,
    task: Task | None = None,
    claimed: Execution | None = None,
    claim_at_once: Claim | None = None,
) -> str:
    """Deliver the result and close the execution, all in one transaction. ``task`` is the
    market's task as read at the start of the attempt (the market re-locks it to deliver);
    ``claimed`` the execution as the claim returned it (see
    :func:`_execution_lock_if_claim_holds`); ``claim_at_once``: the claim, not written yet, of
    an attempt run in the claim's own transaction (see :func:`execution_run`), where the claim
    needs no check and the task may not have started yet."""
    at_once = claim_at_once is not None
    with transaction.atomic(savepoint=not at_once):
        execution = (
            claimed if at_once else _execution_lock_if_claim_holds(execution_id, token, claimed)
        )
        if execution is None:
            return "stale"
        attempt = FinishedAttempt(
            context=context, events=context.take_held_events(), claim_at_once=claim_at_once
        )
        now = timezone.now()
        if result.accepted_for_later_delivery:
            attempt.events.append(
                {
                    "kind": TraceEvent.Kind.DECISION,
                    "name": "accepted; the agent will deliver through the API",
                }
            )
            _attempt_end_write(
                execution,
                status=Execution.Status.WAITING,
                lease_expires_at=now + timedelta(seconds=settings.WORKERS_WAITING_LEASE_SECONDS),
                attempt=attempt,
            )
            execution_changed_on_commit(execution_id=execution.pk, kind="waiting", urgent=True)
            return "waiting"
        try:
            # A refusal by the market writes nothing and leaves this transaction usable for the
            # failure (delivery_submit decides it before any write).
            delivery = market_services.delivery_submit(
                task=task or _task_reference(execution),
                actor=execution.agent.participant,
                text=result.text,
                data=result.data,
                idempotency_key=execution.delivery_idempotency_key,
                start=at_once,
            )
        except MarketError as error:
            return _fail_locked(
                execution,
                RuntimeFailure(f"The market refused the delivery: {error}"),
                return_task=False,
                attempt=attempt,
            )
        attempt.events.append(
            {
                "kind": TraceEvent.Kind.MESSAGE,
                "name": "delivered",
                "outputs": {"delivery": delivery.pk, "text": result.text[:500]},
                "cost": context.spent,
                "duration_ms": elapsed_ms,
            }
        )
        _attempt_end_write(
            execution,
            status=Execution.Status.SUCCEEDED,
            delivery_ref=delivery.pk,
            finished_at=now,
            lease_expires_at=None,
            error_code="",
            error_message="",
            attempt=attempt,
        )
        execution_changed_on_commit(execution_id=execution.pk, kind="succeeded", urgent=True)
        return "succeeded"


def execution_attempt_failed(
    *,
    execution_id: int,
    token: uuid.UUID | None,
    error: RuntimeFailure,
    context: RunContext | None = None,
    claimed: Execution | None = None,
    claim_at_once: Claim | None = None,
) -> str:
    """Retry a transient failure with backoff while attempts remain; otherwise fail for good and
    return the task to the market. ``claimed`` and ``claim_at_once``: see
    :func:`execution_complete`."""
    at_once = claim_at_once is not None
    with transaction.atomic(savepoint=not at_once):
        execution = (
            claimed if at_once else _execution_lock_if_claim_holds(execution_id, token, claimed)
        )
        if execution is None:
            return "stale"
        events = context.take_held_events() if context is not None else []
        events.append(
            {
                "kind": TraceEvent.Kind.ERROR,
                "name": error.code,
                "outputs": {"message": str(error), "transient": error.transient},
            }
        )
        attempt = FinishedAttempt(context=context, events=events, claim_at_once=claim_at_once)
        if isinstance(error, PlatformFailure):
            if execution.platform_failures < settings.WORKERS_MAX_PLATFORM_FAILURES:
                return _retry_locked(execution, error, attempt=attempt)
            return _fail_locked(execution, error, return_task=True, attempt=attempt)
        if error.transient and execution.attempts < execution.max_attempts:
            return _retry_locked(execution, error, attempt=attempt)
        return _fail_locked(execution, error, return_task=True, attempt=attempt)


def _retry_locked(execution: Execution, error: RuntimeFailure, *, attempt: FinishedAttempt) -> str:
    """Under the execution's row lock: queue the next attempt after a backoff. An attempt the
    platform lost is given back to the agent (bounded by ``platform_failures``)."""
    delay = retry_delay_seconds(execution.attempts)
    now = timezone.now()
    _attempt_end_write(
        execution,
        status=Execution.Status.QUEUED,
        claim_released=True,
        lease_expires_at=now + timedelta(seconds=delay + settings.WORKERS_QUEUE_LEASE_SECONDS),
        error_code=error.code,
        error_message=str(error)[:2000],
        given_back_to_agent=isinstance(error, PlatformFailure),
        attempt=attempt,
    )
    _enqueue_on_commit(execution, countdown=delay)
    execution_changed_on_commit(execution_id=execution.pk, kind="retrying", urgent=True)
    return "retrying"


def _fail_locked(
    execution: Execution,
    error: RuntimeFailure,
    *,
    return_task: bool,
    attempt: FinishedAttempt | None = None,
) -> str:
    """Under the execution's row lock: fail visibly; with ``return_task`` the task goes back to
    the market (its abandonment records the agent's outcome, unless the platform failed: then
    nothing is held against the agent). A market refusal to take it back is recorded, not
    raised: the execution's failure must commit either way. ``attempt``: none when the reaper
    ends a dead attempt."""
    message = str(error)[:2000]
    by_platform = isinstance(error, PlatformFailure)
    if return_task:
        reason = f"Hosted execution #{execution.pk} failed: {message}"
        if by_platform:
            reason = (
                f"The platform gave up running hosted execution #{execution.pk} after"
                f" {execution.platform_failures} failures of its own (not the agent's): {message}"
            )
        try:
            # task_abandon's atomic block is a savepoint here: a refusal rolls back what it
            # wrote and leaves this transaction usable.
            market_services.task_abandon(
                task=_task_reference(execution),
                actor=execution.agent.participant,
                reason=reason[:2000],
                by_platform=by_platform,
            )
        except MarketError as market_error:
            message += f" (the task could not be returned to the market: {market_error})"
    context = attempt.context if attempt is not None else None
    charged = None  # None: what the run spent, as the end of every attempt records it
    if isinstance(error, BudgetExceeded) and context is not None:
        charged = min(context.spent, execution.budget)
    _attempt_end_write(
        execution,
        status=Execution.Status.FAILED,
        finished_at=timezone.now(),
        lease_expires_at=None,
        claim_released=True,
        error_code=error.code,
        error_message=message,
        cost=charged,
        attempt=attempt,
    )
    execution_changed_on_commit(execution_id=execution.pk, kind="failed", urgent=True)
    return "failed"


# --- the reaper ----------------------------------------------------------------------------------


def execution_reap(*, execution_id: int, now: Any = None) -> str:
    """Recover one execution whose lease expired: re-send a queued one's message, re-queue a
    running one whose worker died (or fail it at the attempt limit), settle a waiting one."""
    now = now or timezone.now()
    with transaction.atomic():
        execution = (
            Execution.objects.select_for_update(of=("self",), skip_locked=True)
            .select_related("agent__participant")
            .filter(pk=execution_id)
            .first()
        )
        if execution is None:
            return "busy"  # a worker is completing it right now; look again next round
        if execution.status == Execution.Status.WAITING:
            return _reap_waiting(execution, now)
        if execution.is_final or execution.lease_expires_at is None:
            return "final"
        if execution.lease_expires_at > now:
            return "not_due"
        if execution.status == Execution.Status.QUEUED:
            # The message was lost with a dead worker's prefetch, or sits behind a long queue; a
            # second message is harmless (the claim lets one through). One still in the outbox
            # (the broker is down) leaves when the broker is back: no second one for it.
            Execution.objects.filter(pk=execution.pk).update(
                lease_expires_at=now + timedelta(seconds=settings.WORKERS_QUEUE_LEASE_SECONDS)
            )
            if outbox_unsent(EXECUTION_RUN_TASK, execution_id=execution.pk):
                return "in_outbox"
            _enqueue_on_commit(execution)
            return "resent"
        return _reap_running(execution, now)


def _reap_running(execution: Execution, now: Any) -> str:
    """A running attempt whose lease ended. Its heartbeat stopped before the time limit: the
    worker died (the platform's failure, given back to the agent); it ran to the limit: the
    agent's (it hung past its hard time limit), counted as an attempt."""
    limit = (execution.last_attempt_at or now) + lease_for(execution.agent)
    worker = execution.worker or "?"
    lost: RuntimeFailure
    assert execution.lease_expires_at is not None  # execution_reap sends only a leased one
    if execution.lease_expires_at < limit - timedelta(seconds=1):
        lost = PlatformFailure(
            f"The worker running attempt {execution.attempts} ({worker}) stopped (killed or"
            " lost): a failure of the platform, not counted against the agent."
        )
        again = execution.platform_failures < settings.WORKERS_MAX_PLATFORM_FAILURES
    else:
        lost = LeaseExpired(
            f"Attempt {execution.attempts} ran past its lease on {worker} (the agent hung past"
            " its time limit)."
        )
        again = execution.attempts < execution.max_attempts
    trace_event_append(
        execution_id=execution.pk,
        kind=TraceEvent.Kind.ERROR,
        name=lost.code,
        outputs={"message": str(lost), "transient": True},
    )
    if not again:
        return _fail_locked(execution, lost, return_task=True)
    _attempt_end_write(
        execution,
        status=Execution.Status.QUEUED,
        claim_released=True,
        lease_expires_at=now + timedelta(seconds=settings.WORKERS_QUEUE_LEASE_SECONDS),
        error_code=lost.code,
        error_message=str(lost),
        given_back_to_agent=isinstance(lost, PlatformFailure),
    )
    _enqueue_on_commit(execution)
    execution_changed_on_commit(execution_id=execution.pk, kind="requeued", urgent=True)
    return "requeued"


def _reap_waiting(execution: Execution, now: Any) -> str:
    """An agent that accepted and delivers through the API: done once its delivery exists."""
    delivery = (
        market_selectors.deliveries_of(participant=execution.agent.participant)
        .filter(task_id=execution.task_ref, created_at__gte=execution.created_at)
        .order_by("created_at")
        .first()
    )
    if delivery is not None:
        Execution.objects.filter(pk=execution.pk).update(
            status=Execution.Status.SUCCEEDED,
            delivery_ref=delivery.pk,
            finished_at=now,
            lease_expires_at=None,
        )
        execution_changed_on_commit(execution_id=execution.pk, kind="succeeded", urgent=True)
        return "succeeded"
    if execution.lease_expires_at and execution.lease_expires_at <= now:
        late = DeliveryTimedOut("The agent accepted the task but did not deliver in time.")
        return _fail_locked(execution, late, return_task=True)
    return "waiting"


def executions_reap(*, now: Any = None) -> dict[str, int]:
    """Beat: recover every execution whose lease expired, and settle waiting ones. Idempotent."""
    now = now or timezone.now()
    due = Execution.objects.filter(
        Q(status__in=[Execution.Status.QUEUED, Execution.Status.RUNNING], lease_expires_at__lte=now)
        | Q(status=Execution.Status.WAITING)
    ).values_list("pk", flat=True)
    counts: dict[str, int] = {}
    outcomes = sweep(
        list(due.order_by("pk")[:500]),
        lambda pk: execution_reap(execution_id=pk, now=now),
        what="execution",
    )
    for outcome in outcomes:
        counts[outcome or "error"] = counts.get(outcome or "error", 0) + 1
    return counts
