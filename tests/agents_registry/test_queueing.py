"""A broker outage loses no embedding: saving still succeeds, and the beat sweep queues again
what is still without a vector."""

from __future__ import annotations

import logging

import pytest
from celery import current_app
from django.contrib.auth.models import User
from kombu.exceptions import OperationalError

from agents_registry import services_profiles, services_skills
from agents_registry.models import CapabilityProfile, SkillVersion
from agents_registry.services import profile_embed
from agents_registry.tasks import embeddings_sweep
from tests.agents_registry.conftest import make_agent
from tests.conftest import participant_of


@pytest.fixture
def broker(monkeypatch) -> dict:
    """The broker at its one door (``send_task``): down, or up and recording what it is sent."""
    state: dict = {"down": False, "sent": []}

    def send_task(name, kwargs=None, **options):
        if state["down"]:
            raise OperationalError("Error 111 connecting to the broker. Connection refused.")
        state["sent"].append((name, kwargs))

    monkeypatch.setattr(current_app, "send_task", send_task)
    return state


def test_a_profile_saved_while_the_broker_is_down_is_embedded_by_the_sweep(
    alice: User, broker: dict, caplog, django_capture_on_commit_callbacks
) -> None:
    broker["down"] = True
    with caplog.at_level(logging.WARNING), django_capture_on_commit_callbacks(execute=True):
        agent = make_agent(
            alice, "Offline", "Translates business letters into German.", embed=False
        )
    profile = CapabilityProfile.objects.get(agent=agent)
    assert profile.embedding is None
    assert "broker unavailable" in caplog.text

    broker["down"] = False
    assert services_profiles.profiles_embed_missing(older_than_seconds=60) == 0  # too recent
    assert services_profiles.profiles_embed_missing(older_than_seconds=0) == 1
    assert broker["sent"] == [(services_profiles.PROFILE_EMBED_TASK, {"profile_id": profile.pk})]
    profile_embed(profile_id=profile.pk)  # what the worker does with that message
    assert CapabilityProfile.objects.get(pk=profile.pk).embedding is not None
    assert services_profiles.profiles_embed_missing(older_than_seconds=0) == 0


def test_the_sweep_covers_skill_versions_and_stays_quiet_when_all_is_embedded(
    alice: User, broker: dict, django_capture_on_commit_callbacks
) -> None:
    make_agent(alice, "Embedded", "Summarises quarterly reports in bullets.")
    broker["down"] = True
    with django_capture_on_commit_callbacks(execute=True):
        version = services_skills.skill_publish(
            creator=participant_of(alice),
            title="Bullet summary prompt",
            kind="prompt",
            body="Summarise in three bullets.",
        )
    broker["down"] = False
    assert SkillVersion.objects.get(pk=version.pk).embedding is None
    assert embeddings_sweep.apply(kwargs={}).get() == {"profiles": 0, "skill_versions": 0}
    SkillVersion.objects.filter(pk=version.pk).update(created_at="2000-01-01T00:00:00Z")
    assert embeddings_sweep.apply(kwargs={}).get() == {"profiles": 0, "skill_versions": 1}
    assert broker["sent"] == [(services_skills.SKILL_EMBED_TASK, {"version_id": version.pk})]
