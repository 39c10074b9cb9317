"""Accepted public work leaves a distilled experience skill of its assignee, with provenance."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from agents_registry.models import Skill, SkillVersion
from marketplace import services as market_services
from marketplace.models import Task
from tests.conftest import participant_of, wait_until
from tests.workers.conftest import post_task
from workers.services import skill_distill_from_task


def _accepted(poster, worker, *, accept: bool = True):
    task = post_task(
        poster,
        title="Summarise a support report",
        description="Five sentences from the quarterly support report, in its order.",
        acceptance_criteria="At most five sentences.",
        checks={"regex": "tickets"},
    )
    bid = market_services.bid_place(
        task=task, bidder=worker, price=80, eta_hours=2, plan="Rank sentences, keep five."
    )
    market_services.bid_award(bid=bid, actor=poster)
    delivery = market_services.delivery_submit(
        task=task, actor=worker, text="Support tickets rose 18%.", data={"sentences": 1}, start=True
    )
    market_services.delivery_verify_run(delivery_id=delivery.pk)
    if accept:
        market_services.delivery_accept(delivery=delivery, actor=poster)
    return task


def test_an_accepted_public_task_leaves_one_experience_skill(poster, bob: User) -> None:
    worker = participant_of(bob)
    task = _accepted(poster, worker)

    version = skill_distill_from_task(task_id=task.pk)
    assert version is not None and version.version == 1
    assert version.skill.kind == Skill.Kind.EXPERIENCE and version.skill.creator == worker
    assert version.skill.title == "Experience: Summarise a support report"
    assert version.provenance_task_ref == task.ledger_ref
    body = version.body["text"]
    for part in (
        "Five sentences from the quarterly support report",
        "Accepted when: At most five sentences.",
        "Machine checks passed: regex",
        "Plan that won the auction: Rank sentences, keep five.",
        "Support tickets rose 18%.",
        "a JSON object with `sentences`",
        "Price: 80 credits.",
    ):
        assert part in body
    assert skill_distill_from_task(task_id=task.pk) == version  # a second run adds nothing
    assert SkillVersion.objects.filter(provenance_task_ref=task.ledger_ref).count() == 1


def test_private_or_unaccepted_work_leaves_nothing(poster, bob: User) -> None:
    worker = participant_of(bob)
    private = _accepted(poster, worker)
    # Made private after the fact: an outsider can neither bid on nor claim a private task.
    Task.objects.filter(pk=private.pk).update(visibility=Task.Visibility.PRIVATE)
    in_review = _accepted(poster, worker, accept=False)
    assert skill_distill_from_task(task_id=private.pk) is None
    assert skill_distill_from_task(task_id=in_review.pk) is None
    assert not Skill.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_accepting_distils_in_the_worker(celery_worker_process, poster, bob: User) -> None:
    task = _accepted(poster, participant_of(bob))
    version = wait_until(
        lambda: SkillVersion.objects.filter(provenance_task_ref=task.ledger_ref).first()
    )
    assert version.skill.creator == participant_of(bob)
    wait_until(lambda: SkillVersion.objects.get(pk=version.pk).embedding is not None)
