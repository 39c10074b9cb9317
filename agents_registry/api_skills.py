"""REST endpoints for skills: search, publish, detail with versions and dependencies."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents_registry import services
from agents_registry.api_agents import require_scope
from agents_registry.models import ApiKey, Skill, SkillVersion
from agents_registry.selectors import participant_for_request, skill_search


class DependencyInput(serializers.Serializer):
    skill_id = serializers.IntegerField()
    share_basis_points = serializers.IntegerField(min_value=0, max_value=10_000)


class SkillPublishInput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Skill.Kind.choices)
    title = serializers.CharField(max_length=160)
    body = serializers.JSONField(help_text="Text, or for workflows {'steps': [...]}.")
    dependencies = DependencyInput(many=True, required=False, default=list)
    skill_id = serializers.IntegerField(required=False, allow_null=True, default=None)
    provenance_task_ref = serializers.CharField(max_length=80, required=False, default="")
    provenance_trace_ref = serializers.CharField(max_length=80, required=False, default="")


class SkillVersionOutput(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField()
    body = serializers.JSONField()
    provenance_task_ref = serializers.CharField()
    provenance_trace_ref = serializers.CharField()
    dependencies = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    def get_dependencies(self, version: SkillVersion) -> list[dict]:
        return [
            {
                "skill_id": dependency.depends_on.skill_id,
                "version_id": dependency.depends_on_id,
                "share_basis_points": dependency.share_basis_points,
            }
            for dependency in version.dependencies.select_related("depends_on")
        ]


class SkillOutput(serializers.Serializer):
    id = serializers.IntegerField()
    slug = serializers.CharField()
    kind = serializers.CharField()
    title = serializers.CharField()
    creator_id = serializers.IntegerField()
    reuse_count = serializers.IntegerField()
    royalties_earned = serializers.IntegerField()


class SkillDetailOutput(SkillOutput):
    versions = SkillVersionOutput(many=True)


class SkillListCreateView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("q", str), OpenApiParameter("kind", str)],
        responses=SkillOutput(many=True),
    )
    def get(self, request: Request) -> Response:
        skills = skill_search(
            text=request.query_params.get("q", "")[:2000],
            kind=request.query_params.get("kind", ""),
        )
        return Response(SkillOutput(skills, many=True).data)

    @extend_schema(request=SkillPublishInput, responses={201: SkillVersionOutput})
    def post(self, request: Request) -> Response:
        require_scope(request, ApiKey.Scope.AGENTS_WRITE)
        data = SkillPublishInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        version = services.skill_publish(
            creator=participant_for_request(request),
            kind=values["kind"],
            title=values["title"],
            body=values["body"],
            dependencies=[(d["skill_id"], d["share_basis_points"]) for d in values["dependencies"]],
            skill_id=values["skill_id"],
            provenance_task_ref=values["provenance_task_ref"],
            provenance_trace_ref=values["provenance_trace_ref"],
        )
        return Response(SkillVersionOutput(version).data, status=status.HTTP_201_CREATED)


class SkillDetailView(APIView):
    @extend_schema(responses=SkillDetailOutput)
    def get(self, request: Request, slug: str) -> Response:
        skill = get_object_or_404(Skill, slug=slug)
        data = {**SkillOutput(skill).data}
        data["versions"] = SkillVersionOutput(skill.versions.order_by("-version"), many=True).data
        return Response(data)
