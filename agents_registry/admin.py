"""Admin of the registry: agent moderation (suspend and lift through the service, revoke keys),
read-only profiles, outcomes, decision records and skills for audits."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from agents_registry import services
from agents_registry.http import AuthenticatedHttpRequest
from agents_registry.models import (
    Agent,
    ApiKey,
    CapabilityProfile,
    DecisionCandidate,
    DecisionRecord,
    Outcome,
    Skill,
    SkillVersion,
)
from agents_registry.services import participant_for_user
from ledger.admin import ReadOnlyAdmin


class ProfileInline(admin.TabularInline):
    model = CapabilityProfile
    fields = (
        "version",
        "is_current",
        "price_per_task",
        "expected_latency_seconds",
        "embedding_model",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "owner", "status", "runtime", "active_tasks", "outcomes_total")
    list_filter = ("status", "runtime")
    search_fields = ("name", "slug")
    readonly_fields = (
        "participant",
        "owner",
        "slug",
        "status",
        "active_tasks",
        "outcomes_total",
        "outcomes_accepted",
        "outcomes_revised",
        "earned_total",
        "created_at",
    )
    fields = ("name", "runtime", "concurrency_limit", *readonly_fields)
    inlines = [ProfileInline]
    actions = ["suspend", "lift_suspension", "revoke_keys"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # agents are registered by their owners

    def _set_status(
        self, request: AuthenticatedHttpRequest, queryset: QuerySet[Agent], status: str
    ) -> None:
        actor = participant_for_user(user=request.user)
        for agent in queryset:
            services.agent_set_status(agent=agent, actor=actor, status=status, is_staff=True)
        self.message_user(request, f"{queryset.count()} agent(s) now {status}.", messages.SUCCESS)

    @admin.action(description="Suspend (never matched, keys refused)")
    def suspend(self, request: AuthenticatedHttpRequest, queryset: QuerySet[Agent]) -> None:
        self._set_status(request, queryset, Agent.Status.SUSPENDED)

    @admin.action(description="Lift suspension")
    def lift_suspension(self, request: AuthenticatedHttpRequest, queryset: QuerySet[Agent]) -> None:
        self._set_status(request, queryset, Agent.Status.ACTIVE)

    @admin.action(description="Revoke all API keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        keys = ApiKey.objects.filter(participant__agent__in=queryset, revoked=False)
        for api_key in keys:
            services.api_key_revoke(api_key=api_key)
        self.message_user(request, "Keys revoked.", messages.SUCCESS)


@admin.register(CapabilityProfile)
class CapabilityProfileAdmin(ReadOnlyAdmin):
    list_display = ("agent", "version", "is_current", "price_per_task", "embedding_model")
    list_filter = ("is_current", "embedding_model")
    exclude = ("embedding",)


@admin.register(Outcome)
class OutcomeAdmin(ReadOnlyAdmin):
    list_display = ("agent", "task_ref", "outcome", "cost", "latency_seconds", "created_at")
    list_filter = ("outcome",)


class DecisionCandidateInline(admin.TabularInline):
    model = DecisionCandidate
    fields = ("rank", "agent", "profile", "similarity", "price", "score", "factors")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(DecisionRecord)
class DecisionRecordAdmin(ReadOnlyAdmin):
    list_display = ("subject_ref", "purpose", "chosen_agent", "created_at")
    list_filter = ("purpose",)
    search_fields = ("subject_ref",)
    inlines = [DecisionCandidateInline]


@admin.register(Skill)
class SkillAdmin(ReadOnlyAdmin):
    list_display = ("title", "kind", "creator", "reuse_count", "royalties_earned")
    list_filter = ("kind",)


@admin.register(SkillVersion)
class SkillVersionAdmin(ReadOnlyAdmin):
    list_display = ("skill", "version", "provenance_task_ref", "created_at")
    exclude = ("embedding",)
