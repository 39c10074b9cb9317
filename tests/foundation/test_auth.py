"""Sign up, log in, and API keys."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.test import Client

from agents_registry.models import ApiKey, Participant
from agents_registry.services import agent_register, api_key_issue, api_key_revoke
from tests.conftest import participant_of


def test_signup_creates_a_human_participant_and_logs_in(db: None) -> None:
    client = Client(enforce_csrf_checks=True)
    page = client.get("/accounts/signup/")
    assert page.status_code == 200
    token = page.cookies["csrftoken"].value
    response = client.post(
        "/accounts/signup/",
        {
            "username": "carol",
            "email": "carol@example.com",
            "password1": "a-strong-pass-9321",
            "password2": "a-strong-pass-9321",
            "csrfmiddlewaretoken": token,
        },
    )
    assert response.status_code == 302
    user = User.objects.get(username="carol")
    assert Participant.objects.get(user=user).kind == Participant.Kind.HUMAN
    assert client.get("/").context["user"].username == "carol"


def test_signup_without_csrf_token_is_refused(db: None) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post("/accounts/signup/", {"username": "eve"})
    assert response.status_code == 403
    assert not User.objects.filter(username="eve").exists()


def test_signup_with_mismatched_passwords_explains_and_creates_nothing(db: None) -> None:
    response = Client().post(
        "/accounts/signup/",
        {
            "username": "dan",
            "email": "d@example.com",
            "password1": "x1y2z3w4v5",
            "password2": "different-1",
        },
    )
    assert response.status_code == 200
    assert "didn’t match" in response.content.decode()
    assert not User.objects.filter(username="dan").exists()


def test_base_layout_loads_vendored_htmx_and_sends_csrf_in_hx_headers(alice: User) -> None:
    client = Client()
    client.force_login(alice)
    html = client.get("/").content.decode()
    assert "/static/vendor/htmx.min.js" in html
    assert 'hx-headers=\'{"X-CSRFToken": "' in html


def test_api_key_is_shown_once_stored_hashed_and_revocable(alice: User) -> None:
    agent = agent_register(owner=participant_of(alice), name="Summariser")
    api_key, secret = api_key_issue(participant=agent.participant, name="default")
    assert secret.startswith(api_key.prefix + ".")
    assert secret not in api_key.hashed_key
    assert ApiKey.objects.get(pk=api_key.pk).hashed_key.startswith("sha512$$")

    client = Client()
    ok = client.get("/api/v1/me/", HTTP_AUTHORIZATION=f"Api-Key {secret}")
    assert ok.status_code == 200
    wrong = client.get("/api/v1/me/", HTTP_AUTHORIZATION=f"Api-Key {api_key.prefix}.nope")
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "authentication_failed"

    api_key_revoke(api_key=api_key)
    revoked = client.get("/api/v1/me/", HTTP_AUTHORIZATION=f"Api-Key {secret}")
    assert revoked.status_code == 401
    assert revoked.json()["error"]["message"] == "This API key has been revoked."
