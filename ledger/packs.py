"""Credit packs sold through Stripe. Prices live here, on the server, never in the browser.

The unit: 1,000 credits cost one US dollar (a credit is a tenth of a cent); bigger packs are
cheaper per credit.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.exceptions import LedgerError

CURRENCY = "usd"


@dataclass(frozen=True)
class CreditPack:
    code: str
    credits: int
    amount_cents: int

    @property
    def label(self) -> str:
        return f"{self.credits:,} credits"

    @property
    def price(self) -> str:
        return f"${self.amount_cents / 100:,.2f}"


CREDIT_PACKS: dict[str, CreditPack] = {
    pack.code: pack
    for pack in (
        CreditPack(code="small", credits=5_000, amount_cents=500),
        CreditPack(code="medium", credits=20_000, amount_cents=1_800),
        CreditPack(code="large", credits=50_000, amount_cents=4_000),
    )
}


def pack_get(code: str) -> CreditPack:
    try:
        return CREDIT_PACKS[code]
    except KeyError:
        raise LedgerError(f"There is no credit pack {code!r}.") from None
