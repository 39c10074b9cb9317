"""The market's A2A endpoint (JSON-RPC, ``a2a-sdk``'s dispatcher): where an A2A client hires
through the market, the address in every Agent Card (``marketplace.protocols.agent_cards``).

The caller authenticates with an API key of its market account; every call is the same service
the REST API calls, as that participant:

* ``SendMessage`` posts a task (its text: a first line as title, the rest as description) with
  the bounty (message metadata ``bounty``, by default the agent's price) locked in escrow. Sent
  to an agent (the card's ``tenant``) that the market hosts, the agent is hired at once: it bids
  its price and the caller awards it; any other task is open for bids. The message id is the
  task's idempotency key, so a retried send posts once.
* ``SendMessage`` continuing a task (``task_id``) answers its delivery: ``accept`` accepts and
  pays, ``reject: <reason>`` opens a dispute, anything else asks for a revision.
* ``GetTask`` reads it, ``CancelTask`` cancels it (the escrow goes back).

Market states as A2A states: open is ``submitted``; awarded, in progress, a revision requested or
a dispute is ``working``; delivered is ``input-required`` (the client reviews); accepted and
resolved are ``completed``; cancelled and expired are ``canceled``. Deliveries are the task's
artifacts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from a2a.helpers.proto_helpers import get_message_text, new_text_part
from a2a.server.request_handlers import RequestHandler
from a2a.types import (
    Artifact,
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    Part,
    Role,
    SendMessageRequest,
    TaskState,
    TaskStatus,
)
from a2a.types import Task as A2ATask
from a2a.utils.errors import (
    InvalidParamsError,
    PushNotificationNotSupportedError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from django.db import close_old_connections
from google.protobuf import json_format, struct_pb2

from agents_registry.authentication import api_key_require_scope
from agents_registry.models import Agent, ApiKey, CapabilityProfile
from marketplace import selectors, services
from marketplace.api import serializers
from marketplace.exceptions import InvalidInput, NotFound
from marketplace.models import Bid, Delivery, Task
from marketplace.protocols.auth import Caller, caller_authenticate, caller_throttle, error_body
from workers.services.executions import HOSTED_RUNTIMES

STATES: dict[str, TaskState] = {
    Task.State.DRAFT: TaskState.TASK_STATE_SUBMITTED,
    Task.State.OPEN: TaskState.TASK_STATE_SUBMITTED,
    Task.State.AWARDED: TaskState.TASK_STATE_WORKING,
    Task.State.IN_PROGRESS: TaskState.TASK_STATE_WORKING,
    Task.State.REVISION_REQUESTED: TaskState.TASK_STATE_WORKING,
    Task.State.DISPUTED: TaskState.TASK_STATE_WORKING,
    Task.State.DELIVERED: TaskState.TASK_STATE_INPUT_REQUIRED,
    Task.State.ACCEPTED: TaskState.TASK_STATE_COMPLETED,
    Task.State.RESOLVED: TaskState.TASK_STATE_COMPLETED,
    Task.State.CANCELLED: TaskState.TASK_STATE_CANCELED,
    Task.State.EXPIRED: TaskState.TASK_STATE_CANCELED,
}
SCOPE = ApiKey.Scope.TASKS_WRITE


def _status_text(task: Task) -> str:
    if task.state == Task.State.OPEN:
        return f"Posted as task #{task.pk} with {task.bounty} credits in escrow; open for bids."
    if task.state == Task.State.DELIVERED:
        return (
            "Delivered (see the artifacts). Reply `accept` to accept it and pay "
            f"{task.price} credits, `reject: <reason>` to open a dispute, or say what to change."
        )
    if task.state == Task.State.DISPUTED:
        return "Rejected: the dispute waits for staff, who split the escrow."
    return dict(Task.State.choices)[task.state] + "."


def task_as_a2a(task: Task, caller: Caller) -> A2ATask:
    """The market's task as an A2A task, its deliveries (those the caller may see) as artifacts."""
    deliveries = selectors.deliveries_for_task(viewer=caller.viewer, task=task).order_by(
        "created_at", "pk"
    )
    artifacts = []
    for delivery in deliveries:
        parts = [new_text_part(delivery.text)] if delivery.text else []
        if delivery.data is not None:
            parts.append(Part(data=json_format.ParseDict(delivery.data, struct_pb2.Value())))
        artifacts.append(
            Artifact(
                artifact_id=f"delivery-{delivery.pk}",
                name=f"Delivery #{delivery.pk}",
                description=dict(Delivery.Status.choices)[delivery.status],
                parts=parts or [new_text_part("(files only: see the task's page)")],
            )
        )
    status = TaskStatus(
        state=STATES[task.state],
        message=Message(
            message_id=f"task-{task.pk}-{task.state}",
            role=Role.ROLE_AGENT,
            parts=[new_text_part(_status_text(task))],
            task_id=str(task.pk),
            context_id=str(task.parent_id or task.pk),
        ),
    )
    status.timestamp.FromDatetime(task.updated_at)
    metadata = struct_pb2.Struct()
    metadata.update(
        {
            "market": {
                "task_id": task.pk,
                "state": task.state,
                "bounty": task.bounty,
                "price": task.price,
                "assignee_id": task.assignee_id,
                "url": f"/tasks/{task.pk}/",
            }
        }
    )
    return A2ATask(
        id=str(task.pk),
        context_id=str(task.parent_id or task.pk),
        status=status,
        artifacts=artifacts,
        metadata=metadata,
    )


def _market_task(caller: Caller, task_id: str) -> Task:
    if not task_id.isdigit():
        raise NotFound(f"Task {task_id} does not exist or is private.")
    return selectors.access_task(viewer=caller.viewer, task_id=int(task_id))


def _hired_agent(tenant: str) -> tuple[Agent, CapabilityProfile] | None:
    if not tenant:
        return None
    profile = (
        CapabilityProfile.objects.filter(
            agent__slug=tenant, is_current=True, agent__status=Agent.Status.ACTIVE
        )
        .select_related("agent__participant")
        .defer("embedding")
        .first()
    )
    if profile is None:
        raise NotFound(f"No active agent {tenant!r} takes work in this market.")
    return profile.agent, profile


def _metadata(request: SendMessageRequest) -> dict[str, Any]:
    values = json_format.MessageToDict(request.metadata) if request.HasField("metadata") else {}
    if request.message.HasField("metadata"):
        values.update(json_format.MessageToDict(request.message.metadata))
    return values


def _post(caller: Caller, request: SendMessageRequest, tenant: str) -> Task:
    message = request.message
    text = get_message_text(message).strip()
    metadata = _metadata(request)
    hired = _hired_agent(tenant)
    bounty = metadata.get("bounty", hired[1].price_per_task if hired else None)
    if bounty is None:
        raise InvalidInput(
            "Say how many credits to put in escrow: the message's metadata `bounty`."
        )
    title = next((line.strip() for line in text.splitlines() if line.strip()), "")
    given = {
        "title": title[:200],
        "description": text,
        "bounty": int(bounty) if isinstance(bounty, int | float) else bounty,
    }
    if metadata.get("acceptance_criteria"):
        given["acceptance_criteria"] = metadata["acceptance_criteria"]
    values = serializers.TaskPostInput(data=given)
    values.is_valid(raise_exception=True)
    fields = dict(values.validated_data)
    fields.pop("depends_on", None)
    if hired and hired[1].price_per_task > fields["bounty"]:
        raise InvalidInput(
            f"{hired[0].name} asks {hired[1].price_per_task} credits a task; the bounty is "
            f"{fields['bounty']}."
        )
    task = services.task_post(
        poster=caller.participant,
        idempotency_key=f"a2a:{message.message_id}"[:120] if message.message_id else None,
        **fields,
    )
    if hired and hired[0].runtime in HOSTED_RUNTIMES and task.state == Task.State.OPEN:
        _hire(caller, task, *hired)
    return selectors.access_task(viewer=caller.viewer, task_id=task.pk)


def _hire(caller: Caller, task: Task, agent: Agent, profile: CapabilityProfile) -> None:
    """A hosted agent bids its price (as the market bids for its hosted agents) and the caller
    awards it: the two services a poster and a hosted agent use, one after the other."""
    bid = Bid.objects.filter(task=task, bidder=agent.participant, status=Bid.Status.ACTIVE).first()
    if bid is None:
        bid = services.bid_place(
            task=task,
            bidder=agent.participant,
            price=profile.price_per_task or 1,
            eta_hours=max(1, math.ceil(profile.expected_latency_seconds / 3600)),
            plan=f"Hired over A2A by {caller.participant.display_name}.",
        )
    services.bid_award(bid=bid, actor=caller.participant)


def _reply(caller: Caller, request: SendMessageRequest) -> Task:
    task = _market_task(caller, request.message.task_id)
    text = get_message_text(request.message).strip()
    if task.state != Task.State.DELIVERED:
        raise InvalidInput(f"Task #{task.pk} is {task.state}: there is no delivery to answer.")
    delivery = Delivery.objects.filter(task=task, status=Delivery.Status.SUBMITTED).first()
    if delivery is None:
        raise InvalidInput(f"Task #{task.pk} has no delivery in review.")
    word = text.lower()
    if word in ("accept", "accepted", "ok", "approve"):
        services.delivery_accept(delivery=delivery, actor=caller.participant)
    elif word.startswith("reject"):
        reason = text.split(":", 1)[1].strip() if ":" in text else ""
        services.delivery_reject(
            delivery=delivery, actor=caller.participant, reason=reason or "Rejected over A2A."
        )
    else:
        services.revision_request(delivery=delivery, actor=caller.participant, message=text)
    return selectors.access_task(viewer=caller.viewer, task_id=task.pk)


def _as_caller(authorization: str, action: Callable[[Caller], Any]) -> Any:
    """Run ``action`` for the caller (in a worker thread); market refusals become A2A errors
    carrying the API's message and error body."""
    close_old_connections()
    try:
        caller = caller_authenticate(authorization)
        api_key_require_scope(caller.api_key, SCOPE)
        caller_throttle(caller, write=True)
        return action(caller)
    except NotFound as missing:
        raise TaskNotFoundError(str(missing), data=error_body(missing)) from missing
    except Exception as error:
        body = error_body(error)
        if body is None:
            raise
        raise InvalidParamsError(body["error"]["message"], data=body) from error
    finally:
        close_old_connections()


def _authorization(context: Any) -> str:
    return (getattr(context, "state", {}) or {}).get("headers", {}).get("authorization", "")


class MarketRequestHandler(RequestHandler):
    """A2A's request handler over the market's services (see the module's docstring)."""

    async def _run(self, context: Any, action: Callable[[Caller], Any]) -> Any:
        return await anyio.to_thread.run_sync(_as_caller, _authorization(context), action)

    async def on_message_send(self, params: SendMessageRequest, context: Any) -> A2ATask:
        if params.message.task_id:
            return await self._run(context, lambda c: task_as_a2a(_reply(c, params), c))
        tenant = params.tenant or getattr(context, "tenant", "")
        return await self._run(context, lambda c: task_as_a2a(_post(c, params, tenant), c))

    async def on_get_task(self, params: GetTaskRequest, context: Any) -> A2ATask:
        return await self._run(context, lambda c: task_as_a2a(_market_task(c, params.id), c))

    async def on_cancel_task(self, params: CancelTaskRequest, context: Any) -> A2ATask:
        def cancel(caller: Caller) -> A2ATask:
            task = _market_task(caller, params.id)
            services.task_cancel(task=task, actor=caller.participant)
            return task_as_a2a(selectors.access_task(viewer=caller.viewer, task_id=task.pk), caller)

        return await self._run(context, cancel)

    async def on_list_tasks(self, params: ListTasksRequest, context: Any) -> ListTasksResponse:
        def listed(caller: Caller) -> ListTasksResponse:
            tasks = selectors.tasks_posted_by(participant=caller.participant)[:50]
            return ListTasksResponse(tasks=[task_as_a2a(task, caller) for task in tasks])

        return await self._run(context, listed)

    async def on_message_send_stream(self, params: Any, context: Any) -> Any:
        raise UnsupportedOperationError("Streaming is not offered: poll GetTask.")
        yield  # an async generator, as the interface declares

    async def on_subscribe_to_task(self, params: Any, context: Any) -> Any:
        raise UnsupportedOperationError("Streaming is not offered: poll GetTask.")
        yield

    async def on_create_task_push_notification_config(self, params: Any, context: Any) -> Any:
        raise PushNotificationNotSupportedError(
            "Subscribe to the market's signed events instead: /api/v1/subscriptions/."
        )

    async def on_get_task_push_notification_config(self, params: Any, context: Any) -> Any:
        raise PushNotificationNotSupportedError()

    async def on_list_task_push_notification_configs(self, params: Any, context: Any) -> Any:
        raise PushNotificationNotSupportedError()

    async def on_delete_task_push_notification_config(self, params: Any, context: Any) -> Any:
        raise PushNotificationNotSupportedError()

    async def on_get_extended_agent_card(self, params: Any, context: Any) -> Any:
        raise UnsupportedOperationError("The public Agent Cards are the whole story.")
