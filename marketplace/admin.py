"""The market in the staff console: tasks with their full timeline, disputes resolved through
``dispute_resolve`` (never by editing rows), and the audit log of staff actions."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.validators import MaxValueValidator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from agents_registry.http import AuthenticatedHttpRequest
from marketplace import selectors, services
from marketplace.exceptions import MarketError
from marketplace.models import Bid, Delivery, Dispute, StaffAction, Task, TaskEvent
from marketplace.sanitize import sanitize_text


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class EventInline(ReadOnlyInline):
    model = TaskEvent
    readonly_fields = ("created_at", "kind", "actor", "data")
    fields = readonly_fields


class BidInline(ReadOnlyInline):
    model = Bid
    readonly_fields = ("bidder", "price", "eta_hours", "status", "score", "plan")
    fields = readonly_fields


class DeliveryInline(ReadOnlyInline):
    model = Delivery
    readonly_fields = ("submitter", "status", "check_status", "check_results", "review_deadline")
    fields = readonly_fields


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ["id", "title", "state", "bounty", "price", "poster", "assignee", "created_at"]
    list_filter = ["state", "visibility"]
    search_fields = ["title", "description"]
    inlines = [EventInline, BidInline, DeliveryInline]
    exclude = ["embedding"]

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        # Every change of a task is a service with a ledger effect: the console only reads.
        return [field.name for field in Task._meta.fields if field.name != "embedding"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class DisputeResolveForm(forms.Form):
    """The staff's split of a disputed escrow; the range comes from the escrow itself."""

    assignee_share = forms.IntegerField(min_value=0, label="Credits to the assignee")
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=5000,
        label="Reason",
        help_text="Both parties see it, with the split.",
    )

    def __init__(self, *args: Any, most: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["assignee_share"]
        field.validators.append(MaxValueValidator(most))
        field.widget.attrs.update(min=0, max=most)
        field.help_text = (
            f"From 0 to {most} (the price less what subtasks spent); the rest of the escrow goes "
            "back to the poster, or to the parent task's escrow. No fee on disputed work."
        )


@admin.register(Dispute)
class DisputeAdmin(admin.ModelAdmin):
    """Disputes are read here and resolved only by the resolve page (``dispute_resolve``, one
    ledger split with the staff member recorded): never edited, never deleted."""

    list_display = ["id", "task", "status", "created_at", "assignee_share", "refund_share", "act"]
    list_filter = ["status"]
    list_select_related = ["task"]
    readonly_fields = [
        "task",
        "delivery",
        "opened_by",
        "poster_evidence",
        "assignee_evidence",
        "status",
        "assignee_share",
        "refund_share",
        "resolution_note",
        "resolved_by",
        "resolved_at",
    ]
    change_form_template = "marketplace/admin/dispute_change_form.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="")
    def act(self, dispute: Dispute) -> str:
        if dispute.status != Dispute.Status.OPEN:
            return "resolved"
        url = reverse("admin:marketplace_dispute_resolve", args=[dispute.pk])
        return format_html('<a href="{}">Resolve</a>', url)

    def get_urls(self) -> list:
        custom = [
            path(
                "<int:dispute_id>/resolve/",
                self.admin_site.admin_view(self.resolve_view),
                name="marketplace_dispute_resolve",
            )
        ]
        return custom + super().get_urls()

    def resolve_view(self, request: AuthenticatedHttpRequest, dispute_id: int) -> HttpResponse:
        dispute = get_object_or_404(
            Dispute.objects.select_related("task__poster", "task__assignee", "opened_by"),
            pk=dispute_id,
        )
        # Back here once resolved: the page then shows the decision (staff without the model's
        # view permission may resolve, as the service allows, but not browse the changelist).
        done = reverse("admin:marketplace_dispute_resolve", args=[dispute.pk])
        is_open = dispute.status == Dispute.Status.OPEN
        if request.method == "POST" and not is_open:
            messages.info(request, "This dispute is resolved already; nothing changed.")
            return HttpResponseRedirect(done)
        facts = selectors.dispute_facts(dispute=dispute)
        form = DisputeResolveForm(request.POST or None, most=facts.most_to_assignee)
        if request.method == "POST" and form.is_valid():
            try:
                resolved = services.dispute_resolve(
                    dispute=dispute,
                    staff_user=request.user,
                    assignee_share=form.cleaned_data["assignee_share"],
                    note=form.cleaned_data["note"],
                )
            except MarketError as error:
                form.add_error(None, str(error))
            else:
                messages.success(
                    request,
                    f"Dispute on task #{dispute.task_id} resolved: {resolved.assignee_share} "
                    f"credits to the assignee, {resolved.refund_share} refunded.",
                )
                return HttpResponseRedirect(done)
        context = {
            **self.admin_site.each_context(request),
            "title": f"{'Resolve the' if is_open else 'The resolved'} dispute on task "
            f"#{dispute.task_id}",
            "opts": self.opts,
            "dispute": dispute,
            "facts": facts,
            "delivery_html": sanitize_text(facts.delivery.text),
            "delivery_data": None
            if facts.delivery.data is None
            else json.dumps(facts.delivery.data, indent=2, ensure_ascii=False),
            "form": form if is_open else None,
        }
        status = 400 if request.method == "POST" else 200
        return TemplateResponse(
            request, "marketplace/admin/dispute_resolve.html", context, status=status
        )


@admin.register(StaffAction)
class StaffActionAdmin(admin.ModelAdmin):
    list_display = ["created_at", "staff_user", "action", "subject", "note"]
    list_filter = ["action"]
    readonly_fields = ["created_at", "staff_user", "action", "subject", "note", "data"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
