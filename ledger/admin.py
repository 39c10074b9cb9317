"""The ledger in the admin: read-only books, audits, and corrections only through services.

Nothing here can edit an entry, a transfer or a balance: every model admin refuses add, change and
delete. Corrections are reversals (``entry_reverse``) with a reason and the staff member recorded;
refunds go through Stripe (``purchase_refund``).
"""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from ledger.exceptions import LedgerError
from ledger.models import (
    Account,
    AutoTopUp,
    ChargeDispute,
    Escrow,
    FailedOperation,
    JournalEntry,
    Purchase,
    StripeEvent,
    Transfer,
)
from ledger.purchases import purchase_refund
from ledger.reconciliation import reconcile
from ledger.selectors import statement_for, trial_balance
from ledger.services import entry_reverse


class ReadOnlyAdmin(admin.ModelAdmin):
    """Staff may look, never touch."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TransferInline(admin.TabularInline):
    model = Transfer
    readonly_fields = ("debit_account", "credit_account", "amount")
    fields = readonly_fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ["address", "kind", "owner_ref", "balance", "may_go_negative", "statement"]
    list_filter = ["kind", "may_go_negative"]
    search_fields = ["address", "owner_ref"]
    ordering = ["id"]
    change_list_template = "ledger/admin/account_change_list.html"

    @admin.display(description="Statement")
    def statement(self, account: Account) -> str:
        url = reverse("admin:ledger_account_statement", args=[account.pk])
        return format_html('<a href="{}">statement</a>', url)

    def get_urls(self) -> list:
        custom = [
            path(
                "trial-balance/",
                self.admin_site.admin_view(self.trial_balance_view),
                name="ledger_trial_balance",
            ),
            path(
                "reconciliation/",
                self.admin_site.admin_view(self.reconciliation_view),
                name="ledger_reconciliation",
            ),
            path(
                "<int:account_id>/statement/",
                self.admin_site.admin_view(self.statement_view),
                name="ledger_account_statement",
            ),
        ]
        return custom + super().get_urls()

    def _context(self, request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
        return {**self.admin_site.each_context(request), "title": title, "opts": self.opts, **extra}

    def trial_balance_view(self, request: HttpRequest) -> HttpResponse:
        context = self._context(request, "Trial balance", trial_balance=trial_balance())
        return TemplateResponse(request, "ledger/admin/trial_balance.html", context)

    def reconciliation_view(self, request: HttpRequest) -> HttpResponse:
        context = self._context(request, "Reconciliation", report=reconcile())
        return TemplateResponse(request, "ledger/admin/reconciliation.html", context)

    def statement_view(self, request: HttpRequest, account_id: int) -> HttpResponse:
        account = get_object_or_404(Account, pk=account_id)
        before = request.GET.get("before", "")
        page = statement_for(
            owner_ref=account.owner_ref,
            address=account.address,
            before=int(before) if before.isdigit() else None,
            limit=50,
        )
        context = self._context(
            request, f"Statement of {account.address}", account=account, page=page
        )
        return TemplateResponse(request, "ledger/admin/statement.html", context)


class ReverseForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=2000)
    # One key per form shown: a double submit posts once; a new attempt after a failure (say,
    # the wallet was short) gets a new key, since a failed key stays failed.
    attempt = forms.CharField(widget=forms.HiddenInput, max_length=32)


@admin.register(JournalEntry)
class JournalEntryAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "reason", "domain_ref", "idempotency_key", "actor_ref"]
    list_filter = ["reason"]
    search_fields = ["=idempotency_key", "domain_ref", "memo"]
    readonly_fields = [field.name for field in JournalEntry._meta.fields]
    inlines = [TransferInline]
    change_form_template = "ledger/admin/entry_change_form.html"

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        """A search term matches an idempotency key, a domain object (``task:7``) or an entry id."""
        term = search_term.strip()
        if not term:
            return queryset, False
        condition = Q(idempotency_key=term) | Q(domain_ref=term) | Q(memo__icontains=term)
        if term.lstrip("#").isdigit():
            condition |= Q(pk=int(term.lstrip("#")))
        return queryset.filter(condition), False

    def get_urls(self) -> list:
        custom = [
            path(
                "<int:entry_id>/reverse/",
                self.admin_site.admin_view(self.reverse_view),
                name="ledger_journalentry_reverse",
            )
        ]
        return custom + super().get_urls()

    def reverse_view(self, request: HttpRequest, entry_id: int) -> HttpResponse:
        entry = get_object_or_404(JournalEntry, pk=entry_id)
        if not request.user.has_perm("ledger.view_journalentry"):
            return HttpResponseRedirect(reverse("admin:index"))
        form = ReverseForm(request.POST or None, initial={"attempt": uuid.uuid4().hex})
        if request.method == "POST" and form.is_valid():
            try:
                reversal = entry_reverse(
                    entry_id=entry.pk,
                    reason=form.cleaned_data["reason"],
                    actor_ref=f"staff:{request.user.pk}",
                    idempotency_key=f"reverse:{entry.pk}:{form.cleaned_data['attempt']}",
                )
            except LedgerError as error:
                messages.error(request, str(error))
            else:
                messages.success(request, f"Entry #{entry.pk} reversed by entry #{reversal.pk}.")
                return HttpResponseRedirect(
                    reverse("admin:ledger_journalentry_change", args=[reversal.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Reverse entry #{entry.pk}",
            "opts": self.opts,
            "entry": entry,
            "transfers": entry.transfers.select_related("debit_account", "credit_account"),
            "form": form,
        }
        return TemplateResponse(request, "ledger/admin/reverse.html", context)


@admin.register(Transfer)
class TransferAdmin(ReadOnlyAdmin):
    list_display = ["id", "entry", "debit_account", "credit_account", "amount"]
    search_fields = ["=entry__idempotency_key", "entry__domain_ref", "debit_account__address"]
    list_select_related = ["entry", "debit_account", "credit_account"]


@admin.register(Escrow)
class EscrowAdmin(ReadOnlyAdmin):
    list_display = ["task_ref", "funder_ref", "status", "balance", "parent", "resolved_at"]
    list_filter = ["status"]
    search_fields = ["task_ref", "funder_ref"]
    list_select_related = ["account", "parent"]

    @admin.display(description="Balance")
    def balance(self, escrow: Escrow) -> int:
        return escrow.account.balance


@admin.register(FailedOperation)
class FailedOperationAdmin(ReadOnlyAdmin):
    list_display = ["idempotency_key", "code", "detail", "created_at"]
    search_fields = ["=idempotency_key"]


class RefundForm(forms.Form):
    amount_cents = forms.IntegerField(
        min_value=1, required=False, help_text="Leave empty to refund the rest."
    )


@admin.register(Purchase)
class PurchaseAdmin(ReadOnlyAdmin):
    list_display = ["id", "owner_ref", "kind", "credits", "amount_cents", "status", "created_at"]
    list_filter = ["kind", "status"]
    search_fields = ["owner_ref", "=checkout_session_id", "=payment_intent_id", "=charge_id"]
    change_form_template = "ledger/admin/purchase_change_form.html"

    def get_urls(self) -> list:
        custom = [
            path(
                "<int:purchase_id>/refund/",
                self.admin_site.admin_view(self.refund_view),
                name="ledger_purchase_refund",
            )
        ]
        return custom + super().get_urls()

    def refund_view(self, request: HttpRequest, purchase_id: int) -> HttpResponse:
        purchase = get_object_or_404(Purchase, pk=purchase_id)
        form = RefundForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                credits = purchase_refund(
                    purchase_id=purchase.pk,
                    amount_cents=form.cleaned_data["amount_cents"],
                    actor_ref=f"staff:{request.user.pk}",
                )
            except LedgerError as error:
                messages.error(request, str(error))
            else:
                messages.success(request, f"Refunded; {credits} credits taken back.")
                return HttpResponseRedirect(
                    reverse("admin:ledger_purchase_change", args=[purchase.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Refund purchase #{purchase.pk}",
            "opts": self.opts,
            "purchase": purchase,
            "form": form,
        }
        return TemplateResponse(request, "ledger/admin/refund.html", context)


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ["event_id", "type", "created_at_stripe", "received_at", "outcome"]
    list_filter = ["type"]
    search_fields = ["=event_id"]


@admin.register(ChargeDispute)
class ChargeDisputeAdmin(ReadOnlyAdmin):
    list_display = ["dispute_id", "purchase", "amount_credits", "from_wallet", "status"]


@admin.register(AutoTopUp)
class AutoTopUpAdmin(ReadOnlyAdmin):
    list_display = [
        "owner_ref",
        "payer_ref",
        "enabled",
        "threshold_credits",
        "pack",
        "last_failure",
    ]
