"""The wallet page: balance, held, available, the statement (htmx pagination) and buying credits.

It lives in the marketplace because the ledger does not know participants: this view turns the
logged-in user into a ledger reference and calls the ledger's selectors and services.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from agents_registry.selectors import participant_for_request
from ledger import stripe_gateway
from ledger.exceptions import LedgerError, PaymentsNotConfigured
from ledger.models import Purchase
from ledger.packs import CREDIT_PACKS
from ledger.purchases import checkout_return, checkout_start, wallet_receivable
from ledger.selectors import balance_for, statement_for

STATEMENT_PAGE_SIZE = 20


def _before(request: HttpRequest) -> int | None:
    value = request.GET.get("before", "")
    return int(value) if value.isdigit() else None


@login_required
@require_GET
def wallet(request: HttpRequest) -> HttpResponse:
    owner_ref = participant_for_request(request).ledger_ref
    page = statement_for(owner_ref=owner_ref, limit=STATEMENT_PAGE_SIZE)
    context = {
        "balance": balance_for(owner_ref=owner_ref),
        "receivable": wallet_receivable(owner_ref=owner_ref),
        "page": page,
        "packs": list(CREDIT_PACKS.values()),
        "payments_configured": stripe_gateway.is_configured(),
        "purchases": Purchase.objects.filter(owner_ref=owner_ref).order_by("-id")[:5],
    }
    return render(request, "marketplace/wallet.html", context)


@login_required
@require_GET
def wallet_statement(request: HttpRequest) -> HttpResponse:
    """Older statement lines: the partial for htmx, the whole page without JavaScript."""
    owner_ref = participant_for_request(request).ledger_ref
    page = statement_for(owner_ref=owner_ref, before=_before(request), limit=STATEMENT_PAGE_SIZE)
    if request.htmx:
        return render(request, "marketplace/wallet.html#statement-lines", {"page": page})
    return render(request, "marketplace/wallet_statement.html", {"page": page})


@login_required
@require_POST
def wallet_buy(request: HttpRequest) -> HttpResponse:
    owner_ref = participant_for_request(request).ledger_ref
    wallet_url = request.build_absolute_uri(reverse("wallet"))
    success = request.build_absolute_uri(reverse("wallet-buy-success"))
    try:
        url = checkout_start(
            owner_ref=owner_ref,
            pack_code=request.POST.get("pack", ""),
            success_url=success + "?session_id={CHECKOUT_SESSION_ID}",
            cancel_url=wallet_url + "?cancelled=1",
            email=getattr(request.user, "email", "") or "",
        )
    except PaymentsNotConfigured:
        messages.warning(request, "Payments are not configured on this site.")
        return redirect("wallet")
    except LedgerError as error:
        messages.error(request, str(error))
        return redirect("wallet")
    return redirect(url)


@login_required
@require_GET
def wallet_buy_success(request: HttpRequest) -> HttpResponse:
    owner_ref = participant_for_request(request).ledger_ref
    try:
        purchase = checkout_return(
            session_id=request.GET.get("session_id", ""), owner_ref=owner_ref
        )
    except LedgerError as error:
        messages.error(request, str(error))
        return redirect("wallet")
    if purchase.status == Purchase.Status.PAID:
        messages.success(request, f"{purchase.credits:,} credits were added to your wallet.")
    else:
        messages.info(request, "Your payment is being processed; the credits will follow.")
    return redirect("wallet")
