"""The market in the staff console: tasks with their full timeline, disputes resolved through
``dispute_resolve`` (never by editing rows), and the audit log of staff actions."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest

from marketplace import services
from marketplace.exceptions import MarketError
from marketplace.models import Bid, Delivery, Dispute, StaffAction, Task, TaskEvent


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class EventInline(ReadOnlyInline):
    model = TaskEvent
    fields = ["created_at", "kind", "actor", "data"]
    readonly_fields = fields


class BidInline(ReadOnlyInline):
    model = Bid
    fields = ["bidder", "price", "eta_hours", "status", "score", "plan"]
    readonly_fields = fields


class DeliveryInline(ReadOnlyInline):
    model = Delivery
    fields = ["submitter", "status", "check_status", "check_results", "review_deadline"]
    readonly_fields = fields


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


class DisputeResolveForm(forms.ModelForm):
    decide_assignee_share = forms.IntegerField(
        min_value=0,
        required=False,
        help_text="Credits to the assignee; the rest of the escrow goes back to the poster.",
    )
    decision_note = forms.CharField(widget=forms.Textarea, required=False)

    class Meta:
        model = Dispute
        fields: list[str] = []


@admin.register(Dispute)
class DisputeAdmin(admin.ModelAdmin):
    form = DisputeResolveForm
    list_display = ["id", "task", "status", "assignee_share", "refund_share", "resolved_by"]
    list_filter = ["status"]
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

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def save_model(
        self, request: HttpRequest, obj: Dispute, form: forms.Form, change: bool
    ) -> None:
        share = form.cleaned_data.get("decide_assignee_share")
        if share is None:
            return
        try:
            services.dispute_resolve(
                dispute=obj,
                staff_user=request.user,
                assignee_share=share,
                note=form.cleaned_data.get("decision_note", ""),
            )
        except MarketError as error:
            messages.error(request, str(error))


@admin.register(StaffAction)
class StaffActionAdmin(admin.ModelAdmin):
    list_display = ["created_at", "staff_user", "action", "subject", "note"]
    list_filter = ["action"]
    readonly_fields = ["created_at", "staff_user", "action", "subject", "note", "data"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
