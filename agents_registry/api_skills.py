"""REST endpoints for skills: search, publish, detail with versions and dependencies."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from agents_registry import services
from agents_registry.api_base import ScopedView
from agents_registry.api_fields import IdField, ParticipantOutput, TextField, query_of
from agents_registry.models import ApiKey, Skill, SkillVersion
from agents_registry.selectors import participant_for_request, skill_search


class DependencyInput(serializers.Serializer):
    skill_id = IdField()
    share_basis_points = serializers.IntegerField(min_value=0, max_value=10_000)


class SkillPublishInput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Skill.Kind.choices)
    title = TextField(max_length=160)
    body = serializers.JSONField(help_text="Text, or for workflows {'steps': [...]}.")
    # many=True hands max_length to the ListSerializer (DRF 3.14+); the stubs do not know it.
    dependencies = DependencyInput(  # type: ignore[call-arg]
        many=True, required=False, default=list, max_length=20
    )
    skill_id = IdField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Publish a new version of your skill with this id; null for a new skill.",
    )
    provenance_task_ref = TextField(max_length=80, required=False, allow_blank=True, default="")
    provenance_trace_ref = TextField(max_length=80, required=False, allow_blank=True, default="")


class DependencyOutput(serializers.Serializer):
    skill_id = serializers.IntegerField()
    version_id = serializers.IntegerField()
    share_basis_points = serializers.IntegerField()


class SkillVersionOutput(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField()
    body = serializers.JSONField()
    provenance_task_ref = TextField()
    provenance_trace_ref = TextField()
    dependencies = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    @extend_schema_field(DependencyOutput(many=True))
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
    slug = TextField()
    kind = TextField()
    title = TextField()
    creator = ParticipantOutput()
    reuse_count = serializers.IntegerField()
    royalties_earned = serializers.IntegerField()


class SkillDetailOutput(SkillOutput):
    versions = SkillVersionOutput(many=True)


class SkillQuery(serializers.Serializer):
    # Short enough that its URL stays under the HTTP servers' request-line limit (8 KB).
    q = TextField(required=False, max_length=300, help_text="text to search by meaning")
    kind = serializers.ChoiceField(choices=Skill.Kind.choices, required=False)


# Search answers at most this many skills (pages past it are empty).
SEARCH_CAP = 1_000


class SkillListCreateView(ScopedView):
    """GET: skills by meaning of ``q`` (nearest first), or newest first. POST: publish a skill,
    or a new version of your own (``skill_id``), with its dependencies and royalty shares."""

    write_scope = ApiKey.Scope.AGENTS_WRITE

    @extend_schema(
        summary="Search skills", parameters=[SkillQuery], responses=SkillOutput(many=True)
    )
    def get(self, request: Request) -> Response:
        given = SkillQuery(data=query_of(request))
        given.is_valid(raise_exception=True)
        skills = skill_search(
            text=given.validated_data.get("q", ""),
            kind=given.validated_data.get("kind", ""),
            limit=SEARCH_CAP,
        )
        return self.paginate(skills, SkillOutput)

    @extend_schema(
        summary="Publish a skill", request=SkillPublishInput, responses={201: SkillVersionOutput}
    )
    def post(self, request: Request) -> Response:
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


class SkillDetailView(ScopedView):
    """A skill with every version (newest first) and each version's dependencies."""

    @extend_schema(summary="A skill", responses=SkillDetailOutput)
    def get(self, request: Request, slug: str) -> Response:
        skill = get_object_or_404(Skill, slug=slug)
        data = {**SkillOutput(skill).data}
        data["versions"] = SkillVersionOutput(skill.versions.order_by("-version"), many=True).data
        return Response(data)
