"""The ``a2a`` runtime: the task goes to an outside agent over A2A (the ``a2a-sdk`` client, JSON-RPC
binding), which is polled until its A2A task ends.

``runtime_config`` (written by ``workers.services.a2a.a2a_agent_register`` from the agent's
card): ``{"card_url": ..., "endpoint": "<its JSON-RPC interface>", "protocol_version": "1.0",
"poll_interval_seconds": 2, "price_per_run": 0}``, plus the time limits every runtime takes.

Every request goes through the SSRF-safe chokepoint (``http_safety.safe_request``), as an httpx
transport under the SDK's client: the endpoint is resolved and pinned by us, private addresses
are refused, every answer is size-capped and the attempt's time limit bounds it all.

A2A task states map to the market's:

* ``submitted``, ``working``: the market's task is in progress; polled until the time limit,
  each change of state in the trace;
* ``completed``: a delivery, its text from the artifacts' text parts and its data from their data
  parts;
* ``input-required``: the agent's question becomes the delivery, marked as a question
  (``data["a2a"]["state"] == "input-required"``); the poster answers it by requesting a revision,
  and the revision's message goes to the agent in the same A2A task (see
  :func:`previous_exchange`);
* ``failed``, ``rejected``, ``canceled``, ``auth-required``: the attempt fails for good (the
  market gets the task back); transport errors, 429 and 5xx answers, and passing the time limit
  (the A2A task is then cancelled) are retried like every runtime's.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx
from a2a.client import ClientConfig, ClientFactory
from a2a.client.card_resolver import parse_agent_card
from a2a.client.errors import A2AClientError, A2AClientTimeoutError
from a2a.helpers.proto_helpers import get_data_parts, get_message_text, get_text_parts
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    Task,
    TaskState,
)
from a2a.utils.errors import A2AError
from a2a.utils.errors import InternalError as A2AInternalError
from a2a.utils.proto_utils import validate_proto_required_fields
from google.protobuf import json_format

from marketplace.models import Delivery
from workers.exceptions import EndpointRefused, RuntimeFailure, TransientRuntimeError
from workers.models import Execution
from workers.runtimes.base import RunContext, RunResult
from workers.runtimes.http_safety import DEFAULT_MAX_RESPONSE_BYTES, safe_request

USER_AGENT = "agent-marketplace-worker/1 (a2a)"
WORKING = {TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING}
FAILED = {
    TaskState.TASK_STATE_FAILED: "failed",
    TaskState.TASK_STATE_REJECTED: "rejected the task",
    TaskState.TASK_STATE_CANCELED: "cancelled the task",
    TaskState.TASK_STATE_AUTH_REQUIRED: "asks for authentication the market cannot give",
}
# Kept back from the time limit to cancel the A2A task and record the attempt in time.
CLOSING_SECONDS = 3.0


class SafeTransport(httpx.AsyncBaseTransport):
    """httpx's transport for the SDK's client, through the SSRF-safe chokepoint. The call blocks
    the event loop, which runs nothing else (one attempt, one request at a time), so the
    worker's time limit interrupts it like any blocking call."""

    def __init__(self, *, deadline: float, max_response_bytes: int) -> None:
        self.deadline = deadline
        self.max_response_bytes = max_response_bytes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() not in ("host", "content-length", "accept-encoding", "connection")
        }
        headers["User-Agent"] = USER_AGENT
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TransientRuntimeError("The attempt's time limit passed.")
        answer = safe_request(
            request.method,
            str(request.url),
            body=body,
            headers=headers,
            timeout=remaining,
            max_response_bytes=self.max_response_bytes,
        )
        return httpx.Response(
            answer.status,
            headers=[(k, v) for k, v in answer.headers.items() if k != "content-encoding"],
            content=answer.body,
            request=request,
        )


@dataclass(frozen=True)
class Exchange:
    """Where a previous attempt left the conversation: the A2A task and context, its state, and
    the poster's answer (the revision's message) to send there."""

    task_id: str
    context_id: str
    input_required: bool
    reply: str


def previous_exchange(context: RunContext) -> Exchange | None:
    """The A2A exchange to continue: this agent's last delivery of the task came from an A2A task
    and the poster asked for a revision of it (read from the market's rows)."""
    execution = Execution.objects.select_related("agent").filter(pk=context.execution_id).first()
    if execution is None:
        return None
    delivery = (
        Delivery.objects.filter(
            task_id=context.task.task_id, submitter_id=execution.agent.participant_id
        )
        .order_by("-created_at", "-pk")
        .first()
    )
    if delivery is None or delivery.status != Delivery.Status.REVISION_REQUESTED:
        return None
    a2a = (delivery.data or {}).get("a2a") if isinstance(delivery.data, dict) else None
    if not isinstance(a2a, dict) or not a2a.get("task_id"):
        return None
    return Exchange(
        task_id=str(a2a["task_id"]),
        context_id=str(a2a.get("context_id") or ""),
        input_required=a2a.get("state") == "input-required",
        reply=delivery.review_message,
    )


def task_message(context: RunContext, exchange: Exchange | None) -> Message:
    """What the agent is sent: the task (title, description, acceptance criteria), or, continuing
    an exchange, the poster's answer in the same A2A task (a question) or context (a revision)."""
    message = Message(
        message_id=f"exec_{context.execution_id}_{context.attempt}",
        role=Role.ROLE_USER,
        metadata={"market": {"task_id": context.task.task_id, "budget": context.task.budget}},
    )
    if exchange is None:
        brief = context.task
        text = f"{brief.title}\n\n{brief.description}"
        if brief.acceptance_criteria:
            text += f"\n\nAcceptance criteria:\n{brief.acceptance_criteria}"
        message.parts.append(Part(text=text))
        return message
    message.parts.append(Part(text=exchange.reply))
    if exchange.context_id:
        message.context_id = exchange.context_id
    if exchange.input_required:
        message.task_id = exchange.task_id
    else:
        message.reference_task_ids.append(exchange.task_id)
    return message


def _card(config: dict[str, Any]) -> AgentCard:
    """The part of the agent's card the SDK's client needs (kept in the runtime config)."""
    return AgentCard(
        name=str(config.get("name") or "agent"),
        supported_interfaces=[
            AgentInterface(
                url=str(config.get("endpoint", "")),
                protocol_binding="JSONRPC",
                protocol_version=str(config.get("protocol_version") or "1.0"),
            )
        ],
        capabilities=AgentCapabilities(streaming=False),
    )


def _failure(error: Exception) -> RuntimeFailure:
    """A runtime failure for what the SDK's client raised: transient when trying again may help."""
    if isinstance(error, RuntimeFailure):
        return error
    if isinstance(error, EndpointRefused):
        return RuntimeFailure(str(error))
    if isinstance(error, A2AClientTimeoutError):
        return TransientRuntimeError(f"The A2A agent did not answer in time: {error}")
    if isinstance(error, A2AClientError):
        status = getattr(getattr(error.__cause__, "response", None), "status_code", None)
        if status is not None and (status == 429 or status >= 500):
            return TransientRuntimeError(f"The A2A agent answered {status}.")
        return RuntimeFailure(f"The A2A agent's answer was refused: {error}")
    if isinstance(error, A2AInternalError):
        return TransientRuntimeError(f"The A2A agent had an internal error: {error}")
    return RuntimeFailure(f"The A2A agent refused the request: {type(error).__name__}: {error}")


def _status_text(task: Task) -> str:
    return get_message_text(task.status.message) if task.status.HasField("message") else ""


def _result(task: Task) -> RunResult:
    texts, data = [], []
    for artifact in task.artifacts:
        texts += get_text_parts(artifact.parts)
        data += get_data_parts(artifact.parts)
    text = "\n\n".join(part for part in texts if part) or _status_text(task)
    provenance = {"task_id": task.id, "context_id": task.context_id, "state": "completed"}
    if not text and not data:
        raise RuntimeFailure("The A2A agent completed its task without any result.")
    value: dict[str, Any] = {"a2a": provenance}
    if data:
        value["result"] = data[0] if len(data) == 1 else data
    return RunResult(text=text, data=value)


def _question(task: Task) -> RunResult:
    question = _status_text(task) or "The agent needs more input to go on."
    return RunResult(
        text=f"The agent asks: {question}\n\nAnswer it by requesting a revision.",
        data={
            "a2a": {
                "task_id": task.id,
                "context_id": task.context_id,
                "state": "input-required",
                "question": question,
            }
        },
    )


class Session:
    """The SDK's client on an event loop of its own, driven one call at a time: between calls no
    loop runs, so the trace is written (through the ORM) as the exchange goes."""

    def __init__(self, config: dict[str, Any], *, deadline: float) -> None:
        transport = SafeTransport(
            deadline=deadline,
            max_response_bytes=int(config.get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES)),
        )
        self.loop = asyncio.new_event_loop()
        self.http_client = httpx.AsyncClient(transport=transport)
        config_ = ClientConfig(streaming=False, polling=True, httpx_client=self.http_client)
        self.client = ClientFactory(config_).create(_card(config))

    def call(self, operation: Any) -> Any:
        try:
            return self.loop.run_until_complete(operation)
        except (A2AError, EndpointRefused, RuntimeFailure) as error:
            raise _failure(error) from error

    def send(self, message: Message) -> Task | Message:
        async def first() -> Task | Message:
            async for response in self.client.send_message(SendMessageRequest(message=message)):
                return response.task if response.HasField("task") else response.message
            raise RuntimeFailure("The A2A agent answered with neither a task nor a message.")

        return self.call(first())

    def close(self) -> None:
        self.loop.run_until_complete(self.http_client.aclose())
        self.loop.close()


def _exchange(
    session: Session, context: RunContext, exchange: Exchange | None, deadline: float
) -> RunResult:
    config = context.agent_config
    poll = max(0.2, float(config.get("poll_interval_seconds", 2)))
    message = task_message(context, exchange)
    started = time.monotonic()
    answer = session.send(message)
    if isinstance(answer, Message):  # an agent that answers at once, without a task
        context.record(
            kind="message",
            name="a2a:reply",
            outputs={"text": get_message_text(answer)[:2000]},
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        return RunResult(
            text=get_message_text(answer),
            data={"a2a": {"context_id": answer.context_id, "state": "completed"}},
        )
    task = answer
    context.record(
        kind="tool_call",
        name="a2a:SendMessage",
        inputs={
            "endpoint": config.get("endpoint"),
            "message_id": message.message_id,
            "continues": exchange.task_id if exchange else None,
        },
        outputs={"task_id": task.id, "state": TaskState.Name(task.status.state)},
        duration_ms=int((time.monotonic() - started) * 1000),
    )
    state = task.status.state
    while state in WORKING:
        if time.monotonic() + poll > deadline - CLOSING_SECONDS:
            _cancel(session, task, context)
            raise TransientRuntimeError(
                f"The A2A task {task.id} was still {TaskState.Name(state)} at the attempt's "
                f"time limit of {context.time_limit_seconds:.0f} s; it was cancelled."
            )
        time.sleep(poll)
        task = session.call(session.client.get_task(GetTaskRequest(id=task.id)))
        if task.status.state != state:
            state = task.status.state
            context.record(
                kind="message",
                name=f"a2a:{TaskState.Name(state)}",
                outputs={"task_id": task.id, "text": _status_text(task)[:2000]},
            )
    if state == TaskState.TASK_STATE_COMPLETED:
        return _result(task)
    if state == TaskState.TASK_STATE_INPUT_REQUIRED:
        return _question(task)
    if state in FAILED:
        detail = _status_text(task)
        raise RuntimeFailure(f"The A2A agent {FAILED[state]}" + (f": {detail}" if detail else "."))
    raise RuntimeFailure(f"The A2A task ended in an unknown state ({state}).")


def _cancel(session: Session, task: Task, context: RunContext) -> None:
    """Ask the agent to stop the task the attempt gives up on (a courtesy: it may refuse)."""
    try:
        session.call(session.client.cancel_task(CancelTaskRequest(id=task.id)))
    except RuntimeFailure as refused:
        context.record(kind="error", name="a2a:CancelTask", outputs={"message": str(refused)})
    else:
        context.record(kind="tool_call", name="a2a:CancelTask", inputs={"task_id": task.id})


def run(context: RunContext) -> RunResult:
    config = context.agent_config
    if not config.get("endpoint"):
        raise RuntimeFailure("The agent has no A2A endpoint; register it from its Agent Card.")
    limit = min(
        float(config.get("timeout_seconds", context.time_limit_seconds)),
        context.time_limit_seconds,
    )
    deadline = time.monotonic() + limit
    session = Session(config, deadline=deadline)
    try:
        result = _exchange(session, context, previous_exchange(context), deadline)
    finally:
        session.close()
    context.charge(cost=int(config.get("price_per_run", 0)))
    return result


def card_from_json(data: Any) -> AgentCard:
    """An Agent Card parsed by the SDK (legacy 0.3 cards converted), with every REQUIRED field;
    raises ValueError saying what is wrong."""
    try:
        card = parse_agent_card(data)
    except (json_format.ParseError, TypeError, ValueError) as error:
        raise ValueError(f"The Agent Card is not valid: {error}") from error
    try:
        validate_proto_required_fields(card)
    except A2AError as error:
        raise ValueError(f"The Agent Card lacks required fields: {error}") from error
    return card
