"""Deliveries submitted: the text, the data and the files, their limits, and the idempotent
replay of a delivery sent twice."""

from __future__ import annotations

import json
import mimetypes
import secrets
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, NamedTuple, ParamSpec

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agents_registry import selectors as registry_selectors
from agents_registry.models import Participant
from core.prepared import insert_rows
from marketplace import selectors
from marketplace.actions import states_of
from marketplace.exceptions import (
    ChildrenOpen,
    IdempotencyConflict,
    InvalidInput,
    InvalidTransition,
    MarketError,
)
from marketplace.models import Delivery, DeliveryFile, Task
from marketplace.services import validation
from marketplace.services.common import (
    require_actor,
    require_state,
    task_lock_as,
    transition_record,
)

Params = ParamSpec("Params")

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


class DeliveryWithFiles(NamedTuple):
    """A delivery and the files it stored; ``stored`` is None for a replayed delivery."""

    delivery: Delivery
    stored: list[DeliveryFile] | None

    @property
    def files(self) -> list[DeliveryFile]:
        """The delivery's files for an answer that lists them: a new delivery's are the ones it
        stored (no query), a replay's are read back."""
        return list(self.delivery.files.all()) if self.stored is None else self.stored


def delivery_submit_with_files(
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
) -> DeliveryWithFiles:
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
            outcome: tuple[Delivery, list[DeliveryFile]] | MarketError = refused
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
        return DeliveryWithFiles(*outcome)
    if idempotency_key is not None:
        existing = selectors.delivery_by_key(
            task_id=task.pk, submitter_id=actor.pk, idempotency_key=idempotency_key
        )
        if existing is not None:
            return DeliveryWithFiles(_replayed(existing, text=text, data=data), None)
    raise outcome


def _delivery_only(
    submit: Callable[Params, DeliveryWithFiles],
) -> Callable[Params, Delivery]:
    def delivery_only(*args: Params.args, **kwargs: Params.kwargs) -> Delivery:
        return submit(*args, **kwargs).delivery

    return delivery_only


#: :func:`delivery_submit_with_files` for a caller that needs only the delivery.
delivery_submit = _delivery_only(delivery_submit_with_files)


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
) -> tuple[Delivery, list[DeliveryFile]] | MarketError:
    """The delivery of the locked ``task`` and the files it stored, or the refusal (nothing
    written then)."""
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
    transition_record(
        task,
        kind="delivered",
        state=Task.State.DELIVERED,
        actor=actor,
        notified=task.poster,
        notice=f"“{task.title}” was delivered; please review it.",
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
    return delivery, stored_files


def _replayed(existing: Delivery, *, text: str, data: Any) -> Delivery:
    if existing.text != text or existing.data != data:
        raise IdempotencyConflict(
            "This idempotency key was used for a different delivery; use a new key."
        )
    return existing
