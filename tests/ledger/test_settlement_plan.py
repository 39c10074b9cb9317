"""Settlement rounding: whatever the bounty, fee and royalties, the parts sum exactly."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.exceptions import LedgerError
from ledger.services import settlement_plan

basis_points = st.integers(min_value=0, max_value=10_000)


@st.composite
def settlements(draw: st.DrawFn) -> dict:
    escrow = draw(st.integers(min_value=0, max_value=10**12))
    payout = draw(st.integers(min_value=0, max_value=escrow))
    royalties = draw(
        st.lists(
            st.tuples(st.integers(1, 10**6).map(lambda n: f"participant:{n}"), basis_points),
            max_size=8,
        )
    )
    return {
        "escrow": escrow,
        "payout": payout,
        "fee_basis_points": draw(basis_points),
        "royalties": royalties,
        "royalty_cap_basis_points": draw(basis_points),
    }


@settings(max_examples=2000, deadline=None)
@given(settlements())
def test_parts_sum_exactly_to_the_escrow(case: dict) -> None:
    plan = settlement_plan(**case)
    royalties = [amount for _, amount in plan.royalties]
    assert plan.assignee + plan.fee + sum(royalties) + plan.refund == case["escrow"]
    assert min([plan.assignee, plan.fee, plan.refund, *royalties], default=0) >= 0
    assert plan.refund == case["escrow"] - case["payout"]
    assert plan.fee == case["payout"] * case["fee_basis_points"] // 10_000
    cap = case["payout"] * case["royalty_cap_basis_points"] // 10_000
    assert sum(royalties) <= cap
    assert all(amount > 0 for amount in royalties)
    uncapped = [case["payout"] * bp // 10_000 for _, bp in case["royalties"]]
    if sum(uncapped) <= min(cap, case["payout"] - plan.fee):
        assert sum(royalties) == sum(uncapped)  # under the cap, royalties are exact floors


def test_worked_example_with_the_cap_and_the_dust() -> None:
    # payout 999 at 5% fee: 49 (49.95 floored); royalties 8% + 7% = 79 + 69 = 148 > cap 99 (10%)
    # scaled: 79 * 99 // 148 = 52, 69 * 99 // 148 = 46; assignee takes the rest: 999-49-98 = 852.
    plan = settlement_plan(
        escrow=1_200,
        payout=999,
        fee_basis_points=500,
        royalties=[("participant:1", 800), ("participant:2", 700)],
        royalty_cap_basis_points=1_000,
    )
    assert plan.fee == 49
    assert plan.royalties == (("participant:1", 52), ("participant:2", 46))
    assert plan.assignee == 852
    assert plan.refund == 201


@pytest.mark.parametrize(
    "changes",
    [
        {"payout": 1_001},
        {"payout": -1},
        {"fee_basis_points": 10_001},
        {"royalty_cap_basis_points": -1},
        {"royalties": [("participant:1", 20_000)]},
        {"royalties": [("nobody", 100)]},
    ],
)
def test_invalid_plans_are_refused(changes: dict) -> None:
    case = {
        "escrow": 1_000,
        "payout": 1_000,
        "fee_basis_points": 500,
        "royalties": [],
        "royalty_cap_basis_points": 1_000,
    }
    with pytest.raises(LedgerError):
        settlement_plan(**{**case, **changes})
