"""The market as MCP tools and resources (the official ``mcp`` SDK's ``MCPServer``).

Every tool is the REST endpoint of the same operation without HTTP around it: it authenticates the
caller's API key with the API's own authenticator (``Authorization: Api-Key <key>``, or ``Bearer
<key>`` for MCP hosts that only send bearer tokens), requires the scope that endpoint requires
(read from the endpoint's class, so the two cannot drift apart), validates its input with the
endpoint's serializer, calls the same service or selector, and answers with the endpoint's body. A
refusal is the API's error body, ``{"error": {"code", "message", "fields"}}``, as the tool's error
text. Served over streamable HTTP by ``marketplace.protocols.asgi``.

Tools run in worker threads (the SDK runs a synchronous tool with ``anyio.to_thread``), each
opening and ending its use of the database as a Django request does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import close_old_connections
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError

from agents_registry.authentication import api_key_require_scope
from agents_registry.models import Participant
from marketplace import selectors, services
from marketplace.api import bids as bid_api
from marketplace.api import deliveries as delivery_api
from marketplace.api import reads, serializers
from marketplace.api import tasks as task_api
from marketplace.api.common import Pagination
from marketplace.exceptions import NotFound
from marketplace.models import Delivery, Task
from marketplace.protocols.auth import Caller, caller_authenticate, caller_throttle, error_body
from marketplace.views import wallet as wallet_views

INSTRUCTIONS = """\
A task market where agents and people post work with a credit bounty held in escrow, bid on it
or claim it, deliver, and are paid when the poster accepts. Authenticate with your API key
(header `Authorization: Api-Key <key>`). A typical loop: tasks_for_me -> task_read -> bid_place
(or task_claim) -> once awarded, task_start -> delivery_submit -> wallet_read. Errors are the
REST API's error bodies: {"error": {"code", "message", "fields"}}."""

server = MCPServer(
    "agent-marketplace",
    title="Agent marketplace",
    instructions=INSTRUCTIONS,
    version="1.0.0",
)


def _call(ctx: Context, scope: str, action: Callable[[Caller], Any]) -> Any:
    """Run ``action`` for the caller of this request once it holds ``scope``."""
    close_old_connections()
    try:
        caller = caller_authenticate((ctx.headers or {}).get("authorization", ""))
        api_key_require_scope(caller.api_key, scope)
        caller_throttle(caller, write=scope.endswith(":write"))
        return action(caller)
    except Exception as error:
        body = error_body(error)
        if body is None:
            raise
        raise ToolError(json.dumps(body)) from error
    finally:
        close_old_connections()


def _validated(serializer_class: type, data: dict[str, Any]) -> dict[str, Any]:
    given = serializer_class(data=data)
    given.is_valid(raise_exception=True)
    return dict(given.validated_data)


def _task_output(caller: Caller, task_id: int) -> dict[str, Any]:
    return serializers.TaskOutput(selectors.access_task(viewer=caller.viewer, task_id=task_id)).data


def _task_detail(caller: Caller, task_id: int) -> dict[str, Any]:
    found = reads.task_detail(viewer=caller.viewer, task_id=task_id)
    if found is None:
        raise NotFound(f"Task {task_id} does not exist or is private.")
    return json.loads(found)


# --- finding and reading work ---------------------------------------------------------------------


@server.tool()
def tasks_for_me(ctx: Context, limit: int = 20) -> dict[str, Any]:
    """Open public tasks nearest in meaning to your agent's current capability profile, best
    first, each with its bounty and `similarity` (needs an agent's key)."""
    return _call(
        ctx,
        task_api.TasksForMeView.read_scope,
        lambda caller: {
            "results": task_api.tasks_for_me_output(
                participant=caller.participant, viewer=caller.viewer, limit=max(1, min(limit, 50))
            )[1]
        },
    )


@server.tool()
def tasks_search(
    ctx: Context,
    q: str = "",
    state: str = Task.State.OPEN,
    min_bounty: int | None = None,
    max_bounty: int | None = None,
    limit: int = 20,
    offset: int = 0,
) -> dict[str, Any]:
    """Tasks you may see, newest first: open ones by default; `q` searches title and description;
    `state` is one of draft, open, awarded, in_progress, delivered, revision_requested, accepted,
    disputed, resolved, cancelled, expired."""

    def search(caller: Caller) -> dict[str, Any]:
        query = {"q": q, "state": state, "min_bounty": min_bounty, "max_bounty": max_bounty}
        values = _validated(
            serializers.TaskQuery, {k: v for k, v in query.items() if v not in (None, "")}
        )
        count, page = reads.task_page(
            viewer=caller.viewer,
            limit=max(1, min(limit, Pagination.max_limit)),
            offset=max(0, offset),
            count_cap=Pagination.count_cap,
            state=values["state"],
            search=values.get("q", ""),
            min_bounty=values.get("min_bounty"),
            max_bounty=values.get("max_bounty"),
        )
        return {"count": count, "results": json.loads(page)}

    return _call(ctx, task_api.TaskListView.read_scope, search)


@server.tool()
def task_read(ctx: Context, task_id: int) -> dict[str, Any]:
    """One task: its description, acceptance criteria and machine checks, bounty, state,
    poster, assignee, dependencies and subtasks."""
    return _call(
        ctx, task_api.TaskDetailView.read_scope, lambda caller: _task_detail(caller, task_id)
    )


@server.tool()
def my_bids(ctx: Context, limit: int = 20) -> dict[str, Any]:
    """Your bids, newest first, with their status (active, awarded, lost, withdrawn)."""
    return _call(
        ctx,
        bid_api.MyBidsView.read_scope,
        lambda caller: {
            "results": serializers.BidOutput(
                selectors.bids_of(participant=caller.participant)[: max(1, min(limit, 100))],
                many=True,
            ).data
        },
    )


# --- bidding and taking work ----------------------------------------------------------------------


@server.tool()
def bid_place(ctx: Context, task_id: int, price: int, eta_hours: int, plan: str) -> dict[str, Any]:
    """Offer to do an open task for `price` credits (at most its bounty) within `eta_hours`,
    with a short `plan`. The poster awards one bid, or the market does automatically."""

    def place(caller: Caller) -> dict[str, Any]:
        values = _validated(
            serializers.BidInput, {"price": price, "eta_hours": eta_hours, "plan": plan}
        )
        bid = services.bid_place(
            task=Task(pk=task_id), bidder=caller.participant, viewer=caller.viewer, **values
        )
        return serializers.bid_output(bid)

    return _call(ctx, bid_api.TaskBidsView.write_scope, place)


@server.tool()
def bid_withdraw(ctx: Context, bid_id: int) -> dict[str, Any]:
    """Withdraw your active bid."""

    def withdraw(caller: Caller) -> dict[str, Any]:
        bid = selectors.access_bid(viewer=caller.viewer, bid_id=bid_id)
        services.bid_withdraw(bid=bid, actor=caller.participant)
        return serializers.BidOutput(selectors.access_bid(viewer=caller.viewer, bid_id=bid_id)).data

    return _call(ctx, bid_api.BidWithdrawView.write_scope, withdraw)


def _task_transition(
    ctx: Context, scope: str, task_id: int, act: Callable[[Task, Participant], object]
) -> dict[str, Any]:
    """A transition of one task by the caller, answered with the task as it is after."""

    def transition(caller: Caller) -> dict[str, Any]:
        act(selectors.access_task(viewer=caller.viewer, task_id=task_id), caller.participant)
        return _task_output(caller, task_id)

    return _call(ctx, scope, transition)


@server.tool()
def task_claim(ctx: Context, task_id: int) -> dict[str, Any]:
    """Take an open task at its asking price (its bounty), first come first served."""
    return _task_transition(
        ctx,
        task_api.TaskClaimView.write_scope,
        task_id,
        lambda task, caller: services.task_claim(task=task, claimant=caller),
    )


@server.tool()
def task_start(ctx: Context, task_id: int) -> dict[str, Any]:
    """Start a task awarded to you (or resume it after the poster asked for a revision)."""
    return _task_transition(
        ctx,
        task_api.TaskStartView.write_scope,
        task_id,
        lambda task, caller: services.task_start(task=task, actor=caller),
    )


@server.tool()
def delivery_submit(
    ctx: Context,
    task_id: int,
    text: str = "",
    data: Any = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Hand in your work on a task you started: `text` and/or JSON `data`. Idempotent: a retry
    with the same `idempotency_key` (by default, one derived from the task, the content and the
    round of revisions) returns the first delivery instead of making a second. The poster then
    reviews it; accepted work pays you the price less the platform fee."""

    def deliver(caller: Caller) -> dict[str, Any]:
        values = _validated(serializers.DeliveryInput, {"text": text, "data": data})
        values.pop("files", None)
        # After a revision request the same content is a new delivery, not a replay.
        revised = Delivery.objects.filter(
            task_id=task_id,
            submitter=caller.participant,
            status=Delivery.Status.REVISION_REQUESTED,
        ).count()
        content = json.dumps([task_id, revised, text, data], sort_keys=True, default=str)
        key = idempotency_key or "mcp-" + hashlib.sha256(content.encode()).hexdigest()[:40]
        submitted = services.delivery_submit_with_files(
            task=Task(pk=task_id),
            actor=caller.participant,
            idempotency_key=key,
            viewer=caller.viewer,
            **values,
        )
        return serializers.delivery_output(submitted.delivery, files=submitted.files)

    return _call(ctx, delivery_api.TaskDeliveriesView.write_scope, deliver)


@server.tool()
def subtask_post(
    ctx: Context,
    task_id: int,
    title: str,
    description: str,
    bounty: int,
    acceptance_criteria: str = "",
    checks: dict[str, Any] | None = None,
    deadline: datetime | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Delegate part of a task you are working on: post a subtask whose bounty comes out of the
    task's escrow (at most your price minus what other subtasks hold or spent)."""

    def post(caller: Caller) -> dict[str, Any]:
        parent = selectors.access_task(viewer=caller.viewer, task_id=task_id)
        given = {
            "title": title,
            "description": description,
            "bounty": bounty,
            "acceptance_criteria": acceptance_criteria,
            "checks": checks or {},
            "deadline": deadline,
        }
        values = _validated(serializers.TaskPostInput, given)
        depends_on = [
            selectors.access_task(viewer=caller.viewer, task_id=pk)
            for pk in values.pop("depends_on")
        ]
        task = services.task_post(
            poster=caller.participant,
            parent=parent,
            depends_on=depends_on,
            idempotency_key=idempotency_key,
            **values,
        )
        return _task_output(caller, task.pk)

    return _call(ctx, task_api.SubtaskPostView.write_scope, post)


# --- money ---------------------------------------------------------------------------------------


@server.tool()
def wallet_read(ctx: Context) -> dict[str, Any]:
    """Your credits: posted, held in escrows you funded, available to spend, owed."""
    return _call(
        ctx,
        wallet_views.WalletBalanceApi.read_scope,
        lambda caller: wallet_views.wallet_balance_output(owner_ref=caller.participant.ledger_ref),
    )


@server.tool()
def wallet_statement(ctx: Context, before: int | None = None, limit: int = 50) -> dict[str, Any]:
    """Your statement, newest first, each line with its running balance; pass `next_before` as
    `before` for the next page."""
    return _call(
        ctx,
        wallet_views.WalletStatementApi.read_scope,
        lambda caller: wallet_views.wallet_statement_output(
            owner_ref=caller.participant.ledger_ref, before=before, limit=limit
        ),
    )


# --- resources ------------------------------------------------------------------------------------


def _read(ctx: Context, scope: str, action: Callable[[Caller], Any]) -> str:
    """A resource's JSON; a refusal is a resource error carrying the API's error body."""
    try:
        return json.dumps(_call(ctx, scope, action))
    except ToolError as refused:
        raise ResourceError(str(refused)) from refused


@server.resource(
    "market://tasks/{task_id}", name="task", mime_type="application/json", title="A task"
)
def task_resource(task_id: int, ctx: Context) -> str:
    """A task as `task_read` returns it."""
    return _read(
        ctx, task_api.TaskDetailView.read_scope, lambda caller: _task_detail(caller, task_id)
    )


@server.resource(
    "market://tasks/{task_id}/deliveries",
    name="task-deliveries",
    mime_type="application/json",
    title="A task's deliveries",
)
def task_deliveries_resource(task_id: int, ctx: Context) -> str:
    """The deliveries of a task, newest first (only its poster and assignee see them)."""

    def deliveries(caller: Caller) -> dict[str, Any]:
        task = selectors.access_task(viewer=caller.viewer, task_id=task_id)
        found = selectors.deliveries_for_task(viewer=caller.viewer, task=task)
        return {"results": serializers.DeliveryOutput(found[:100], many=True).data}

    return _read(ctx, delivery_api.TaskDeliveriesView.read_scope, deliveries)
