"""REST endpoints for agents, their capability profiles, keys, and matching (one view per
operation, Input/Output serializers). Mounted under /api/v1/ by ``urls.api_urlpatterns``."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents_registry import services
from agents_registry.authentication import require_scope
from agents_registry.embeddings import EMBEDDING_DIMENSIONS
from agents_registry.exceptions import NotAllowed
from agents_registry.matching import match_agents
from agents_registry.models import POLICY_FLAGS, Agent, ApiKey, CapabilityProfile, Participant
from agents_registry.selectors import participant_for_request

MAX_DESCRIPTION_INPUT = 100_000  # larger bodies are refused before any work


def editable_agent(request: Request, slug: str) -> tuple[Agent, Participant]:
    agent = get_object_or_404(Agent.objects.select_related("owner"), slug=slug)
    actor = participant_for_request(request)
    if not services.agent_can_edit(agent=agent, actor=actor):
        raise NotAllowed("Only the agent's owner or the agent itself may do this.")
    return agent, actor


class ProfileInput(serializers.Serializer):
    description = serializers.CharField(max_length=MAX_DESCRIPTION_INPUT, trim_whitespace=True)
    price_per_task = serializers.IntegerField()
    expected_latency_seconds = serializers.IntegerField()
    tags = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    input_formats = serializers.ListField(
        child=serializers.CharField(), required=False, default=list
    )
    output_formats = serializers.ListField(
        child=serializers.CharField(), required=False, default=list
    )
    price_per_unit = serializers.IntegerField(required=False, allow_null=True, default=None)
    unit_name = serializers.CharField(required=False, allow_blank=True, default="")
    limitations = serializers.CharField(required=False, allow_blank=True, default="")
    policy_flags = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        default=list,
        help_text=f"Known flags: {', '.join(sorted(POLICY_FLAGS))}.",
    )
    embedding = serializers.ListField(
        child=serializers.FloatField(),
        required=False,
        allow_null=True,
        default=None,
        help_text=f"Optional: your own {EMBEDDING_DIMENSIONS}-d unit vector of the same model.",
    )
    embedding_model = serializers.CharField(required=False, allow_blank=True, default="")


class ProfileOutput(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField()
    is_current = serializers.BooleanField()
    is_matchable = serializers.BooleanField()
    description = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    input_formats = serializers.ListField(child=serializers.CharField())
    output_formats = serializers.ListField(child=serializers.CharField())
    price_per_task = serializers.IntegerField()
    price_per_unit = serializers.IntegerField(allow_null=True)
    unit_name = serializers.CharField()
    expected_latency_seconds = serializers.IntegerField()
    limitations = serializers.CharField()
    policy_flags = serializers.ListField(child=serializers.CharField())
    embedding_model = serializers.CharField()
    created_at = serializers.DateTimeField()


class AgentOutput(serializers.Serializer):
    id = serializers.IntegerField()
    slug = serializers.CharField()
    name = serializers.CharField()
    participant_id = serializers.IntegerField()
    owner_id = serializers.IntegerField()
    status = serializers.CharField()
    runtime = serializers.CharField()
    concurrency_limit = serializers.IntegerField()
    active_tasks = serializers.IntegerField()
    reputation = serializers.FloatField()
    outcomes_total = serializers.IntegerField()
    current_profile = serializers.SerializerMethodField()

    def get_current_profile(self, agent: Agent) -> dict | None:
        profile = agent.profiles.filter(is_current=True).first()
        return ProfileOutput(profile).data if profile else None


def _profile_kwargs(data: dict[str, Any]) -> dict[str, Any]:
    return dict(data)


class AgentRegisterInput(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    runtime = serializers.ChoiceField(choices=Agent.Runtime.choices, default=Agent.Runtime.EXTERNAL)
    concurrency_limit = serializers.IntegerField(min_value=1, max_value=1000, default=4)
    profile = ProfileInput()


class AgentListCreateView(APIView):
    """List the caller's agents, or register a new agent with its first profile (humans only)."""

    @extend_schema(responses=AgentOutput(many=True))
    def get(self, request: Request) -> Response:
        participant = participant_for_request(request)
        agents = Agent.objects.filter(owner=participant).order_by("name")
        return Response(AgentOutput(agents, many=True).data)

    @extend_schema(request=AgentRegisterInput, responses={201: AgentOutput})
    def post(self, request: Request) -> Response:
        require_scope(request, ApiKey.Scope.AGENTS_WRITE)
        owner = participant_for_request(request)
        if owner.kind != Participant.Kind.HUMAN:
            raise NotAllowed("Agents are registered by their human owners.")
        data = AgentRegisterInput(data=request.data)
        data.is_valid(raise_exception=True)
        with transaction.atomic():
            agent = services.agent_register(
                owner=owner,
                name=data.validated_data["name"],
                runtime=data.validated_data["runtime"],
                concurrency_limit=data.validated_data["concurrency_limit"],
            )
            services.profile_create(
                agent=agent, actor=owner, **_profile_kwargs(data.validated_data["profile"])
            )
        return Response(AgentOutput(agent).data, status=status.HTTP_201_CREATED)


class AgentDetailView(APIView):
    @extend_schema(responses=AgentOutput)
    def get(self, request: Request, slug: str) -> Response:
        return Response(AgentOutput(get_object_or_404(Agent, slug=slug)).data)


class ProfileListCreateView(APIView):
    """Every version of an agent's profile (newest first), or a new current version."""

    @extend_schema(responses=ProfileOutput(many=True))
    def get(self, request: Request, slug: str) -> Response:
        agent = get_object_or_404(Agent, slug=slug)
        return Response(ProfileOutput(agent.profiles.order_by("-version"), many=True).data)

    @extend_schema(request=ProfileInput, responses={201: ProfileOutput})
    def post(self, request: Request, slug: str) -> Response:
        require_scope(request, ApiKey.Scope.AGENTS_WRITE)
        agent, actor = editable_agent(request, slug)
        data = ProfileInput(data=request.data)
        data.is_valid(raise_exception=True)
        profile = services.profile_create(
            agent=agent, actor=actor, **_profile_kwargs(data.validated_data)
        )
        return Response(ProfileOutput(profile).data, status=status.HTTP_201_CREATED)


class StatusInput(serializers.Serializer):
    status = serializers.ChoiceField(choices=Agent.Status.choices)


class AgentStatusView(APIView):
    @extend_schema(request=StatusInput, responses=AgentOutput)
    def post(self, request: Request, slug: str) -> Response:
        require_scope(request, ApiKey.Scope.AGENTS_WRITE)
        agent = get_object_or_404(Agent, slug=slug)
        data = StatusInput(data=request.data)
        data.is_valid(raise_exception=True)
        agent = services.agent_set_status(
            agent=agent,
            actor=participant_for_request(request),
            status=data.validated_data["status"],
            is_staff=bool(getattr(request.user, "is_staff", False)),
        )
        return Response(AgentOutput(agent).data)


class KeyInput(serializers.Serializer):
    name = serializers.CharField(max_length=50)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=ApiKey.Scope.choices), required=False
    )


class KeyOutput(serializers.Serializer):
    prefix = serializers.CharField()
    name = serializers.CharField()
    scopes = serializers.ListField(child=serializers.CharField())
    revoked = serializers.BooleanField()
    created = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)


class KeyIssuedOutput(KeyOutput):
    key = serializers.CharField(help_text="The full key, shown only in this response.")


class AgentKeysView(APIView):
    """The agent's API keys (never their secrets), or a new key whose secret is shown once."""

    @extend_schema(responses=KeyOutput(many=True))
    def get(self, request: Request, slug: str) -> Response:
        agent, _ = editable_agent(request, slug)
        keys = ApiKey.objects.filter(participant=agent.participant).order_by("-created")
        return Response(KeyOutput(keys, many=True).data)

    @extend_schema(request=KeyInput, responses={201: KeyIssuedOutput})
    def post(self, request: Request, slug: str) -> Response:
        require_scope(request, ApiKey.Scope.AGENTS_WRITE)
        agent, _ = editable_agent(request, slug)
        data = KeyInput(data=request.data)
        data.is_valid(raise_exception=True)
        api_key, secret = services.api_key_issue(
            participant=agent.participant,
            name=data.validated_data["name"],
            scopes=data.validated_data.get("scopes"),
        )
        body = {**KeyOutput(api_key).data, "key": secret}
        return Response(body, status=status.HTTP_201_CREATED)


class AgentKeyRevokeView(APIView):
    @extend_schema(request=None, responses=KeyOutput)
    def post(self, request: Request, slug: str, prefix: str) -> Response:
        require_scope(request, ApiKey.Scope.AGENTS_WRITE)
        agent, _ = editable_agent(request, slug)
        api_key = get_object_or_404(ApiKey, participant=agent.participant, prefix=prefix)
        services.api_key_revoke(api_key=api_key)
        api_key.refresh_from_db()
        return Response(KeyOutput(api_key).data)


class MatchInput(serializers.Serializer):
    text = serializers.CharField(max_length=20_000)
    budget = serializers.IntegerField(min_value=0)
    deadline = serializers.DateTimeField(required=False, allow_null=True, default=None)
    policy_requirements = serializers.ListField(
        child=serializers.ChoiceField(choices=sorted(set(POLICY_FLAGS.values()))),
        required=False,
        default=list,
    )
    units = serializers.IntegerField(min_value=0, required=False, allow_null=True, default=None)
    limit = serializers.IntegerField(min_value=1, max_value=50, default=10)


class CandidateOutput(serializers.Serializer):
    agent_id = serializers.IntegerField()
    agent_slug = serializers.CharField()
    agent_name = serializers.CharField()
    profile_id = serializers.IntegerField()
    profile_version = serializers.IntegerField()
    similarity = serializers.FloatField()
    price = serializers.IntegerField()
    factors = serializers.DictField(child=serializers.FloatField())
    score = serializers.FloatField()


class MatchOutput(serializers.Serializer):
    candidates = CandidateOutput(many=True)
    weights = serializers.DictField(child=serializers.FloatField())


class MatchView(APIView):
    """Which agents match this text and budget, ranked, with every factor of the score."""

    @extend_schema(request=MatchInput, responses=MatchOutput)
    def post(self, request: Request) -> Response:
        data = MatchInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        result = match_agents(
            text=values["text"],
            budget=values["budget"],
            deadline=values["deadline"],
            policy_requirements=values["policy_requirements"],
            units=values["units"],
            limit=values["limit"],
        )
        return Response(
            {
                "candidates": [candidate.as_dict() for candidate in result.candidates],
                "weights": result.weights,
            }
        )


class EmbeddingOutput(serializers.Serializer):
    profile_id = serializers.IntegerField()
    version = serializers.IntegerField()
    embedding_model = serializers.CharField()
    embedding = serializers.ListField(child=serializers.FloatField())


class ProfileEmbeddingView(APIView):
    """The current profile's vector and its model (for agents that search tasks themselves)."""

    @extend_schema(responses=EmbeddingOutput)
    def get(self, request: Request, slug: str) -> Response:
        agent = get_object_or_404(Agent, slug=slug)
        profile = CapabilityProfile.objects.filter(agent=agent, is_current=True).first()
        if profile is None or profile.embedding is None:
            raise exceptions.NotFound("This agent's current profile has no vector yet.")
        return Response(
            {
                "profile_id": profile.pk,
                "version": profile.version,
                "embedding_model": profile.embedding_model,
                "embedding": [float(value) for value in profile.embedding],
            }
        )


class OutcomeOutput(serializers.Serializer):
    task_ref = serializers.CharField()
    outcome = serializers.CharField()
    profile_version = serializers.IntegerField(source="profile.version", allow_null=True)
    cost = serializers.IntegerField()
    latency_seconds = serializers.FloatField(allow_null=True)
    created_at = serializers.DateTimeField()


class AgentOutcomesView(APIView):
    """The agent's recorded outcomes, newest first (paginated with ``limit`` and ``offset``)."""

    @extend_schema(responses=OutcomeOutput(many=True))
    def get(self, request: Request, slug: str) -> Response:
        agent = get_object_or_404(Agent, slug=slug)
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(
            agent.outcomes.select_related("profile").order_by("-created_at", "-id"), request, self
        )
        return paginator.get_paginated_response(OutcomeOutput(page, many=True).data)
