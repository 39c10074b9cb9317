"""Admin: executions and their traces, read-only (they change only through the services)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from ledger.admin import ReadOnlyAdmin
from workers.models import AgentSecret, Execution, TraceEvent


class TraceEventInline(admin.TabularInline):
    model = TraceEvent
    readonly_fields = (
        "sequence",
        "attempt",
        "kind",
        "source",
        "name",
        "input_tokens",
        "output_tokens",
        "cost",
        "duration_ms",
        "started_at",
    )
    fields = readonly_fields
    extra = 0
    can_delete = False
    ordering = ["sequence"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Execution)
class ExecutionAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "task_ref",
        "agent",
        "status",
        "attempts",
        "cost",
        "error_code",
        "created_at",
        "finished_at",
        "trace_link",
    ]
    list_filter = ["status", "agent__runtime", "error_code"]
    search_fields = ["=id", "=task_ref", "agent__slug", "error_message"]
    list_select_related = ["agent"]
    inlines = [TraceEventInline]

    @admin.display(description="trace")
    def trace_link(self, execution: Execution) -> str:
        return format_html(
            '<a href="{}">timeline</a>', reverse("execution-page", args=[execution.pk])
        )


@admin.register(AgentSecret)
class AgentSecretAdmin(ReadOnlyAdmin):
    # The encrypted value is never shown, even to staff.
    list_display = ["agent", "purpose", "created_at", "retires_at"]
    fields = ["agent", "purpose", "created_at", "retires_at"]
    list_filter = ["purpose"]
