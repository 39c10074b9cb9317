"""Task endpoints: list and search, match "for me", post, detail, subtasks, timeline and the
task-level transitions (claim, start, abandon, cancel)."""

from __future__ import annotations

import json

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response

from agents_registry.models import ApiKey, Participant
from marketplace import selectors, services
from marketplace.api import reads
from marketplace.api import serializers as s
from marketplace.api.common import MarketView, Pagination, idempotent
from marketplace.exceptions import NotFound
from marketplace.models import Task


def _json(body: str) -> HttpResponse:
    return HttpResponse(body.encode(), content_type="application/json")


class TaskListView(MarketView):
    """Open tasks by default (``state`` to change), newest first; POST posts a task."""

    @extend_schema(
        responses=s.TaskOutput(many=True),
        parameters=[s.TaskQuery],
    )
    def get(self, request: Request) -> HttpResponse:
        if set(request.query_params) <= {"limit", "offset"}:
            # The poll of the open tasks, the common call: no filter to validate (building
            # the serializer's fields costs more than the page's query).
            query = {"state": Task.State.OPEN}
        else:
            given = s.TaskQuery(data=request.query_params)
            given.is_valid(raise_exception=True)
            query = given.validated_data
        own = self.participant.pk if self.participant else None
        paginator = Pagination()
        limit, offset = paginator.get_limit(request), paginator.get_offset(request)
        paginator.count, page = reads.task_page(
            viewer=self.viewer,
            limit=limit,
            offset=offset,
            count_cap=paginator.count_cap,
            state=query["state"],
            search=query.get("q", ""),
            min_bounty=query.get("min_bounty"),
            max_bounty=query.get("max_bounty"),
            posted_by=own if query.get("mine") == "posted" else None,
            assigned_to=own if query.get("mine") == "assigned" else None,
            parent=query.get("parent"),
        )
        paginator.limit, paginator.offset, paginator.request = limit, offset, request
        # LimitOffsetPagination's envelope around the page PostgreSQL wrote.
        next_link, previous_link = paginator.get_next_link(), paginator.get_previous_link()
        return _json(
            f'{{"count": {paginator.count}, "next": {json.dumps(next_link)},'
            f' "previous": {json.dumps(previous_link)}, "results": {page}}}'
        )

    @extend_schema(request=s.TaskPostInput, responses={201: s.TaskOutput})
    def post(self, request: Request) -> Response:
        return idempotent(request, self.viewer, lambda: _post_task(self, request, parent=None))


def _post_task(view: MarketView, request: Request, *, parent: Task | None) -> Response:
    data = s.TaskPostInput(data=request.data)
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
    return Response(s.TaskOutput(task).data, status=status.HTTP_201_CREATED)


class TasksForMeView(MarketView):
    """Open public tasks nearest to the calling agent's current capability profile."""

    @extend_schema(responses=s.TaskMatchOutput(many=True))
    def get(self, request: Request) -> Response:
        if self.participant.kind != Participant.Kind.AGENT:
            raise exceptions.ValidationError(
                "Matching is by an agent's capability profile: call this with an agent's API key."
            )
        tasks = selectors.tasks_matching_agent(participant=self.participant, limit=20)
        return Response({"results": s.TaskMatchOutput(tasks, many=True).data})


class TaskDetailView(MarketView):
    @extend_schema(responses=s.TaskDetailOutput)
    def get(self, request: Request, task_id: int) -> HttpResponse:
        task = reads.task_detail(viewer=self.viewer, task_id=task_id)
        if task is None:
            raise NotFound(f"Task {task_id} does not exist or is private.")
        return _json(task)


class SubtaskPostView(MarketView):
    """The assignee posts a subtask funded from the task's escrow."""

    @extend_schema(request=s.TaskPostInput, responses={201: s.TaskOutput})
    def post(self, request: Request, task_id: int) -> Response:
        parent = selectors.access_task(viewer=self.viewer, task_id=task_id)
        return idempotent(request, self.viewer, lambda: _post_task(self, request, parent=parent))


class TaskDependenciesView(MarketView):
    """The poster of two sibling subtasks makes one wait for the other while it is open; an edge
    that would close a cycle is refused."""

    @extend_schema(request=s.TaskDependencyInput, responses={201: s.TaskDetailOutput})
    def post(self, request: Request, task_id: int) -> HttpResponse:
        task = selectors.access_task(viewer=self.viewer, task_id=task_id)
        data = s.TaskDependencyInput(data=request.data)
        data.is_valid(raise_exception=True)
        depends_on = selectors.access_task(
            viewer=self.viewer, task_id=data.validated_data["depends_on"]
        )
        services.task_dependency_add(task=task, depends_on=depends_on, actor=self.participant)
        response = _json(reads.task_detail(viewer=self.viewer, task_id=task_id))
        response.status_code = status.HTTP_201_CREATED
        return response


class TaskEventsView(MarketView):
    @extend_schema(responses=s.EventOutput(many=True))
    def get(self, request: Request, task_id: int) -> Response:
        task = selectors.access_task(viewer=self.viewer, task_id=task_id)
        return self.paginate(selectors.task_events(task=task), s.EventOutput)


class _TaskAction(MarketView):
    def act(self, task: Task) -> Task:
        raise NotImplementedError

    @extend_schema(request=None, responses=s.TaskOutput)
    def post(self, request: Request, task_id: int) -> Response:
        task = selectors.access_task(viewer=self.viewer, task_id=task_id)

        def produce() -> Response:
            changed = self.act(task)
            return Response(
                s.TaskOutput(selectors.access_task(viewer=self.viewer, task_id=changed.pk)).data
            )

        return idempotent(request, self.viewer, produce)


class TaskClaimView(_TaskAction):
    """Take the task at its asking price."""

    write_scope = ApiKey.Scope.BIDS_WRITE

    def act(self, task: Task) -> Task:
        return services.task_claim(task=task, claimant=self.participant)


class TaskStartView(_TaskAction):
    write_scope = ApiKey.Scope.DELIVERIES_WRITE

    def act(self, task: Task) -> Task:
        return services.task_start(task=task, actor=self.participant)


class TaskPublishView(_TaskAction):
    """Fund a draft (lock its bounty in escrow) and open it for bids."""

    def act(self, task: Task) -> Task:
        return services.task_publish(task=task, actor=self.participant)


class TaskCancelView(_TaskAction):
    def act(self, task: Task) -> Task:
        return services.task_cancel(task=task, actor=self.participant)


class TaskAbandonView(_TaskAction):
    write_scope = ApiKey.Scope.DELIVERIES_WRITE

    @extend_schema(request=s.ReasonInput, responses=s.TaskOutput)
    def post(self, request: Request, task_id: int) -> Response:
        return super().post(request, task_id)

    def act(self, task: Task) -> Task:
        data = s.ReasonInput(data=self.request.data)
        data.is_valid(raise_exception=True)
        return services.task_abandon(
            task=task, actor=self.participant, reason=data.validated_data["reason"]
        )


class NotificationsView(MarketView):
    @extend_schema(responses=s.NotificationOutput(many=True))
    def get(self, request: Request) -> Response:
        items = selectors.notifications_for(participant=self.participant)
        return Response({"results": s.NotificationOutput(items, many=True).data})
