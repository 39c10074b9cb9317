"""The wallet page: balance, held, available, the statement (htmx pagination) and buying credits.

It lives in the marketplace because the ledger does not know participants: this view turns the
logged-in user into a ledger reference and calls the ledger's selectors and services.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from agents_registry import services as registry_services
from agents_registry.api_fields import CreditsField, TextField
from agents_registry.exceptions import RegistryError
from agents_registry.htmx import HtmxHttpRequest
from agents_registry.models import Agent, ApiKey, Participant
from agents_registry.pagination import bounded_int
from agents_registry.selectors import participant_for_request
from agents_registry.services_funding import TO_AGENT, TO_OWNER
from ledger import stripe_gateway
from ledger.exceptions import LedgerError, PaymentsNotConfigured
from ledger.models import AutoTopUp, Purchase
from ledger.packs import CREDIT_PACKS
from ledger.purchases import checkout_return, checkout_start, wallet_receivable
from ledger.selectors import balance_for, statement_for
from ledger.topup import auto_topup_disable, auto_topup_setup_start
from marketplace.api.common import MarketView, idempotent
from marketplace.exceptions import NotFound

STATEMENT_PAGE_SIZE = 20


def _before(request: HttpRequest | Request) -> int | None:
    value = request.GET.get("before", "")
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 else None


def _agents_with_top_up(participant: Participant) -> list[dict]:
    """The user's agents, each with its balance and its automatic top-up (if any)."""
    agents = list(participant.owned_agents.select_related("participant").order_by("name"))
    configs = {
        config.owner_ref: config
        for config in AutoTopUp.objects.filter(
            owner_ref__in=[agent.participant.ledger_ref for agent in agents]
        )
    }
    return [
        {
            "agent": agent,
            "balance": balance_for(owner_ref=agent.participant.ledger_ref),
            "top_up": configs.get(agent.participant.ledger_ref),
        }
        for agent in agents
    ]


@login_required
@require_GET
def wallet(request: HttpRequest) -> HttpResponse:
    participant = participant_for_request(request)
    owner_ref = participant.ledger_ref
    page = statement_for(owner_ref=owner_ref, limit=STATEMENT_PAGE_SIZE)
    context = {
        "agents": _agents_with_top_up(participant),
        "transfer_token": uuid.uuid4().hex,
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
def wallet_statement(request: HtmxHttpRequest) -> HttpResponse:
    """Older statement lines: the partial for htmx, the whole page without JavaScript. With
    ``?agent=<slug>``, the statement of one of the user's own agents."""
    participant = participant_for_request(request)
    agent = None
    if request.GET.get("agent"):
        agent = get_object_or_404(
            participant.owned_agents.select_related("participant"), slug=request.GET["agent"]
        )
        participant = agent.participant
    page = statement_for(
        owner_ref=participant.ledger_ref, before=_before(request), limit=STATEMENT_PAGE_SIZE
    )
    context = {"page": page, "agent": agent}
    if request.htmx:
        return render(request, "marketplace/wallet.html#statement-lines", context)
    return render(request, "marketplace/wallet_statement.html", context)


@login_required
@require_POST
def wallet_buy(request: HttpRequest) -> HttpResponse:
    owner_ref = participant_for_request(request).ledger_ref
    wallet_url = request.build_absolute_uri(reverse("wallet"))
    success = request.build_absolute_uri(reverse("wallet-buy-success"))
    return _to_stripe(
        request,
        lambda: checkout_start(
            owner_ref=owner_ref,
            pack_code=request.POST.get("pack", ""),
            success_url=success + "?session_id={CHECKOUT_SESSION_ID}",
            cancel_url=wallet_url + "?cancelled=1",
            email=getattr(request.user, "email", "") or "",
        ),
    )


def _to_stripe(request: HttpRequest, start: Callable[[], str]) -> HttpResponse:
    """Redirect to the Stripe page ``start`` opens; back to the wallet with the reason if not."""
    try:
        url = start()
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


@login_required
@require_POST
def wallet_auto_topup(request: HttpRequest) -> HttpResponse:
    """Enable automatic top-up of one of the user's agents (saving a card at Stripe) or stop it."""
    participant = participant_for_request(request)
    agent = get_object_or_404(
        participant.owned_agents.select_related("participant"), pk=request.POST.get("agent", "0")
    )
    agent_ref = agent.participant.ledger_ref
    if request.POST.get("action") == "disable":
        auto_topup_disable(owner_ref=agent_ref)
        messages.success(request, f"Automatic top-up of {agent.name} is off.")
        return redirect("wallet")
    threshold = request.POST.get("threshold", "")
    wallet_url = request.build_absolute_uri(reverse("wallet"))
    return _to_stripe(
        request,
        lambda: auto_topup_setup_start(
            owner_ref=agent_ref,
            payer_ref=participant.ledger_ref,
            threshold_credits=int(threshold) if threshold.isdigit() else 0,
            pack_code=request.POST.get("pack", ""),
            success_url=wallet_url + "?card=saved",
            cancel_url=wallet_url + "?cancelled=1",
        ),
    )


# --- REST API: an agent (or a person's key) reads its own wallet ----------------------------------


class BalanceOutput(serializers.Serializer):
    owner_ref = TextField()
    posted = serializers.IntegerField(help_text="available + held")
    held = serializers.IntegerField(help_text="locked in open escrows this participant funded")
    available = serializers.IntegerField(help_text="spendable now")
    owed = serializers.IntegerField(help_text="receivable after refunds of spent credits")


class StatementLineOutput(serializers.Serializer):
    transfer_id = serializers.IntegerField()
    entry_id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    reason = TextField()
    domain_ref = TextField()
    memo = TextField()
    counterparty = TextField()
    amount = serializers.IntegerField(help_text="signed: positive when credits came in")
    balance_after = serializers.IntegerField()


class StatementOutput(serializers.Serializer):
    results = StatementLineOutput(many=True)
    next_before = serializers.IntegerField(
        allow_null=True, help_text="pass as ?before= for the next (older) page"
    )


class WalletApiView(MarketView):
    read_scope = ApiKey.Scope.WALLET_READ
    write_scope = ApiKey.Scope.WALLET_WRITE

    def owner_ref(self) -> str:
        if self.participant is None:
            raise NotAuthenticated()
        return self.participant.ledger_ref


class WalletBalanceApi(WalletApiView):
    @extend_schema(responses=BalanceOutput, summary="The caller's credits")
    def get(self, request: Request) -> Response:
        return Response(wallet_balance_output(owner_ref=self.owner_ref()))


class WalletStatementApi(WalletApiView):
    @extend_schema(
        responses=StatementOutput,
        summary="The caller's statement, newest first, with running balance",
        parameters=[
            OpenApiParameter(
                "before",
                {"type": "integer", "minimum": 1, "maximum": 10**18},
                description="transfer id to page before (``next_before`` of the previous page)",
            ),
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                description="lines per page",
            ),
        ],
    )
    def get(self, request: Request) -> Response:
        before = bounded_int(request, "before", default=0, minimum=1, maximum=10**18)
        return Response(
            wallet_statement_output(
                owner_ref=self.owner_ref(),
                before=before or None,
                limit=bounded_int(request, "limit", default=50, minimum=1, maximum=200),
            )
        )


# The answers of the two endpoints, shared with the MCP tools (marketplace/protocols).


def wallet_balance_output(*, owner_ref: str) -> dict:
    balance = balance_for(owner_ref=owner_ref)
    body = {
        "owner_ref": owner_ref,
        "posted": balance.posted,
        "held": balance.held,
        "available": balance.available,
        "owed": wallet_receivable(owner_ref=owner_ref),
    }
    return BalanceOutput(body).data


def wallet_statement_output(*, owner_ref: str, before: int | None = None, limit: int = 50) -> dict:
    page = statement_for(owner_ref=owner_ref, before=before, limit=limit)
    body = {"results": [vars(line) for line in page.lines], "next_before": page.next_before}
    return StatementOutput(body).data


class TransferInput(serializers.Serializer):
    agent = serializers.SlugField(max_length=80, help_text="the slug of one of your agents")
    amount = CreditsField(help_text="whole credits, a JSON integer")
    direction = serializers.ChoiceField(
        choices=[
            (TO_AGENT, "from your wallet to the agent's"),
            (TO_OWNER, "from the agent's wallet back to yours"),
        ]
    )


class TransferOutput(serializers.Serializer):
    entry_id = serializers.IntegerField(help_text="the ledger entry that moved the credits")
    agent = TextField()
    amount = serializers.IntegerField()
    direction = TextField()
    owner_available = serializers.IntegerField(help_text="your wallet's available credits after")
    agent_available = serializers.IntegerField(help_text="the agent's available credits after")


class WalletTransferApi(WalletApiView):
    """Fund one of your agents from your wallet, or take credits back from it: one ledger
    transfer (402 when the paying wallet cannot cover it; nothing moves then). Send an
    ``Idempotency-Key``: a retry moves the credits once."""

    write_scope = ApiKey.Scope.WALLET_WRITE
    spends_credits = True

    @extend_schema(
        summary="Move credits between you and your agent",
        request=TransferInput,
        responses={201: TransferOutput},
    )
    def post(self, request: Request) -> Response:
        data = TransferInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data

        def produce() -> Response:
            agent = _owned_agent(self.participant, slug=values["agent"])
            entry = registry_services.agent_wallet_transfer(
                owner=self.participant,
                agent=agent,
                amount=values["amount"],
                direction=values["direction"],
                idempotency_key=request.headers.get("Idempotency-Key") or None,
            )
            body = {
                "entry_id": entry.pk,
                "agent": agent.slug,
                "amount": values["amount"],
                "direction": values["direction"],
                "owner_available": balance_for(owner_ref=self.participant.ledger_ref).available,
                "agent_available": balance_for(owner_ref=agent.participant.ledger_ref).available,
            }
            return Response(TransferOutput(body).data, status=201)

        return idempotent(request, self.viewer, produce)


def _owned_agent(participant: Participant | None, *, slug: str) -> Agent:
    agent = Agent.objects.select_related("participant").filter(slug=slug, owner=participant).first()
    if agent is None:
        raise NotFound(f"You own no agent {slug!r}.")
    return agent


@login_required
@require_POST
def wallet_agent_transfer(request: HttpRequest) -> HttpResponse:
    """The wallet page's form: give credits to one of your agents or take them back."""
    participant = participant_for_request(request)
    amount = request.POST.get("amount", "")
    direction = request.POST.get("direction", "")
    if not (amount.isascii() and amount.isdigit() and 0 < int(amount) <= 10**12):
        messages.error(request, "Enter a whole number of credits above zero.")
        return redirect("wallet")
    try:
        agent = _owned_agent(participant, slug=request.POST.get("agent", ""))
        registry_services.agent_wallet_transfer(
            owner=participant,
            agent=agent,
            amount=int(amount),
            direction=direction,
            # The form's own token: a double submit moves the credits once.
            idempotency_key=request.POST.get("token") or None,
        )
    except (RegistryError, LedgerError, NotFound) as error:
        messages.error(request, str(error))
        return redirect("wallet")
    if direction == TO_AGENT:
        messages.success(request, f"{int(amount):,} credits moved to {agent.name}.")
    else:
        messages.success(request, f"{int(amount):,} credits moved back from {agent.name}.")
    return redirect("wallet")
