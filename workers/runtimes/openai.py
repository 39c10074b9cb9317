"""The ``openai`` runtime: one OpenAI-compatible chat completion (OpenAI, vLLM, Ollama, ...).

``runtime_config``: ``{"base_url": "https://api.openai.com/v1", "model": "gpt-4o-mini",
"system_prompt": "...", "api_key_env": "OPENAI_API_KEY", "max_output_tokens": 1024,
"temperature": 0.2, "timeout_seconds": 60, "price_per_1k_input_tokens": n,
"price_per_1k_output_tokens": n}``. The key comes from the named environment variable, or from
the agent's stored (encrypted) key. The skills the agent uses are appended to its system prompt.

Before calling, ``max_tokens`` is lowered to what the remaining budget can pay for, so a run never
buys tokens it cannot afford; when not even one output token is affordable it stops with
BudgetExceeded. Usage reported by the server is metered into the execution's cost.
"""

from __future__ import annotations

import json
import time
from typing import Any

from workers.exceptions import (
    BudgetExceeded,
    EndpointRefused,
    RuntimeFailure,
    TransientRuntimeError,
)
from workers.runtimes.base import RunContext, RunResult, price_for_tokens
from workers.runtimes.http_safety import safe_request


def messages_for(context: RunContext, skills: list[str]) -> list[dict[str, str]]:
    config = context.agent_config
    system = str(config.get("system_prompt") or "You are a careful agent completing a task.")
    if skills:
        system += "\n\nSkills you can use:\n" + "\n\n".join(skills)
    task = context.task
    user = f"Task: {task.title}\n\n{task.description}"
    if task.acceptance_criteria:
        user += f"\n\nAcceptance criteria:\n{task.acceptance_criteria}"
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    if task.revision is not None:
        messages += [
            {"role": "assistant", "content": task.revision.previous_text},
            {"role": "user", "content": f"Please revise your answer: {task.revision.message}"},
        ]
    return messages


def affordable_output_tokens(context: RunContext, *, estimated_input_tokens: int) -> int:
    config = context.agent_config
    wanted = int(config.get("max_output_tokens", 1024))
    output_price = int(config.get("price_per_1k_output_tokens", 0))
    remaining = context.task.budget - context.spent
    input_cost = price_for_tokens(config, input_tokens=estimated_input_tokens, output_tokens=0)
    if output_price <= 0:
        return wanted if input_cost <= remaining else 0
    return max(0, min(wanted, (remaining - input_cost) * 1000 // output_price))


def run(context: RunContext, *, skills: list[str] | None = None) -> RunResult:
    config = context.agent_config
    base_url = str(config.get("base_url", "")).rstrip("/")
    model = str(config.get("model", ""))
    if not base_url or not model:
        raise RuntimeFailure("The agent's runtime needs a base_url and a model.")
    messages = messages_for(context, skills or [])
    # About four characters per token: an estimate, used only to stay within the budget.
    estimated_input = sum(len(message["content"]) for message in messages) // 4 + 8
    max_tokens = affordable_output_tokens(context, estimated_input_tokens=estimated_input)
    if max_tokens < 1:
        raise BudgetExceeded(
            f"The remaining budget of {context.task.budget - context.spent} credits cannot pay "
            "for this prompt and any answer at the agent's token prices."
        )
    payload: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": float(config.get("temperature", 0.2)),
    }
    headers = {"Content-Type": "application/json"}
    if context.api_key:
        headers["Authorization"] = f"Bearer {context.api_key}"
    started = time.monotonic()
    try:
        response = safe_request(
            "POST",
            f"{base_url}/chat/completions",
            body=json.dumps(payload).encode(),
            headers=headers,
            timeout=min(float(config.get("timeout_seconds", 60)), context.time_limit_seconds),
            max_response_bytes=4_000_000,
        )
    except EndpointRefused as error:
        raise RuntimeFailure(str(error)) from error
    elapsed_ms = int((time.monotonic() - started) * 1000)
    if response.status == 429 or response.status >= 500:
        raise TransientRuntimeError(f"The model server answered {response.status}.")
    if response.status != 200:
        raise RuntimeFailure(
            f"The model server answered {response.status}: {response.body[:300]!r}."
        )
    try:
        answer = json.loads(response.body)
        content = answer["choices"][0]["message"]["content"] or ""
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise RuntimeFailure("The model server's answer is not a chat completion.") from error
    usage = answer.get("usage") or {}
    input_tokens = int(usage.get("prompt_tokens", 0) or 0)
    output_tokens = int(usage.get("completion_tokens", 0) or 0)
    cost = price_for_tokens(config, input_tokens=input_tokens, output_tokens=output_tokens)
    context.record(
        kind="llm_call",
        name=f"chat:{model}",
        inputs={"messages": messages, "max_tokens": max_tokens},
        outputs={"content": content, "finish_reason": answer["choices"][0].get("finish_reason")},
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost=cost,
        duration_ms=elapsed_ms,
    )
    context.charge(cost=cost, input_tokens=input_tokens, output_tokens=output_tokens)
    return RunResult(text=content, data={"model": answer.get("model", model)})
