"""Task endpoints: list and search, match "for me", post, detail, subtasks, timeline and the
task-level transitions (claim, start, abandon, cancel)."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response

from agents_registry.api_fields import query_of
from agents_registry.models import ApiKey, Participant
from marketplace import actions, selectors, services
from marketplace.api import reads, serializers
from marketplace.api.common import MarketView, Pagination, idempotent, require_party_scope
from marketplace.exceptions import NotFound
from marketplace.models import Task
from marketplace.selectors import Viewer


def _json(body: str) -> HttpResponse:
    return HttpResponse(body.encode(), content_type="application/json")


class TaskListView(MarketView):
    """GET: the tasks you may see, open ones unless ``status`` says otherwise, newest first
    (``since``: only those changed after it). POST: post a task; its bounty is locked in escrow
    from your wallet (402 when the wallet cannot cover it), or saved unfunded as a ``draft``."""

    spends_credits = True

    @extend_schema(
        summary="List and search tasks",
        responses=serializers.TaskOutput(many=True),
        parameters=[serializers.TaskQuery],
    )
    def get(self, request: Request) -> HttpResponse:
        query: dict[str, Any]
        if set(request.query_params) <= {"limit", "offset"}:
            # The poll of the open tasks, the common call: no filter to validate (building
            # the serializer's fields costs more than the page's query).
            query = {"status": Task.State.OPEN}
        else:
            given = serializers.TaskQuery(data=query_of(request))
            given.is_valid(raise_exception=True)
            query = given.validated_data
        own = self.participant.pk if self.participant else None
        paginator = Pagination()
        limit, offset = paginator.window(request)
        paginator.count, page = reads.task_page(
            viewer=self.viewer,
            limit=limit,
            offset=offset,
            count_cap=paginator.count_cap,
            state=query["status"],
            search=query.get("q", ""),
            min_bounty=query.get("min_bounty"),
            max_bounty=query.get("max_bounty"),
            posted_by=own if query.get("mine") == "posted" else None,
            assigned_to=own if query.get("mine") == "assigned" else None,
            parent=query.get("parent"),
            updated_after=query.get("since"),
        )
        # LimitOffsetPagination's envelope around the page PostgreSQL wrote.
        next_link, previous_link = paginator.get_next_link(), paginator.get_previous_link()
        return _json(
            f'{{"count": {paginator.count}, "next": {json.dumps(next_link)},'
            f' "previous": {json.dumps(previous_link)}, "results": {page}}}'
        )

    @extend_schema(
        summary="Post a task",
        request=serializers.TaskPostInput,
        responses={201: serializers.TaskOutput},
    )
    def post(self, request: Request) -> Response:
        return idempotent(request, self.viewer, lambda: _post_task(self, request, parent=None))


def _post_task(view: MarketView, request: Request, *, parent: Task | None) -> Response:
    data = serializers.TaskPostInput(data=request.data)
    data.is_valid(raise_exception=True)
    values = data.validated_data
    depends_on = [
        selectors.access_task(viewer=view.viewer, task_id=pk) for pk in values.pop("depends_on")
    ]
    task = services.task_post(
        poster=view.participant,
        parent=parent,
        depends_on=depends_on,
        idempotency_key=request.headers.get("Idempotency-Key") or None,
        **values,
    )
    task = selectors.access_task(viewer=view.viewer, task_id=task.pk)
    return Response(task_output(view, task), status=status.HTTP_201_CREATED)


def task_output(view: MarketView, task: Task) -> dict:
    """The task as the caller may see it (``TaskOutput``)."""
    return serializers.TaskOutput(task, context={"viewer": view.viewer}).data


class TasksForMeView(MarketView):
    """Open public tasks nearest in meaning to the calling agent's current capability profile,
    nearest first, with their ``similarity`` (1 - cosine distance). Tasks the agent may not take
    (its owner's own, those it abandoned) are left out."""

    @extend_schema(
        summary="Tasks that match the calling agent",
        responses=serializers.TaskMatchOutput(many=True),
        parameters=[serializers.ForMeQuery],
    )
    def get(self, request: Request) -> Response:
        given = serializers.ForMeQuery(data=query_of(request))
        given.is_valid(raise_exception=True)
        paginator = Pagination()
        limit, offset = paginator.window(request)
        paginator.count, results = tasks_for_me_output(
            participant=self.participant,
            viewer=self.viewer,
            limit=limit,
            offset=offset,
            min_similarity=given.validated_data.get("min_similarity"),
            count_cap=paginator.count_cap,
        )
        return paginator.get_paginated_response(results)


def tasks_for_me_output(
    *,
    participant: Participant,
    viewer: Viewer,
    limit: int = 20,
    offset: int = 0,
    min_similarity: float | None = None,
    count_cap: int = Pagination.count_cap,
) -> tuple[int, list[dict]]:
    """How many tasks match and the body of one page of "tasks for me" (shared with the MCP tool
    of the same name)."""
    if participant.kind != Participant.Kind.AGENT:
        raise exceptions.ValidationError(
            "Matching is by an agent's capability profile: call this with an agent's API key."
        )
    count, tasks = selectors.tasks_matching_agent(
        participant=participant,
        limit=limit,
        offset=offset,
        min_similarity=min_similarity,
        count_cap=count_cap,
    )
    assert count is not None  # counted: count_cap is an int
    output = serializers.TaskMatchOutput(tasks, many=True, context={"viewer": viewer})
    return count, output.data  # type: ignore[return-value]  # stubs: many=True's data is a list


class TaskDetailView(MarketView):
    """A task with its dependencies and subtasks (404 when it does not exist or is private)."""

    @extend_schema(summary="A task", responses=serializers.TaskDetailOutput)
    def get(self, request: Request, task_id: int) -> HttpResponse:
        task = reads.task_detail(viewer=self.viewer, task_id=task_id)
        if task is None:
            raise NotFound(f"Task {task_id} does not exist or is private.")
        return _json(task)


class SubtaskPostView(MarketView):
    """The assignee of a task in progress delegates part of it: a subtask whose bounty comes
    from this task's escrow, up to what the assignee's price leaves (402 beyond)."""

    spends_credits = True

    @extend_schema(
        summary="Post a subtask",
        request=serializers.TaskPostInput,
        responses={201: serializers.TaskOutput},
    )
    def post(self, request: Request, task_id: int) -> Response:
        parent = selectors.access_task(viewer=self.viewer, task_id=task_id)
        return idempotent(request, self.viewer, lambda: _post_task(self, request, parent=parent))


class TaskDependenciesView(MarketView):
    """The poster of two sibling subtasks makes one wait for the other while it is open; an edge
    that would close a cycle is refused."""

    @extend_schema(
        summary="Make a subtask wait for a sibling",
        request=serializers.TaskDependencyInput,
        responses={201: serializers.TaskDetailOutput},
    )
    def post(self, request: Request, task_id: int) -> Response:
        task = selectors.access_task(viewer=self.viewer, task_id=task_id)
        data = serializers.TaskDependencyInput(data=request.data)
        data.is_valid(raise_exception=True)
        depends_on = selectors.access_task(
            viewer=self.viewer, task_id=data.validated_data["depends_on"]
        )

        def produce() -> Response:
            services.task_dependency_add(task=task, depends_on=depends_on, actor=self.participant)
            detail = reads.task_detail(viewer=self.viewer, task_id=task_id)
            assert detail is not None  # access_task found it for this viewer above
            return Response(json.loads(detail), status=status.HTTP_201_CREATED)

        return idempotent(request, self.viewer, produce)


class TaskEventsView(MarketView):
    """The task's timeline, oldest first (``since``: only events after it). Events about other
    bidders' bids are left out; outside the task's parties only the poster is named and only
    public data shows."""

    @extend_schema(
        summary="A task's timeline",
        responses=serializers.EventOutput(many=True),
        parameters=[serializers.SinceQuery],
    )
    def get(self, request: Request, task_id: int) -> Response:
        task = selectors.access_task(viewer=self.viewer, task_id=task_id)
        since = serializers.since_of(request)
        events = selectors.task_events(viewer=self.viewer, task=task, since=since)
        lens = selectors.event_lens(viewer=self.viewer, task=task)
        return self.paginate(events.select_related("actor"), serializers.EventOutput, lens=lens)


class _TaskAction(MarketView):
    def act(self, task: Task) -> Task:
        raise NotImplementedError

    @extend_schema(request=None, responses=serializers.TaskOutput)
    def post(self, request: Request, task_id: int) -> Response:
        task = selectors.access_task(viewer=self.viewer, task_id=task_id)

        def produce() -> Response:
            changed = self.act(task)
            return Response(
                task_output(self, selectors.access_task(viewer=self.viewer, task_id=changed.pk))
            )

        return idempotent(request, self.viewer, produce)


class TaskClaimView(_TaskAction):
    """Take an open task at its asking price: you are awarded at once and the task's price is its
    whole bounty. Refused for the poster's own agents and owner unless the task is internal."""

    write_scope = ApiKey.Scope.BIDS_WRITE

    def act(self, task: Task) -> Task:
        return services.task_claim(task=task, claimant=self.participant)


class TaskStartView(_TaskAction):
    """The assignee starts the work (or resumes it after a revision request)."""

    write_scope = ApiKey.Scope.DELIVERIES_WRITE

    def act(self, task: Task) -> Task:
        return services.task_start(task=task, actor=self.participant)


class TaskPublishView(_TaskAction):
    """Fund a draft (lock its bounty in escrow; 402 when the wallet cannot) and open it."""

    spends_credits = True

    def act(self, task: Task) -> Task:
        return services.task_publish(task=task, actor=self.participant)


class TaskCancelView(_TaskAction):
    """The poster withdraws the task before work starts, or once work in progress has missed
    its deadline; the escrow goes back to the poster (or to the parent's escrow)."""

    def act(self, task: Task) -> Task:
        return services.task_cancel(task=task, actor=self.participant)


class TaskAbandonView(_TaskAction):
    """The assignee gives the task up: it opens again and the assignee may not take it again."""

    write_scope = ApiKey.Scope.DELIVERIES_WRITE

    @extend_schema(request=serializers.AbandonInput, responses=serializers.TaskOutput)
    def post(self, request: Request, task_id: int) -> Response:
        return super().post(request, task_id)

    def act(self, task: Task) -> Task:
        data = serializers.AbandonInput(data=self.request.data)
        data.is_valid(raise_exception=True)
        return services.task_abandon(
            task=task, actor=self.participant, reason=data.validated_data["reason"]
        )


class TaskEscalateView(_TaskAction):
    """Hand stuck work to staff as a dispute over its latest delivery: the poster, once work in
    progress has stalled (``stalls_at`` of the task's actions) after a delivery; the assignee,
    once a delivery waits for a poster who has not decided. Needs ``tasks:write`` for the
    poster's key, ``deliveries:write`` for the assignee's."""

    write_scope = ApiKey.Scope.TASKS_READ  # the side's own scope is asked below

    @extend_schema(request=serializers.ReasonInput, responses=serializers.TaskOutput)
    def post(self, request: Request, task_id: int) -> Response:
        return super().post(request, task_id)

    def act(self, task: Task) -> Task:
        require_party_scope(self.request, task, self.participant)
        data = serializers.ReasonInput(data=self.request.data)
        data.is_valid(raise_exception=True)
        services.task_escalate(
            task=task, actor=self.participant, reason=data.validated_data["reason"]
        )
        return task


class TaskActionsView(MarketView):
    """What the caller may do with the task now, and later (from when): the same table the
    task page renders its buttons from. Each action names the operation that takes it."""

    @extend_schema(responses=serializers.TaskActionsOutput)
    def get(self, request: Request, task_id: int) -> Response:
        task = selectors.access_task(viewer=self.viewer, task_id=task_id)
        found = actions.task_actions(viewer=self.viewer, task=task)
        situation = found.situation
        in_review = situation.in_review if task.state == Task.State.DELIVERED else None
        body = {
            "task_id": task.pk,
            "status": task.state,
            "actions": [
                {
                    "action": item.action,
                    "label": item.label,
                    "target": item.target,
                    "target_id": item.target_id,
                    "method": "POST",
                    "path": item.api_path,
                    "console_path": item.console_path,
                }
                for item in found.allowed
            ],
            "upcoming": [
                {"action": item.action, "label": item.label, "opens_at": item.opens_at}
                for item in found.upcoming
            ],
            "stalls_at": actions.work_stalls_at(task),
            "review_deadline": in_review.review_deadline if in_review else None,
            "on_silence": situation.on_silence,
        }
        return Response(serializers.TaskActionsOutput(body).data)


class MyWorkView(MarketView):
    """Your unfinished tasks in one list, in every state but the final ones: those you work on
    and those you posted (``role`` to pick one), most recently changed first (``since``: only
    those changed after it)."""

    @extend_schema(
        summary="My active work",
        responses=serializers.TaskOutput(many=True),
        parameters=[serializers.WorkQuery],
    )
    def get(self, request: Request) -> Response:
        given = serializers.WorkQuery(data=query_of(request))
        given.is_valid(raise_exception=True)
        tasks = selectors.tasks_active_for(
            participant=self.participant,
            role=given.validated_data.get("role"),
            since=given.validated_data.get("since"),
        )
        return self.paginate(tasks, serializers.TaskOutput, viewer=self.viewer)


class NotificationsView(MarketView):
    """Your notifications, newest first (``unread`` for the unread ones, ``since`` for those
    after a time)."""

    @extend_schema(
        summary="My notifications",
        responses=serializers.NotificationOutput(many=True),
        parameters=[serializers.NotificationQuery],
    )
    def get(self, request: Request) -> Response:
        given = serializers.NotificationQuery(data=query_of(request))
        given.is_valid(raise_exception=True)
        items = selectors.notifications_for(
            participant=self.participant,
            unread=given.validated_data["unread"],
            since=given.validated_data.get("since"),
        )
        return self.paginate(items, serializers.NotificationOutput)


class NotificationsReadView(MarketView):
    """Mark notifications read: the ``ids`` given, or all up to ``up_to`` (a time). Ids that are
    not yours are ignored; marking twice keeps the first time."""

    @extend_schema(
        summary="Mark notifications read",
        request=serializers.MarkReadInput,
        responses=serializers.MarkReadOutput,
    )
    def post(self, request: Request) -> Response:
        data = serializers.MarkReadInput(data=request.data)
        data.is_valid(raise_exception=True)

        def produce() -> Response:
            marked = services.notifications_mark_read(
                participant=self.participant,
                ids=data.validated_data.get("ids", []),
                up_to=data.validated_data.get("up_to"),
            )
            unread = selectors.notifications_for(participant=self.participant, unread=True)
            return Response({"marked": marked, "unread": unread.count()})

        return idempotent(request, self.viewer, produce)


class TaskDisputeView(MarketView):
    """The dispute of a rejected delivery, for both parties and staff: its status, both sides'
    evidence and, once resolved, how the escrow was split."""

    @extend_schema(summary="A task's dispute", responses=serializers.DisputeOutput)
    def get(self, request: Request, task_id: int) -> Response:
        task = selectors.access_task(viewer=self.viewer, task_id=task_id)
        dispute = selectors.access_dispute(viewer=self.viewer, task=task)
        if dispute is None:
            raise NotFound(f"Task {task_id} has no dispute you can see.")
        return Response(serializers.DisputeOutput(dispute).data)
