"""The declared royalty split settled through the ledger: each creator paid exactly as declared,
rounding exact, the cap holding; and the agent's earnings chart reading the ledger."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from agents_registry.models import Skill
from agents_registry.services import skill_publish, skill_royalty_shares, skill_usage_record
from ledger import selectors as ledger_selectors
from ledger import services as ledger
from tests.agents_registry.conftest import make_agent
from tests.conftest import participant_of

pytestmark = pytest.mark.django_db


def ref(user: User) -> str:
    return participant_of(user).ledger_ref


def available(owner_ref: str) -> int:
    return ledger_selectors.balance_for(owner_ref=owner_ref).available


@pytest.fixture
def market(alice: User, bob: User, mallory: User, staff: User):
    tool = skill_publish(
        creator=participant_of(mallory), kind="tool", title="PDF tables", body="Extract tables."
    )
    prompt = skill_publish(
        creator=participant_of(bob),
        kind="prompt",
        title="Invoice prompt",
        body="Read invoices.",
        dependencies=[(tool.skill_id, 3000)],
    )
    agent = make_agent(alice, "Settler", "Reads invoices and extracts totals into JSON.")
    poster = ref(staff)
    for owner in (poster, ref(bob), ref(mallory), agent.participant.ledger_ref):
        ledger.wallet_open(owner_ref=owner)
    ledger.promo_grant(owner_ref=poster, amount=5000, idempotency_key="grant:poster")
    return {"tool": tool, "prompt": prompt, "agent": agent, "poster": poster}


def settle(market, *, task_ref: str, bounty: int, royalty_bp: int) -> ledger.SettlementPlan:
    ledger.escrow_lock(
        task_ref=task_ref,
        payer_ref=market["poster"],
        amount=bounty,
        idempotency_key=f"lock:{task_ref}",
    )
    shares = skill_royalty_shares(
        skill_version_ids=[market["prompt"].pk], total_basis_points=royalty_bp
    )
    plan = ledger.settlement_plan(
        escrow=bounty,
        payout=bounty,
        fee_basis_points=500,
        royalties=shares,
        royalty_cap_basis_points=1000,
    )
    ledger.escrow_settle(
        task_ref=task_ref,
        payee_ref=market["agent"].participant.ledger_ref,
        refund_to=market["poster"],
        plan=plan,
        idempotency_key=f"settle:{task_ref}",
    )
    skill_usage_record(
        skill_version_ids=[market["prompt"].pk], task_ref=task_ref, royalties=dict(plan.royalties)
    )
    return plan


def test_a_chain_is_paid_exactly_as_declared(market, bob: User, mallory: User) -> None:
    agent_ref = market["agent"].participant.ledger_ref
    owners = (ref(bob), ref(mallory), agent_ref, market["poster"])
    # Wallets may hold starter credits: compare what moved.
    before = {owner: available(owner) for owner in owners}
    plan = settle(market, task_ref="task:1", bounty=1000, royalty_bp=1000)
    # 10% of 1000 = 100 in royalties: bob keeps 70, mallory (his dependency, 30%) gets 30.
    assert dict(plan.royalties) == {ref(bob): 70, ref(mallory): 30}
    assert (plan.fee, plan.assignee) == (50, 850)
    moved = {owner: available(owner) - before[owner] for owner in owners}
    assert moved == {ref(bob): 70, ref(mallory): 30, agent_ref: 850, market["poster"]: -1000}
    prompt_skill = Skill.objects.get(pk=market["prompt"].skill_id)
    tool_skill = Skill.objects.get(pk=market["tool"].skill_id)
    assert (prompt_skill.reuse_count, prompt_skill.royalties_earned) == (1, 70)
    assert tool_skill.royalties_earned == 30


def test_rounding_is_exact_and_the_cap_holds(market, bob: User, mallory: User) -> None:
    # 999 bp of 997 credits: the declared split is 699/300 bp; the ledger floors each part and
    # the worker keeps the dust; the parts still sum to the escrow.
    plan = settle(market, task_ref="task:2", bounty=997, royalty_bp=999)
    assert plan.royalty_total + plan.fee + plan.assignee + plan.refund == 997
    # Declaring 40% of royalties is capped at the 10% the settings allow.
    capped = settle(market, task_ref="task:3", bounty=1000, royalty_bp=4000)
    assert capped.royalty_total <= 100
    assert dict(capped.royalties) == {ref(bob): 70, ref(mallory): 30}


def test_the_agent_page_charts_earnings_from_the_ledger(market, client_for, alice: User) -> None:
    settle(market, task_ref="task:4", bounty=1000, royalty_bp=1000)
    page = client_for(alice).get("/agents/settler/").content.decode()
    assert "850 credits" in page  # the day's bar title
    wallet = available(market["agent"].participant.ledger_ref)
    assert f"wallet {wallet} credits" in page
