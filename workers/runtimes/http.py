"""The ``http`` runtime: POST the task, signed, to the agent's endpoint.

``runtime_config``: ``{"endpoint": "https://...", "timeout_seconds": 30,
"max_response_bytes": 1000000, "price_per_run": 0, "price_per_1k_input_tokens": 0,
"price_per_1k_output_tokens": 0}``.

The agent answers ``200`` with ``{"text": ..., "data": ..., "usage": {"input_tokens": n,
"output_tokens": n}}`` (the deliverable), or ``202`` when it accepted the task and will deliver
through the API later. ``429`` and ``5xx`` are worth a retry; any other answer fails the attempt.
The message id is the same for every try of one attempt (``exec_<id>_<attempt>``) so an agent that
deduplicates by id does the work once per attempt.
"""

from __future__ import annotations

import json
import time
from typing import Any

from workers.exceptions import EndpointRefused, RuntimeFailure, TransientRuntimeError
from workers.runtimes.base import RunContext, RunResult, price_for_tokens
from workers.runtimes.http_safety import DEFAULT_MAX_RESPONSE_BYTES, safe_request
from workers.runtimes.signing import webhook_headers

USER_AGENT = "agent-marketplace-worker/1"


def request_body(context: RunContext) -> dict[str, Any]:
    task = context.task
    revision = task.revision
    return {
        "type": "task.execute",
        "execution": {"id": context.execution_id, "attempt": context.attempt},
        "task": {
            "id": task.task_id,
            "title": task.title,
            "description": task.description,
            "acceptance_criteria": task.acceptance_criteria,
            "checks": task.checks,
            "budget": task.budget,
        },
        # Set when the poster asked to revise an earlier delivery of this task.
        "revision": {"delivery_id": revision.delivery_id, "message": revision.message}
        if revision
        else None,
        "callbacks": context.callback_urls,
    }


def run(context: RunContext) -> RunResult:
    config = context.agent_config
    endpoint = str(config.get("endpoint", ""))
    if not context.webhook_secrets:
        raise RuntimeFailure("The agent has no webhook signing secret; rotate one in first.")
    body = json.dumps(request_body(context), separators=(",", ":")).encode()
    message_id = f"exec_{context.execution_id}_{context.attempt}"
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **webhook_headers(secrets=context.webhook_secrets, message_id=message_id, body=body),
    }
    timeout = min(float(config.get("timeout_seconds", 30)), context.time_limit_seconds)
    started = time.monotonic()
    try:
        response = safe_request(
            "POST",
            endpoint,
            body=body,
            headers=headers,
            timeout=timeout,
            max_response_bytes=int(config.get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES)),
        )
    except EndpointRefused as error:
        raise RuntimeFailure(str(error)) from error
    elapsed_ms = int((time.monotonic() - started) * 1000)
    context.record(
        kind="tool_call",
        name="http:POST",
        inputs={"endpoint": endpoint, "message_id": message_id, "bytes": len(body)},
        outputs={"status": response.status, "bytes": len(response.body)},
        duration_ms=elapsed_ms,
    )
    if response.status == 429 or response.status >= 500:
        raise TransientRuntimeError(f"The agent's endpoint answered {response.status}.")
    if response.status == 202:
        return RunResult(accepted_for_later_delivery=True)
    if response.status != 200:
        raise RuntimeFailure(
            f"The agent's endpoint answered {response.status}: {response.body[:200]!r}."
        )
    try:
        answer = json.loads(response.body)
    except ValueError as error:
        raise RuntimeFailure("The agent's answer is not JSON.") from error
    if not isinstance(answer, dict) or not (answer.get("text") or answer.get("data") is not None):
        raise RuntimeFailure('The agent\'s answer needs "text" or "data".')
    usage = answer.get("usage")
    if not isinstance(usage, dict):
        usage = {}
    input_tokens = max(0, int(usage.get("input_tokens", 0) or 0))
    output_tokens = max(0, int(usage.get("output_tokens", 0) or 0))
    cost = int(config.get("price_per_run", 0)) + price_for_tokens(
        config, input_tokens=input_tokens, output_tokens=output_tokens
    )
    context.charge(cost=cost, input_tokens=input_tokens, output_tokens=output_tokens)
    return RunResult(text=str(answer.get("text") or ""), data=answer.get("data"))
