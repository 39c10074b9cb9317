"""Skills: publishing, versions, cycles refused, the declared royalty split, reuse records."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from agents_registry.exceptions import InvalidInput, SkillCycle
from agents_registry.models import Skill, SkillDependency, SkillRoyalty, SkillUsage, SkillVersion
from agents_registry.selectors import skill_search
from agents_registry.services import (
    skill_publish,
    skill_royalty_shares,
    skill_usage_record,
    skill_version_embed,
)
from tests.conftest import participant_of

pytestmark = pytest.mark.django_db


def ref(user: User) -> str:
    return f"participant:{participant_of(user).pk}"


@pytest.fixture
def chain(alice: User, bob: User, mallory: User) -> dict[str, SkillVersion]:
    """mallory's tool <- bob's prompt (passes 30%) <- alice's workflow (passes 50%)."""
    tool = skill_publish(
        creator=participant_of(mallory),
        kind="tool",
        title="PDF table extractor",
        body="Extract tables from PDF pages into CSV using layout analysis.",
    )
    prompt = skill_publish(
        creator=participant_of(bob),
        kind="prompt",
        title="Invoice reading prompt",
        body="You read invoices. Return vendor, date, line items and totals as JSON.",
        dependencies=[(tool.skill_id, 3000)],
    )
    workflow = skill_publish(
        creator=participant_of(alice),
        kind="workflow",
        title="Invoice to ledger workflow",
        body={
            "steps": [
                {"id": "extract", "action": "Run the invoice prompt on each page"},
                {"id": "check", "action": "Check totals add up", "after": ["extract"]},
                {"id": "post", "action": "Post entries to the ledger", "after": ["check"]},
            ]
        },
        dependencies=[(prompt.skill_id, 5000)],
        provenance_task_ref="task:17",
        provenance_trace_ref="trace:3",
    )
    return {"tool": tool, "prompt": prompt, "workflow": workflow}


def test_a_chain_pays_each_creator_exactly_as_declared(chain, alice, bob, mallory) -> None:
    # 1000 bp of royalties: alice keeps 50%, bob 70% of the other 50%, mallory 30% of that.
    shares = skill_royalty_shares(skill_version_ids=[chain["workflow"].pk], total_basis_points=1000)
    assert shares == [(ref(alice), 500), (ref(bob), 350), (ref(mallory), 150)]


def test_rounding_sums_exactly(chain, alice, bob, mallory) -> None:
    for total in (1, 7, 333, 999, 1001):
        shares = skill_royalty_shares(
            skill_version_ids=[chain["workflow"].pk, chain["tool"].pk], total_basis_points=total
        )
        assert sum(points for _, points in shares) == total
    # Two skills used: half each; mallory gets all of the tool's half plus 15% of the other.
    assert dict(
        skill_royalty_shares(
            skill_version_ids=[chain["workflow"].pk, chain["tool"].pk], total_basis_points=1000
        )
    ) == {ref(alice): 250, ref(bob): 175, ref(mallory): 575}
    assert skill_royalty_shares(skill_version_ids=[], total_basis_points=1000) == []


def test_cycles_and_bad_dependencies_are_refused(chain, mallory, bob) -> None:
    before = (SkillVersion.objects.count(), SkillDependency.objects.count())
    with pytest.raises(SkillCycle):
        skill_publish(
            creator=participant_of(mallory),
            kind="tool",
            title="PDF table extractor",
            body="v2 that would reuse the workflow",
            dependencies=[(chain["workflow"].skill_id, 1000)],
            skill_id=chain["tool"].skill_id,
        )
    with pytest.raises(InvalidInput, match="itself"):
        skill_publish(
            creator=participant_of(bob),
            kind="prompt",
            title="Invoice reading prompt",
            body="v2",
            dependencies=[(chain["prompt"].skill_id, 10)],
            skill_id=chain["prompt"].skill_id,
        )
    with pytest.raises(InvalidInput, match="more than 100%"):
        skill_publish(
            creator=participant_of(bob),
            kind="prompt",
            title="Greedy",
            body="text",
            dependencies=[(chain["tool"].skill_id, 6000), (chain["prompt"].skill_id, 5000)],
        )
    with pytest.raises(InvalidInput, match="No such skill"):
        skill_publish(
            creator=participant_of(bob),
            kind="prompt",
            title="Ghost",
            body="t",
            dependencies=[(999_999, 10)],
        )
    with pytest.raises(InvalidInput, match="cycle"):
        skill_publish(
            creator=participant_of(bob),
            kind="workflow",
            title="Loop",
            body={
                "steps": [
                    {"id": "a", "action": "x", "after": ["b"]},
                    {"id": "b", "action": "y", "after": ["a"]},
                ]
            },
        )
    with pytest.raises(InvalidInput):
        skill_publish(creator=participant_of(bob), kind="spell", title="Magic", body="t")
    assert (SkillVersion.objects.count(), SkillDependency.objects.count()) == before


def test_new_versions_are_numbered_and_only_the_creator_publishes_them(chain, bob, alice) -> None:
    version = skill_publish(
        creator=participant_of(bob),
        kind="prompt",
        title="Invoice reading prompt",
        body="Improved prompt",
        skill_id=chain["prompt"].skill_id,
    )
    assert version.version == 2
    with pytest.raises(Exception, match="creator"):
        skill_publish(
            creator=participant_of(alice),
            kind="prompt",
            title="Invoice reading prompt",
            body="Hijack",
            skill_id=chain["prompt"].skill_id,
        )


def test_usage_counts_reuse_and_royalties_once_per_task(chain, alice, bob, mallory) -> None:
    royalties = {ref(alice): 50, ref(bob): 35, ref(mallory): 15}
    skill_usage_record(
        skill_version_ids=[chain["workflow"].pk], task_ref="task:99", royalties=royalties
    )
    skill_usage_record(
        skill_version_ids=[chain["workflow"].pk], task_ref="task:99", royalties=royalties
    )
    workflow, prompt, tool = (
        Skill.objects.get(pk=chain[k].skill_id) for k in ("workflow", "prompt", "tool")
    )
    assert (workflow.reuse_count, workflow.royalties_earned) == (1, 50)
    assert (prompt.reuse_count, prompt.royalties_earned) == (0, 35)
    assert (tool.reuse_count, tool.royalties_earned) == (0, 15)
    assert SkillUsage.objects.count() == 1
    assert SkillRoyalty.objects.count() == 3
    with pytest.raises(InvalidInput, match="no used skill"):
        skill_usage_record(
            skill_version_ids=[chain["tool"].pk], task_ref="task:100", royalties={ref(alice): 5}
        )
    assert SkillUsage.objects.count() == 1


def test_skills_are_searchable_by_meaning(chain) -> None:
    for version in SkillVersion.objects.all():
        skill_version_embed(version_id=version.pk)
    found = skill_search(text="get tables out of PDF documents", limit=1)
    assert [skill.pk for skill in found] == [chain["tool"].skill_id]


def test_skill_pages_and_api(client_for, chain, alice) -> None:
    client = client_for(alice)
    page = client.get(f"/skills/{chain['workflow'].skill.slug}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Invoice reading prompt v1" in html and "50%" in html and "task #17" in html
    assert client.get("/skills/").status_code == 200
    detail = client.get(f"/api/v1/skills/{chain['prompt'].skill.slug}/").json()
    assert detail["versions"][0]["dependencies"] == [
        {
            "skill_id": chain["tool"].skill_id,
            "version_id": chain["tool"].pk,
            "share_basis_points": 3000,
        }
    ]
    created = client.post(
        "/api/v1/skills/",
        {
            "kind": "experience",
            "title": "Lessons from invoices",
            "body": "Check VAT twice.",
            "dependencies": [{"skill_id": chain["tool"].skill_id, "share_basis_points": 100}],
        },
        format="json",
    )
    assert created.status_code == 201
    bad = client.post(
        "/api/v1/skills/", {"kind": "prompt", "title": "Empty", "body": ""}, format="json"
    )
    assert bad.status_code == 400


def test_publish_a_skill_from_a_delivery_through_the_page(client_for, chain, bob) -> None:
    client = client_for(bob)
    form = client.get("/skills/new/?task=task:42&trace=trace:7").content.decode()
    assert 'value="task:42"' in form
    response = client.post(
        "/skills/new/",
        {
            "kind": "workflow",
            "title": "Receipt workflow",
            "body": '{"steps": [{"id": "read", "action": "Read receipts"}]}',
            "dependencies": f"{chain['tool'].skill.slug} 12.5",
            "provenance_task_ref": "task:42",
        },
        format="multipart",  # a page's form, not the API
    )
    assert response.status_code == 302
    version = SkillVersion.objects.get(skill__title="Receipt workflow")
    assert version.provenance_task_ref == "task:42"
    assert list(version.dependencies.values_list("depends_on_id", "share_basis_points")) == [
        (chain["tool"].pk, 1250)
    ]
    before = SkillVersion.objects.count()
    bad = client.post(
        "/skills/new/",
        {"kind": "workflow", "title": "Broken", "body": "{not json", "dependencies": "nope 5"},
    )
    assert bad.status_code == 200
    assert "A workflow is JSON" in bad.content.decode()
    assert SkillVersion.objects.count() == before
    # bob's prompt v2 builds on his workflow; a workflow v2 building on the prompt is a cycle.
    chained = client.post(
        f"/skills/new/?skill={chain['prompt'].skill.slug}",
        {
            "kind": "prompt",
            "title": "Invoice reading prompt",
            "body": "v2",
            "dependencies": "receipt-workflow 10",
        },
    )
    assert chained.status_code == 302
    before = SkillVersion.objects.count()
    cycle = client.post(
        "/skills/new/?skill=receipt-workflow",
        {
            "kind": "workflow",
            "title": "Receipt workflow",
            "body": '{"steps": [{"id": "read", "action": "Read receipts twice"}]}',
            "dependencies": f"{chain['prompt'].skill.slug} 10",
        },
    )
    assert cycle.status_code == 200
    assert "would make a cycle" in cycle.content.decode()
    assert SkillVersion.objects.count() == before
