"""Deliveries: submit, machine checks, accept (settle), request a revision, reject (dispute),
the end of the review window, escalation of stalled work, and staff resolution of disputes."""

from __future__ import annotations

import json
import mimetypes
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from agents_registry import selectors as registry_selectors
from agents_registry import services as registry_services
from agents_registry.models import Participant
from agents_registry.prepared import insert_rows
from agents_registry.sweeps import sweep
from ledger import selectors as ledger_selectors
from ledger import services as ledger_services
from marketplace import selectors
from marketplace.actions import states_of, work_stalls_at
from marketplace.exceptions import (
    ChildrenOpen,
    IdempotencyConflict,
    InvalidInput,
    InvalidTransition,
    MarketError,
    NotAllowed,
)
from marketplace.models import Delivery, DeliveryFile, Dispute, StaffAction, Task
from marketplace.services import linear_regex, validation
from marketplace.services.common import (
    accept_handler_call,
    agent_load_change,
    event_record,
    notify,
    require_actor,
    require_state,
    revision_handler_call,
    task_lock,
    task_lock_as,
    transition_record,
)
from marketplace.services.outcomes import outcome_record_for

MAX_TEXT = 100_000
MAX_DATA_BYTES = 1_000_000
MAX_FILES = 10
ALLOWED_FILE_TYPES = {
    "text/plain",
    "text/markdown",
    "text/csv",
    "application/json",
    "application/pdf",
    "image/png",
    "image/jpeg",
    "application/zip",
}


def _max_file_bytes() -> int:
    return getattr(settings, "MARKET_MAX_FILE_BYTES", 10 * 1024 * 1024)


def _clean_files(files: Sequence[Any]) -> list[tuple[Any, str, str]]:
    if len(files) > MAX_FILES:
        raise InvalidInput(f"At most {MAX_FILES} files per delivery; got {len(files)}.")
    cleaned = []
    limit = _max_file_bytes()
    for upload in files:
        name = (upload.name or "file").replace("\\", "/").rsplit("/", 1)[-1][:200] or "file"
        # The type comes from the extension we will serve it with, never from the client's claim.
        content_type = mimetypes.guess_type(name)[0] or ""
        if name.endswith(".md"):
            content_type = "text/markdown"
        if content_type not in ALLOWED_FILE_TYPES:
            raise InvalidInput(
                f"{name}: files of this type are not accepted; allowed are .txt, .md, .csv, "
                ".json, .pdf, .png, .jpg and .zip."
            )
        if upload.size > limit:
            raise InvalidInput(f"{name} is {upload.size} bytes; the limit is {limit} bytes.")
        cleaned.append((upload, name, content_type))
    return cleaned


def delivery_submit(
    *,
    task: Task,
    actor: Participant,
    text: str = "",
    data: Any = None,
    files: Sequence[Any] = (),
    skills_used: Sequence[int] = (),
    idempotency_key: str | None = None,
    viewer: selectors.Viewer | None = None,
    start: bool = False,
) -> Delivery:
    """The assignee hands in the work; the review window starts and the machine checks queue.
    ``viewer``: the API caller, for whom a task it may not see does not exist. ``start``: the
    assignee did the work at once (a built-in hosted agent, inside its claim's transaction):
    a task it has not started yet is started and delivered in one step, and the timeline
    records both.

    A key used before returns the delivery it made (when ``text`` and ``data`` match): found
    when this one is refused, by the unique constraint or because the task moved on, so a
    first delivery never pays for the look-up."""
    text = validation.clean_text(text, field="text", maximum=MAX_TEXT, required=False)
    if data is not None and len(json.dumps(data)) > MAX_DATA_BYTES:
        raise InvalidInput(f"data is larger than {MAX_DATA_BYTES} bytes of JSON.")
    cleaned_files = _clean_files(list(files))
    if not text and data is None and not cleaned_files:
        raise InvalidInput("A delivery needs text, data or at least one file.")
    skills = list(skills_used)
    if not all(isinstance(pk, int) and not isinstance(pk, bool) and pk > 0 for pk in skills):
        raise InvalidInput("skills_used must be a list of skill version ids.")
    if skills:
        # Refused here, where the submitter can fix it, not at settlement, where it would stop
        # the payment (and, once, the review-window sweep for every other delivery).
        unknown = registry_selectors.skill_versions_unknown(version_ids=skills)
        if unknown:
            raise InvalidInput(
                "skills_used names skill versions that do not exist: "
                f"{', '.join(map(str, unknown))}. Use the ids of versions in the skill library."
            )
    if idempotency_key is not None:
        idempotency_key = validation.clean_text(
            idempotency_key, field="idempotency_key", maximum=120
        )
    startable = (Task.State.AWARDED, Task.State.REVISION_REQUESTED) if start else ()
    # No savepoint: a refusal is decided before anything is written and leaves the block
    # normally, so the transaction of a caller that records it (a hosted execution) goes on. A
    # database error still ends that transaction, as it must.
    with transaction.atomic(savepoint=False):
        try:
            task = task_lock_as(viewer, task.pk)
            require_actor(actor, task.assignee_id, "deliver this task", "assignee")
            require_state(task, "deliver", *states_of("deliver"), *startable)
        except MarketError as refused:
            outcome: Delivery | MarketError = refused
        else:
            outcome = _delivered_locked(
                task,
                actor,
                text=text,
                data=data,
                skills=skills,
                cleaned_files=cleaned_files,
                idempotency_key=idempotency_key,
                started=("started",) if task.state in startable else (),
            )
    if not isinstance(outcome, MarketError):
        return outcome
    if idempotency_key is not None:
        existing = selectors.delivery_by_key(
            task_id=task.pk, submitter_id=actor.pk, idempotency_key=idempotency_key
        )
        if existing is not None:
            return _replayed(existing, text=text, data=data)
    raise outcome


def _delivered_locked(
    task: Task,
    actor: Participant,
    *,
    text: str,
    data: Any,
    skills: list[int],
    cleaned_files: list[tuple[Any, str, str]],
    idempotency_key: str | None,
    started: tuple[str, ...],
) -> Delivery | MarketError:
    """The delivery of the locked ``task``, or the refusal (nothing written then)."""
    delivery = Delivery(
        task=task,
        submitter=actor,
        text=text,
        data=data,
        skills_used=skills,
        check_status=(Delivery.CheckStatus.PENDING if task.checks else Delivery.CheckStatus.NONE),
        review_deadline=timezone.now() + timedelta(hours=settings.REVIEW_WINDOW_HOURS),
        idempotency_key=idempotency_key,
        # A hosted assignee delivers through the execution its award started (also when an
        # HTTP agent delivers later through the API).
        execution_ref=task.execution_ref,
    )
    # The insert itself checks that no subtask is open (after the lock, as a statement of its own
    # would) and skips a key used before: one statement, which never fails on either.
    inserted = insert_rows(
        Delivery,
        [delivery],
        unless=selectors.unfinished_children_exist(task=task),
        skip_conflicts=True,
    )
    if not inserted:
        if selectors.unfinished_children_count(task=task):
            return ChildrenOpen(
                "Subtasks of this task are still open: wait for them or cancel them first."
            )
        # A unique constraint: the key's own delivery (the caller looks it up and replays it)
        # or another delivery still in review.
        return InvalidTransition(f"Task #{task.pk} already has a delivery waiting for review.")
    stored_files = []
    for upload, name, content_type in cleaned_files:
        stored = DeliveryFile(
            delivery=delivery,
            token=secrets.token_hex(16),
            name=name,
            content_type=content_type,
            size=upload.size,
        )
        stored.file.save(stored.token, upload, save=False)
        stored.save()
        stored_files.append(stored)
    # The files as if prefetched: the answer lists them without asking the database (compiling
    # that query cost the deliver endpoint a sixth of its CPU). A queryset that holds its result
    # never runs, so it needs no filter (building one cost 60 microseconds a delivery).
    files = DeliveryFile.objects.all()
    files._result_cache, files._prefetch_done = stored_files, True
    delivery._prefetched_objects_cache = {"files": files}
    task.state = Task.State.DELIVERED
    transition_record(
        task,
        kind="delivered",
        actor=actor,
        notice=(task.poster, f"“{task.title}” was delivered; please review it."),
        preceded_by=started,
        delivery=delivery.pk,
    )
    if task.checks:
        # Sent by name: marketplace.tasks imports these services, not the other way.
        transaction.on_commit(
            lambda: current_app.send_task(
                "marketplace.delivery_verify", kwargs={"delivery_id": delivery.pk}
            )
        )
    return delivery


def _replayed(existing: Delivery, *, text: str, data: Any) -> Delivery:
    if existing.text != text or existing.data != data:
        raise IdempotencyConflict(
            "This idempotency key was used for a different delivery; use a new key."
        )
    return existing


# --- machine checks ---------------------------------------------------------------------------


def _field_present(data: Any, dotted: str) -> bool:
    current = data
    for part in dotted.split("."):
        if not isinstance(current, dict) or part not in current:
            return False
        current = current[part]
    return True


def checks_run(*, checks: dict, text: str, data: Any) -> list[dict[str, Any]]:
    """Run the machine checks; each result says what was checked, whether it passed, and why."""
    results: list[dict[str, Any]] = []
    if "json_schema" in checks:
        if data is None:
            results.append(
                {"check": "json_schema", "passed": False, "evidence": "The delivery has no data."}
            )
        else:
            validator = linear_regex.schema_validator(checks["json_schema"])
            errors = sorted(validator.iter_errors(data), key=lambda error: list(error.path))
            evidence = [
                f"{'/'.join(map(str, error.path)) or '(root)'}: {error.message}"
                for error in errors[:10]
            ]
            results.append(
                {
                    "check": "json_schema",
                    "passed": not errors,
                    "evidence": "; ".join(evidence) if errors else "The data matches the schema.",
                }
            )
    if "regex" in checks:
        try:
            match = linear_regex.search(checks["regex"], text or "")
            evidence = (
                f"Matched “{match.group(0)[:200]}” at position {match.start()}."
                if match
                else f"No match for {checks['regex']!r} in the text."
            )
        except linear_regex.UnsupportedPattern as error:  # a task posted before checks ran RE2
            match, evidence = None, f"The pattern cannot run: {error}"
        results.append({"check": "regex", "passed": match is not None, "evidence": evidence})
    if "required_fields" in checks:
        missing = [name for name in checks["required_fields"] if not _field_present(data, name)]
        results.append(
            {
                "check": "required_fields",
                "passed": not missing,
                "evidence": (
                    "Missing: " + ", ".join(missing) if missing else "All required fields present."
                ),
            }
        )
    return results


def delivery_verify_run(*, delivery_id: int) -> bool:
    """Run the checks of one delivery and store the results; a redelivered message finds the
    results stored and does nothing (the conditional update admits one writer)."""
    delivery = Delivery.objects.select_related("task").filter(pk=delivery_id).first()
    if delivery is None or delivery.check_status != Delivery.CheckStatus.PENDING:
        return False
    results = checks_run(checks=delivery.task.checks, text=delivery.text, data=delivery.data)
    passed = all(result["passed"] for result in results)
    status = Delivery.CheckStatus.PASSED if passed else Delivery.CheckStatus.FAILED
    with transaction.atomic():
        updated = Delivery.objects.filter(
            pk=delivery_id, check_status=Delivery.CheckStatus.PENDING
        ).update(check_status=status, check_results=results)
        if updated:
            event_record(
                task=delivery.task, kind="checks_" + status, delivery=delivery_id, results=results
            )
    return bool(updated)


# --- review -------------------------------------------------------------------------------------


def _locked_for_review(
    delivery: Delivery, actor: Participant | None, action: str, *, rule: str
) -> Task:
    task = task_lock(delivery.task_id)
    if actor is not None:
        require_actor(actor, task.poster_id, action, "poster")
    require_state(task, action, *states_of(rule))
    delivery.refresh_from_db()
    if delivery.status != Delivery.Status.SUBMITTED:
        raise InvalidTransition(f"This delivery is {delivery.status}; it is no longer in review.")
    return task


def delivery_accept(*, delivery: Delivery, actor: Participant | None) -> Task:
    """Accept and settle: the assignee is paid the price less the platform fee and the royalties
    of the skills it used (capped); the poster's margin (bounty minus price) goes back to the
    poster, or to the parent's escrow for a subtask. ``actor`` None is the review window ending."""
    with transaction.atomic():
        task = _locked_for_review(delivery, actor, "accept this delivery", rule="accept")
        _settle(task=task, delivery=delivery, actor=actor)
        return task


def _settle(*, task: Task, delivery: Delivery, actor: Participant | None) -> None:
    escrow = ledger_selectors.escrow_balance(task_ref=task.ledger_ref)
    margin = task.bounty - task.price
    payout = escrow - margin
    skills = list(delivery.skills_used)
    royalties = (
        registry_services.skill_royalty_shares(
            skill_version_ids=skills, total_basis_points=settings.ROYALTY_CAP_BASIS_POINTS
        )
        if skills
        else []
    )
    plan = ledger_services.settlement_plan(
        escrow=escrow,
        payout=payout,
        fee_basis_points=settings.PLATFORM_FEE_BASIS_POINTS,
        royalties=royalties,
        royalty_cap_basis_points=settings.ROYALTY_CAP_BASIS_POINTS,
    )
    ledger_services.escrow_settle(
        task_ref=task.ledger_ref,
        payee_ref=task.assignee.ledger_ref,
        refund_to=task.refund_ref,
        plan=plan,
        idempotency_key=f"{task.ledger_ref}:settle",
    )
    if skills:
        registry_services.skill_usage_record(
            skill_version_ids=skills, task_ref=task.ledger_ref, royalties=dict(plan.royalties)
        )
    Delivery.objects.filter(pk=delivery.pk).update(
        status=Delivery.Status.ACCEPTED, reviewed_at=timezone.now()
    )
    task.state = Task.State.ACCEPTED
    task.spent = task.bounty - margin
    task.save(update_fields=["state", "spent", "updated_at"])
    outcome_record_for(task=task, outcome="accepted", cost=task.price)
    accept_handler_call(task=task)
    agent_load_change(participant=task.assignee, delta=-1)
    event_record(
        task=task,
        kind="accepted",
        actor=actor,
        delivery=delivery.pk,
        payout=payout,
        automatic=actor is None,
    )
    notify(
        recipient=task.assignee,
        task=task,
        message=f"Your delivery for “{task.title}” was accepted; {payout} credits settled.",
    )
    if actor is None:
        notify(
            recipient=task.poster,
            task=task,
            message=f"The review window of “{task.title}” ended; the delivery was accepted.",
        )


def _checks_message(delivery: Delivery) -> str:
    failed = [result for result in delivery.check_results if result.get("passed") is False]
    details = "; ".join(f"{result['check']}: {result['evidence']}" for result in failed)
    return f"The machine checks failed ({details or 'see the check results'}). Please revise."[
        :5000
    ]


def delivery_review_window_end(*, delivery_id: int, now: datetime | None = None) -> str | None:
    """What silence does once a delivery's review window ends: a delivery whose checks passed
    (or that has none) is accepted; one whose checks failed is never paid by silence: it goes
    back to the assignee as a revision (a hosted agent runs again), at most
    ``MARKET_AUTOMATIC_REVISIONS`` times per task, and after that it waits for the poster, with
    no deadline. Checks still pending (their message was lost) run here first.

    Returns ``"accepted"``, ``"revision"`` or ``"awaiting_poster"``, or None when the delivery
    is not due. Safe to run twice at once: the second waits for the task's row lock and then
    finds the delivery handled."""
    now = now or timezone.now()
    pending = Delivery.objects.filter(
        pk=delivery_id, check_status=Delivery.CheckStatus.PENDING
    ).exists()
    if pending:
        delivery_verify_run(delivery_id=delivery_id)
    with transaction.atomic():
        delivery = Delivery.objects.filter(pk=delivery_id).first()
        if delivery is None:
            return None
        task = task_lock(delivery.task_id)
        delivery.refresh_from_db()
        if (
            delivery.status != Delivery.Status.SUBMITTED
            or task.state != Task.State.DELIVERED
            or delivery.review_deadline is None
            or delivery.review_deadline > now
            or delivery.check_status == Delivery.CheckStatus.PENDING
        ):
            return None
        if delivery.check_status != Delivery.CheckStatus.FAILED:
            _settle(task=task, delivery=delivery, actor=None)
            return "accepted"
        if selectors.automatic_revisions_count(task=task) < settings.MARKET_AUTOMATIC_REVISIONS:
            _revision_locked(task, delivery, actor=None, message=_checks_message(delivery))
            return "revision"
        Delivery.objects.filter(pk=delivery.pk).update(review_deadline=None)
        transition_record(
            task,
            kind="review_awaited",
            notice=(
                task.poster,
                f"The delivery for “{task.title}” failed its checks again; it waits for your "
                "decision: accept, request a revision or reject it.",
            ),
            fields=(),
            delivery=delivery.pk,
        )
        notify(
            recipient=task.assignee,
            task=task,
            message=f"Your delivery for “{task.title}” failed its checks again and now waits "
            "for the poster; you may escalate it to staff.",
        )
        return "awaiting_poster"


def deliveries_review_due() -> int:
    """Beat: every delivery whose review window ended (see :func:`delivery_review_window_end`);
    how many it moved. One that fails is logged and left for the next round; the rest go on."""
    due = Delivery.objects.filter(
        status=Delivery.Status.SUBMITTED, review_deadline__lte=timezone.now()
    ).values_list("pk", flat=True)
    return sum(
        outcome is not None
        for outcome in sweep(
            list(due), lambda pk: delivery_review_window_end(delivery_id=pk), what="delivery"
        )
    )


def revision_request(*, delivery: Delivery, actor: Participant, message: str) -> Task:
    """The poster asks for changes; the assignee works again (a hosted agent runs again with
    ``message``: the revision hook)."""
    message = validation.clean_text(message, field="message", maximum=validation.MAX_REVIEW_TEXT)
    with transaction.atomic():
        task = _locked_for_review(delivery, actor, "request a revision", rule="revise")
        _revision_locked(task, delivery, actor=actor, message=message)
        return task


def _revision_locked(
    task: Task, delivery: Delivery, *, actor: Participant | None, message: str
) -> None:
    """The delivery goes back to the locked ``task``'s assignee; ``actor`` None: its checks
    failed and the review window ended."""
    Delivery.objects.filter(pk=delivery.pk).update(
        status=Delivery.Status.REVISION_REQUESTED,
        review_message=message,
        reviewed_at=timezone.now(),
    )
    outcome_record_for(task=task, outcome="revised")
    task.state = Task.State.REVISION_REQUESTED
    automatic = {"automatic": True} if actor is None else {}
    transition_record(
        task,
        kind="revision_requested",
        actor=actor,
        notice=(task.assignee, f"A revision of “{task.title}” was requested: {message}"),
        message=message,
        **automatic,
    )
    if actor is None:
        notify(
            recipient=task.poster,
            task=task,
            message=f"The delivery for “{task.title}” failed its checks; it went back to the "
            "assignee for a revision.",
        )
    revision_handler_call(task=task, delivery_id=delivery.pk, message=message)


def delivery_reject(*, delivery: Delivery, actor: Participant, reason: str) -> Dispute:
    """The poster rejects the work; a dispute opens, and the escrow waits for staff."""
    reason = validation.clean_text(reason, field="reason", maximum=validation.MAX_REVIEW_TEXT)
    with transaction.atomic():
        task = _locked_for_review(delivery, actor, "reject this delivery", rule="reject")
        Delivery.objects.filter(pk=delivery.pk).update(
            status=Delivery.Status.REJECTED, review_message=reason, reviewed_at=timezone.now()
        )
        task.state = Task.State.DISPUTED
        task.save(update_fields=["state", "updated_at"])
        dispute = Dispute.objects.create(
            task=task, delivery=delivery, opened_by=actor, poster_evidence=reason
        )
        outcome_record_for(task=task, outcome="rejected")
        event_record(task=task, kind="rejected", actor=actor, reason=reason, dispute=dispute.pk)
        notify(
            recipient=task.assignee,
            task=task,
            message=f"Your delivery for “{task.title}” was rejected; add your side to the dispute.",
        )
        return dispute


def task_escalate(*, task: Task, actor: Participant, reason: str) -> Dispute:
    """Stuck work goes to staff as a dispute over its latest delivery; the escrow waits for
    their split. The poster may escalate work that stalled (see ``actions.work_stalls_at``)
    after something was delivered (with nothing delivered, cancelling refunds it all); the
    assignee, a delivery that waits for a poster who has not decided (its checks failed too
    often for silence to send it back)."""
    reason = validation.clean_text(reason, field="reason", maximum=validation.MAX_REVIEW_TEXT)
    with transaction.atomic():
        task = task_lock(task.pk)
        delivery = Delivery.objects.filter(task=task).order_by("-created_at", "-pk").first()
        if actor.pk == task.poster_id:
            require_state(task, "escalate", *states_of("escalate", "poster"))
            if delivery is None:
                raise InvalidTransition(
                    "Nothing was delivered on this task yet: cancel it to get the escrow back."
                )
            stalls_at = work_stalls_at(task)
            if stalls_at > timezone.now():
                raise InvalidTransition(
                    "The work has not stalled: this task can be escalated from "
                    f"{stalls_at:%Y-%m-%d %H:%M} UTC if nothing is delivered by then."
                )
            if selectors.unfinished_children_count(task=task):
                raise ChildrenOpen("Cancel or finish the subtasks of this task first.")
            other, sides = task.assignee, {"poster_evidence": reason}
            outcome_record_for(task=task, outcome="timed_out")
        elif actor.pk == task.assignee_id:
            require_state(task, "escalate", *states_of("escalate", "assignee"))
            if delivery.status != Delivery.Status.SUBMITTED or delivery.review_deadline:
                raise InvalidTransition(
                    "The poster's review window is still open: silence until it ends settles "
                    "this delivery."
                )
            other, sides = task.poster, {"poster_evidence": "", "assignee_evidence": reason}
        else:
            raise NotAllowed("Only the poster or the assignee can escalate this task.")
        state_before = task.state
        task.state = Task.State.DISPUTED
        task.save(update_fields=["state", "updated_at"])
        dispute = Dispute.objects.create(task=task, delivery=delivery, opened_by=actor, **sides)
        event_record(
            task=task,
            kind="escalated",
            actor=actor,
            reason=reason,
            dispute=dispute.pk,
            was=state_before,
        )
        notify(
            recipient=other,
            task=task,
            message=f"“{task.title}” was escalated to staff: {reason} Add your side to the "
            "dispute.",
        )
        return dispute


def dispute_evidence_add(*, dispute: Dispute, actor: Participant, text: str) -> Dispute:
    """A party states its side (replacing what it said before): the assignee's answer, or the
    poster's (which starts as the rejection reason). A party that is an agent has its side told
    by the agent or by the human who owns it."""
    text = validation.clean_text(text, field="text", maximum=validation.MAX_REVIEW_TEXT)
    with transaction.atomic():
        task = task_lock(dispute.task_id)
        viewer = selectors.Viewer(participant=actor)
        if selectors.speaks_for(viewer, task.poster):
            side = "poster_evidence"
        elif selectors.speaks_for(viewer, task.assignee):
            side = "assignee_evidence"
        else:
            raise NotAllowed("Only the poster or the assignee can add evidence to this dispute.")
        dispute = Dispute.objects.select_for_update().get(pk=dispute.pk)
        if dispute.status != Dispute.Status.OPEN:
            raise InvalidTransition("This dispute is resolved already.")
        setattr(dispute, side, text)
        dispute.save(update_fields=[side])
        event_record(task=task, kind="dispute_evidence", actor=actor)
        notify(
            recipient=task.assignee if side == "poster_evidence" else task.poster,
            task=task,
            message=f"The other party added its side to the dispute on “{task.title}”.",
        )
        return dispute


def dispute_resolve(
    *, dispute: Dispute, staff_user: AbstractBaseUser, assignee_share: int, note: str = ""
) -> Dispute:
    """Staff split the escrow: ``assignee_share`` to the assignee (at most what acceptance would
    have paid), the rest back to the poster (or the parent's escrow). No fee on disputed work."""
    if not getattr(staff_user, "is_staff", False):
        raise NotAllowed("Only staff can resolve disputes.")
    if (
        isinstance(assignee_share, bool)
        or not isinstance(assignee_share, int)
        or assignee_share < 0
    ):
        raise InvalidInput("assignee_share must be a whole number of credits, zero or more.")
    note = validation.clean_text(note, field="note", maximum=5000, required=False)
    with transaction.atomic():
        task = task_lock(dispute.task_id)
        dispute = Dispute.objects.select_for_update().get(pk=dispute.pk)
        if dispute.status != Dispute.Status.OPEN:
            raise InvalidTransition("This dispute is resolved already.")
        require_state(task, "resolve a dispute on", *states_of("resolve"))
        escrow = ledger_selectors.escrow_balance(task_ref=task.ledger_ref)
        most = selectors.most_to_assignee(task=task, escrow=escrow)
        if assignee_share > most:
            raise InvalidInput(
                f"assignee_share must be at most {most} (the price less what subtasks spent)."
            )
        refund = escrow - assignee_share
        parts = {task.assignee.ledger_ref: assignee_share, task.refund_ref: refund}
        ledger_services.escrow_split(
            task_ref=task.ledger_ref,
            parts={ref: amount for ref, amount in parts.items() if amount > 0},
            idempotency_key=f"{task.ledger_ref}:resolve",
            memo=note or f"dispute {dispute.pk} resolved",
        )
        now = timezone.now()
        dispute.status = Dispute.Status.RESOLVED
        dispute.assignee_share = assignee_share
        dispute.refund_share = refund
        dispute.resolution_note = note
        dispute.resolved_by = staff_user
        dispute.resolved_at = now
        dispute.save()
        task.state = Task.State.RESOLVED
        task.spent = task.bounty - refund
        task.save(update_fields=["state", "spent", "updated_at"])
        agent_load_change(participant=task.assignee, delta=-1)
        StaffAction.objects.create(
            staff_user=staff_user,
            action="dispute_resolve",
            subject=task.ledger_ref,
            note=note,
            data={"assignee_share": assignee_share, "refund": refund},
        )
        event_record(task=task, kind="resolved", assignee_share=assignee_share, refund=refund)
        for party in (task.poster, task.assignee):
            notify(
                recipient=party,
                task=task,
                message=f"The dispute on “{task.title}” was resolved: {assignee_share} to the "
                f"assignee, {refund} refunded.",
            )
        return dispute
