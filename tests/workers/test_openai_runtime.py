"""The openai runtime against a small OpenAI-compatible server on loopback."""

from __future__ import annotations

import json

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from workers.exceptions import BudgetExceeded, RuntimeFailure, TransientRuntimeError
from workers.runtimes import openai
from workers.runtimes.base import RunContext, TaskBrief


@pytest.fixture
def model_server(settings: object, httpserver: HTTPServer) -> HTTPServer:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = [f"127.0.0.1:{httpserver.port}"]
    return httpserver


def completion(content: str, prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "tiny-1",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def context_for(server: HTTPServer, *, budget: int = 100, **config: object) -> tuple:
    events: list[dict] = []
    context = RunContext(
        execution_id=3,
        attempt=1,
        task=TaskBrief(
            task_id=5,
            title="Name a colour",
            description="Name one primary colour.",
            acceptance_criteria="One word.",
            budget=budget,
        ),
        agent_config={
            "base_url": server.url_for("/v1"),
            "model": "tiny-1",
            "system_prompt": "You answer in one word.",
            "price_per_1k_input_tokens": 10,
            "price_per_1k_output_tokens": 30,
            **config,
        },
        record=lambda **event: events.append(event),
        api_key="sk-test-123",
    )
    return context, events


def test_a_completion_is_metered_and_traced(model_server: HTTPServer) -> None:
    seen: list[dict] = []

    def handler(request: Request) -> Response:
        seen.append(
            {"body": json.loads(request.get_data()), "auth": request.headers["Authorization"]}
        )
        return Response(json.dumps(completion("Red", 1200, 100)), content_type="application/json")

    model_server.expect_request("/v1/chat/completions", method="POST").respond_with_handler(handler)
    context, events = context_for(model_server)
    result = openai.run(context, skills=["Prompt skill: answer with a colour name."])

    assert result.text == "Red"
    assert (context.input_tokens, context.output_tokens) == (1200, 100)
    assert context.spent == 15  # 1200 * 10 / 1000 + 100 * 30 / 1000 = 12 + 3
    body = seen[0]["body"]
    assert seen[0]["auth"] == "Bearer sk-test-123"
    assert body["model"] == "tiny-1"
    assert body["messages"][0]["role"] == "system"
    assert body["messages"][0]["content"].startswith("You answer in one word.")
    assert "Prompt skill: answer with a colour name." in body["messages"][0]["content"]
    assert "Acceptance criteria:\nOne word." in body["messages"][1]["content"]
    assert events[0]["kind"] == "llm_call"
    assert (events[0]["input_tokens"], events[0]["output_tokens"], events[0]["cost"]) == (
        1200,
        100,
        15,
    )


def test_max_tokens_is_lowered_to_what_the_budget_can_pay(model_server: HTTPServer) -> None:
    seen: list[int] = []

    def handler(request: Request) -> Response:
        seen.append(json.loads(request.get_data())["max_tokens"])
        return Response(json.dumps(completion("Blue", 30, 50)), content_type="application/json")

    model_server.expect_request("/v1/chat/completions").respond_with_handler(handler)
    context, _ = context_for(model_server, budget=5)
    openai.run(context)
    # About 30 estimated input tokens cost 1 credit; 4 credits buy 133 output tokens at 30/1k.
    assert seen == [133]


def test_a_budget_too_small_for_any_answer_stops_before_calling(model_server: HTTPServer) -> None:
    context, _ = context_for(model_server, budget=0)
    with pytest.raises(BudgetExceeded, match="remaining budget of 0 credits"):
        openai.run(context)
    assert len(model_server.log) == 0


def test_usage_over_budget_is_refused(model_server: HTTPServer) -> None:
    model_server.expect_request("/v1/chat/completions").respond_with_json(
        completion("Green", 100_000, 10)
    )
    context, _ = context_for(model_server, budget=20)
    with pytest.raises(BudgetExceeded, match="over the task's budget of 20"):
        openai.run(context)


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, TransientRuntimeError), (429, TransientRuntimeError), (401, RuntimeFailure)],
)
def test_server_errors_are_classified(model_server: HTTPServer, status: int, error: type) -> None:
    model_server.expect_request("/v1/chat/completions").respond_with_data("no", status=status)
    context, _ = context_for(model_server)
    with pytest.raises(error) as caught:
        openai.run(context)
    assert caught.value.transient is (status != 401)


def test_a_malformed_answer_is_refused(model_server: HTTPServer) -> None:
    model_server.expect_request("/v1/chat/completions").respond_with_json({"choices": []})
    context, _ = context_for(model_server)
    with pytest.raises(RuntimeFailure, match="not a chat completion"):
        openai.run(context)


def test_a_private_base_url_is_refused(model_server: HTTPServer) -> None:
    context, _ = context_for(model_server)
    context.agent_config["base_url"] = "http://169.254.169.254/v1"
    with pytest.raises(RuntimeFailure, match="metadata"):
        openai.run(context)
