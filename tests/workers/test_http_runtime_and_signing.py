"""The http runtime signs its requests (Standard Webhooks); agents verify them with our helper."""

from __future__ import annotations

import json
import time

import pytest
from pytest_httpserver import HTTPServer
from standardwebhooks import Webhook
from werkzeug import Request, Response

from agents_registry.services import agent_register
from tests.conftest import participant_of
from workers.exceptions import RuntimeFailure, TransientRuntimeError
from workers.models import AgentSecret
from workers.runtimes import http
from workers.runtimes.base import RunContext, TaskBrief
from workers.runtimes.signing import webhook_headers, webhook_secret_generate
from workers.runtimes.verify import VerificationError, WebhookVerifier
from workers.services import webhook_secret_rotate, webhook_secrets_valid


def context_for(url: str, secrets: tuple[str, ...], **config: object) -> RunContext:
    return RunContext(
        execution_id=41,
        attempt=2,
        task=TaskBrief(task_id=9, title="Count words", description="one two three", budget=50),
        agent_config={"endpoint": url, **config},
        record=lambda **event: None,
        webhook_secrets=secrets,
        callback_urls={"deliver": "http://testserver/api/v1/tasks/9/deliveries/"},
    )


@pytest.fixture
def agent_server(settings: object, httpserver: HTTPServer) -> HTTPServer:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = [f"127.0.0.1:{httpserver.port}"]
    return httpserver


def captured(server: HTTPServer) -> tuple[bytes, dict[str, str]]:
    request, _ = server.log[-1]
    return request.get_data(), dict(request.headers)


def test_a_loopback_agent_receives_a_request_that_verifies_with_standardwebhooks(
    agent_server: HTTPServer,
) -> None:
    secret = webhook_secret_generate()
    agent_server.expect_request("/agent", method="POST").respond_with_json(
        {"text": "3 words", "data": {"words": 3}, "usage": {"input_tokens": 1500}}
    )
    context = context_for(agent_server.url_for("/agent"), (secret,), price_per_1k_input_tokens=2)
    result = http.run(context)
    assert (result.text, result.data) == ("3 words", {"words": 3})
    assert (context.spent, context.input_tokens) == (3, 1500)

    body, headers = captured(agent_server)
    payload = Webhook(secret).verify(body, headers)
    assert payload["type"] == "task.execute"
    assert payload["execution"] == {"id": 41, "attempt": 2}
    assert payload["task"]["title"] == "Count words"
    assert payload["callbacks"]["deliver"].endswith("/tasks/9/deliveries/")
    assert headers["Webhook-Id"] == "exec_41_2"
    # Our own helper agrees with the library on the genuine request.
    assert WebhookVerifier([secret]).verify(body, headers) == payload


def test_tampered_replayed_stale_and_foreign_requests_are_refused_by_our_helper(
    agent_server: HTTPServer,
) -> None:
    secret = webhook_secret_generate()
    agent_server.expect_request("/agent").respond_with_json({"text": "ok"})
    http.run(context_for(agent_server.url_for("/agent"), (secret,)))
    body, headers = captured(agent_server)

    verifier = WebhookVerifier([secret])
    assert verifier.verify(body, headers)["task"]["id"] == 9
    with pytest.raises(VerificationError, match="already received"):
        verifier.verify(body, headers)  # the same request, replayed

    tampered = body.replace(b"Count words", b"Count wordz")
    with pytest.raises(VerificationError, match="no signature matches"):
        WebhookVerifier([secret]).verify(tampered, headers)
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(secret).verify(tampered, headers)  # the library agrees

    with pytest.raises(VerificationError, match="no signature matches"):
        WebhookVerifier([webhook_secret_generate()]).verify(body, headers)

    stale = webhook_headers(
        secrets=[secret], message_id="m1", body=body, timestamp=int(time.time()) - 301
    )
    with pytest.raises(VerificationError, match="outside the tolerance window"):
        WebhookVerifier([secret]).verify(body, stale)
    with pytest.raises(VerificationError, match="missing"):
        WebhookVerifier([secret]).verify(body, {"webhook-id": "x"})


def test_a_forged_request_does_not_burn_the_real_message_id() -> None:
    secret = webhook_secret_generate()
    body = b'{"a":1}'
    genuine = webhook_headers(secrets=[secret], message_id="m-7", body=body)
    verifier = WebhookVerifier([secret])
    forged = {**genuine, "webhook-signature": "v1,AAAA"}
    with pytest.raises(VerificationError):
        verifier.verify(body, forged)
    assert verifier.verify(body, genuine) == {"a": 1}


@pytest.mark.django_db
def test_rotation_signs_with_two_secrets_and_each_verifies(
    agent_server: HTTPServer, alice: object
) -> None:
    agent = agent_register(owner=participant_of(alice), name="Hook agent", runtime="http")
    first = webhook_secret_rotate(agent=agent)
    second = webhook_secret_rotate(agent=agent)
    assert webhook_secrets_valid(agent=agent) == [second, first]
    third = webhook_secret_rotate(agent=agent)
    assert webhook_secrets_valid(agent=agent) == [third, second]
    stored = AgentSecret.objects.filter(agent=agent).values_list("encrypted_value", flat=True)
    assert not any(
        secret.removeprefix("whsec_") in value
        for value in stored
        for secret in (first, second, third)
    )

    agent_server.expect_request("/agent").respond_with_json({"text": "ok"})
    http.run(context_for(agent_server.url_for("/agent"), tuple(webhook_secrets_valid(agent=agent))))
    body, headers = captured(agent_server)
    assert len(headers["Webhook-Signature"].split(" ")) == 2
    Webhook(second).verify(body, headers)
    Webhook(third).verify(body, headers)
    WebhookVerifier([second]).verify(body, headers)
    with pytest.raises(VerificationError):
        WebhookVerifier([first]).verify(body, headers)


@pytest.mark.parametrize(
    ("status", "error", "message"),
    [
        (503, TransientRuntimeError, "answered 503"),
        (429, TransientRuntimeError, "answered 429"),
        (400, RuntimeFailure, "answered 400"),
    ],
)
def test_answers_are_classified_transient_or_final(
    agent_server: HTTPServer, status: int, error: type, message: str
) -> None:
    agent_server.expect_request("/agent").respond_with_data("nope", status=status)
    with pytest.raises(error, match=message) as caught:
        http.run(context_for(agent_server.url_for("/agent"), (webhook_secret_generate(),)))
    assert caught.value.transient is (error is TransientRuntimeError)


def test_accepted_means_the_agent_delivers_later(agent_server: HTTPServer) -> None:
    agent_server.expect_request("/agent").respond_with_data("", status=202)
    result = http.run(context_for(agent_server.url_for("/agent"), (webhook_secret_generate(),)))
    assert result.accepted_for_later_delivery is True


def test_an_answer_without_a_deliverable_is_refused(agent_server: HTTPServer) -> None:
    agent_server.expect_request("/agent").respond_with_json({"hello": 1})
    with pytest.raises(RuntimeFailure, match='needs "text" or "data"'):
        http.run(context_for(agent_server.url_for("/agent"), (webhook_secret_generate(),)))


def test_a_private_endpoint_is_refused_at_call_time(agent_server: HTTPServer) -> None:
    with pytest.raises(RuntimeFailure, match="loopback"):
        http.run(context_for("http://127.0.0.1:9/agent", (webhook_secret_generate(),)))


def test_a_slow_agent_is_cut_at_the_time_limit(agent_server: HTTPServer) -> None:
    def slow(request: Request) -> Response:
        time.sleep(1.0)
        return Response(json.dumps({"text": "late"}), content_type="application/json")

    agent_server.expect_request("/agent").respond_with_handler(slow)
    context = context_for(agent_server.url_for("/agent"), (webhook_secret_generate(),))
    context.time_limit_seconds = 0.3
    started = time.monotonic()
    with pytest.raises(TransientRuntimeError, match="did not answer in time"):
        http.run(context)
    assert time.monotonic() - started < 0.9
